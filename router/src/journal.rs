//! Opening the journal at start-up: recovery (torn tail truncated, corruption refused), the newest
//! checkpoint loaded and the records after it streamed into the shard cores (memory bounded by the
//! shards' state plus one segment), in-doubt resolution journaled, then the group-commit writer
//! started. Also the query store's catch-up from what recovery replayed ([`feed_store`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use anyhow::Context as _;
use paymesh_actors::core::config::CoreSettings;
use paymesh_actors::core::ids::CoreSecrets;
use paymesh_actors::core::journal_codec::JournalKey;
use paymesh_actors::core::order::OpStatus;
use paymesh_actors::core::recovery::Recovery;
use paymesh_actors::core::versions::Seed;
use paymesh_actors::mesh::shard::{MeshShardCore, ShardJournal};
use paymesh_codecs::message::TxnAnswer;
use paymesh_journal::{Durability, Journal, JournalConfig};
use serde::Deserialize;

/// `[journal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSection {
    /// Directory of the journal; "" = no journal (answers leave without a durable record: tests
    /// and benchmarks only, logged as a warning).
    pub dir: PathBuf,
    /// `fsync` (default: an answer leaves only once its record is on disk) or `relaxed` (no fsync:
    /// UNSAFE, a crash loses acknowledged transactions; for benchmarks).
    pub durability: String,
    /// File holding the 32-byte encryption key for card data in the journal, as 64 hex digits
    /// (`paymesh gen-key --out FILE`), readable by its owner only. Required with a journal,
    /// except in development mode (`[server] dev_mode`), where a key is generated beside the
    /// journal: never in production, since a key beside the data protects nothing.
    pub key_file: Option<PathBuf>,
    /// Id stored with every ciphertext, so keys can rotate.
    pub key_id: u32,
    /// Segment size before rotation, bytes.
    pub segment_bytes_max: u64,
    /// Take a checkpoint (every shard's snapshot) once this many records were journaled since
    /// the last one: bounds recovery time and, with retention, the disk footprint.
    pub checkpoint_records: u64,
    /// ...or once this many seconds passed with anything journaled (0 = only by records).
    pub checkpoint_interval_secs: u64,
    /// Closed segments kept after a checkpoint covers them (for inspection); older ones are
    /// deleted.
    pub segments_retained: usize,
}

impl Default for JournalSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("paymesh-journal"),
            durability: "fsync".into(),
            key_file: None,
            key_id: 1,
            segment_bytes_max: 64 * 1024 * 1024,
            checkpoint_records: CHECKPOINT_RECORDS_DEFAULT,
            checkpoint_interval_secs: CHECKPOINT_INTERVAL_SECS_DEFAULT,
            segments_retained: 2,
        }
    }
}

/// Default of `checkpoint_records`.
pub const CHECKPOINT_RECORDS_DEFAULT: u64 = 2_000_000;
/// Default of `checkpoint_interval_secs`.
pub const CHECKPOINT_INTERVAL_SECS_DEFAULT: u64 = 300;
/// Answers recovery keeps for the query store's catch-up; past it the store is rebuilt from the
/// shards instead.
pub const STORE_CATCH_UP_ANSWERS_MAX: usize = 4_000_000;
/// Rows handed to the store per call while catching up.
const STORE_CATCH_UP_ROWS_PER_OFFER: usize = 4_096;

/// What start-up gets from the journal.
#[derive(Debug)]
pub struct Opened {
    /// One rebuilt core per shard.
    pub cores: Vec<MeshShardCore>,
    /// What the shards journal through.
    pub journal: ShardJournal,
    /// Answers the replayed records produced (for the query store's catch-up).
    pub answers: Vec<Box<TxnAnswer>>,
    /// Whether `answers` is all the store may lack (false: rebuild it from the cores).
    pub store_complete: bool,
    /// The settings version the shards run (see [`paymesh_actors::core::versions`]).
    pub settings_version: u64,
}

/// Where the development key is kept: beside the journal, in development mode only.
const DEV_KEY_FILE: &str = "dev-journal.key";

/// The development key of the journal in `dir`, generated on first use.
fn dev_key(dir: &Path) -> anyhow::Result<[u8; 32]> {
    paymesh_journal::files::create_private_dir(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(DEV_KEY_FILE);
    if !path.exists() {
        return crate::key_file::generate(&path);
    }
    // Earlier builds wrote it readable by all; it is ours, so narrow it rather than refuse.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(crate::key_file::KEY_FILE_MODE),
        )
        .with_context(|| format!("chmod 600 {}", path.display()))?;
    }
    crate::key_file::read(&path)
}

/// Why a journal needs a key file, and how to make one.
fn missing_key_file_error(section: &JournalSection) -> anyhow::Error {
    anyhow::anyhow!(
        "[journal] key_file is not set: the journal at {dir} encrypts card data with a 32-byte key \
         that must come from a file of its own. Create one with \
         `paymesh gen-key --out /etc/paymesh/journal.key` (written mode 0600; keep a copy in a safe \
         place, the journal cannot be read without it) and set \
         key_file = \"/etc/paymesh/journal.key\" in [journal]. For a throwaway local run only, \
         `paymesh serve --dev` (or [server] dev_mode = true) generates a key beside the journal",
        dir = section.dir.display()
    )
}

/// The journal key of `section`: from `key_file`; without one, only in development mode, a key
/// generated beside the journal.
pub fn key_for(section: &JournalSection, dev_mode: bool) -> anyhow::Result<JournalKey> {
    let key_bytes = key_material(section, dev_mode)?;
    let mut prefix = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut prefix);
    Ok(JournalKey::new(section.key_id, &key_bytes, prefix))
}

/// The identifier keys (transaction ids, wallet tokens) of `section`'s journal: derived from its
/// key material, so a replay reproduces every id and token.
pub fn core_secrets(section: &JournalSection, dev_mode: bool) -> anyhow::Result<CoreSecrets> {
    Ok(CoreSecrets::derive(&key_material(section, dev_mode)?))
}

/// The 32 bytes of the journal key of `section` (see [`key_for`]).
fn key_material(section: &JournalSection, dev_mode: bool) -> anyhow::Result<[u8; 32]> {
    Ok(match (&section.key_file, dev_mode) {
        (Some(path), _) => crate::key_file::read(path)?,
        (None, true) => {
            tracing::warn!(dir = %section.dir.display(), "development mode: no journal key_file, using a generated key stored beside the journal (never in production)");
            dev_key(&section.dir)?
        }
        (None, false) => return Err(missing_key_file_error(section)),
    })
}

/// Opens, recovers and replays the journal of `section` for `shards` shards, reading card data
/// with `key` (see [`key_for`]), then brings the shards to the settings version of `seed` (the
/// configuration file's merchants and grants), journaling the switch before anything is served.
pub fn open(
    section: &JournalSection,
    key: JournalKey,
    settings: &Arc<CoreSettings>,
    seed: &Seed,
    shards: usize,
) -> anyhow::Result<Opened> {
    let started = Instant::now();
    let mut config = JournalConfig::new(&section.dir);
    config.segment_bytes_max = section.segment_bytes_max;
    config.durability = match section.durability.as_str() {
        "fsync" => Durability::Fsync,
        "relaxed" => {
            tracing::warn!(
                "journal durability is RELAXED (no fsync): a crash can lose acknowledged transactions"
            );
            Durability::Relaxed
        }
        other => anyhow::bail!("journal durability must be fsync or relaxed, not {other:?}"),
    };
    config.segments_retained_max = section.segments_retained;
    let recovery = std::cell::RefCell::new(Recovery::new(
        std::slice::from_ref(&key),
        settings,
        shards,
        None,
    )?);
    recovery
        .borrow_mut()
        .collect_answers(STORE_CATCH_UP_ANSWERS_MAX);
    let failure = std::cell::RefCell::new(None);
    let fail = |e| {
        failure.borrow_mut().get_or_insert(e);
    };
    let (mut journal, recovered) = Journal::open_with_snapshot(
        config,
        |lsn, state| {
            if failure.borrow().is_none()
                && let Err(e) = recovery.borrow_mut().checkpoint(lsn.0, state)
            {
                fail(e);
            }
        },
        |view| {
            if failure.borrow().is_none()
                && let Err(e) = recovery
                    .borrow_mut()
                    .record(view.lsn.0, view.kind, view.payload)
            {
                fail(e);
            }
        },
    )
    .context("opening the journal")?;
    if let Some(e) = failure.into_inner() {
        return Err(e).context("replaying the journal");
    }
    if recovered.truncated_tail_bytes > 0 {
        tracing::warn!(
            bytes = recovered.truncated_tail_bytes,
            "journal: torn tail record truncated at recovery"
        );
    }
    let mut replayed = recovery.into_inner().finish(paymesh_actors::now_ms())?;
    let (settings_version, switches) = seed.settle(settings, &mut replayed.cores)?;
    if !switches.is_empty() {
        tracing::info!(
            version = settings_version,
            shards = switches.len(),
            "merchants and grants from the configuration file journaled as a new settings version"
        );
    }
    replayed.to_append.extend(switches);
    if !replayed.to_append.is_empty() {
        journal
            .append(&replayed.to_append)
            .context("journaling the recovery")?;
    }
    tracing::info!(
        checkpoint_lsn = replayed.checkpoint_lsn,
        requests = replayed.requests,
        outcomes = replayed.outcomes,
        skipped = replayed.skipped,
        in_doubt = replayed.in_doubt,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "journal recovered"
    );
    let handle = journal
        .start_writer()
        .context("starting the journal writer")?;
    Ok(Opened {
        cores: replayed.cores,
        journal: ShardJournal {
            handle,
            key,
            counter: Arc::new(AtomicU64::new(0)),
        },
        answers: replayed.answers,
        store_complete: replayed.store_complete,
        settings_version,
    })
}

/// Brings the query store up to date after recovery: the answers the replay produced (the store
/// may have lost its last batches in a crash; rows are upserts, so repeats are harmless), or, when
/// those are not enough (`complete` false: the store dropped rows, or is new), every stored
/// answer of every order the shards hold. Waits for room rather than dropping; returns the rows
/// handed over.
pub fn feed_store(
    store: &paymesh_store::StoreHandle,
    answers: &[Box<TxnAnswer>],
    complete: bool,
    cores: &[MeshShardCore],
) -> anyhow::Result<u64> {
    let now = paymesh_actors::now_ms();
    let mut rows = Vec::with_capacity(STORE_CATCH_UP_ROWS_PER_OFFER);
    let mut fed = 0u64;
    let mut push = |a: &TxnAnswer, rows: &mut Vec<_>| -> anyhow::Result<()> {
        if let Some(mut row) = paymesh_store::TxnRow::from_answer(a, now) {
            // The creator, so that INQUIRY from the store answers only who may see the payment.
            row.network = a.server_txn_id.and_then(|id| {
                let shard = usize::from(paymesh_actors::core::shard::shard_of_txn_id(id));
                let creator = cores.get(shard)?.creator_of(id)?;
                Some(String::from_utf8_lossy(creator).into_owned())
            });
            rows.push(row);
        }
        if rows.len() >= STORE_CATCH_UP_ROWS_PER_OFFER {
            fed += rows.len() as u64;
            store.offer_wait(std::mem::take(rows))?;
        }
        Ok(())
    };
    if complete {
        for a in answers {
            push(a, &mut rows)?;
        }
    } else {
        let mut failed = None;
        for core in cores {
            core.for_each_order(|key, order| {
                for op in &order.ops {
                    if let OpStatus::Done(a) = &op.status
                        && failed.is_none()
                        && let Err(e) = push(
                            &a.answer(op.kind, &paymesh_actors::shared_of!(key, order)),
                            &mut rows,
                        )
                    {
                        failed = Some(e);
                    }
                }
            });
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
    let last = rows.len() as u64;
    if !rows.is_empty() {
        store.offer_wait(rows)?;
    }
    Ok(fed + last)
}
