//! Opening the journal at start-up: recovery (torn tail truncated, corruption refused), replay into
//! the shard cores, in-doubt resolution journaled, then the group-commit writer started.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use anyhow::Context as _;
use paymesh_actors::core::config::CoreSettings;
use paymesh_actors::core::journal_codec::JournalKey;
use paymesh_actors::core::recovery;
use paymesh_actors::mesh::shard::{MeshShardCore, ShardJournal};
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
    /// File holding the 32-byte encryption key for card data in the journal, as 64 hex digits.
    /// Absent = a dev key generated in the journal directory (logged as a warning): never in
    /// production, since a key beside the data protects nothing.
    pub key_file: Option<PathBuf>,
    /// Id stored with every ciphertext, so keys can rotate.
    pub key_id: u32,
    /// Segment size before rotation, bytes.
    pub segment_bytes_max: u64,
}

impl Default for JournalSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("paymesh-journal"),
            durability: "fsync".into(),
            key_file: None,
            key_id: 1,
            segment_bytes_max: 64 * 1024 * 1024,
        }
    }
}

/// What start-up gets from the journal.
#[derive(Debug)]
pub struct Opened {
    /// One rebuilt core per shard.
    pub cores: Vec<MeshShardCore>,
    /// What the shards journal through.
    pub journal: ShardJournal,
}

fn read_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let raw = hex::decode(text.trim())
        .ok()
        .with_context(|| format!("{}: expected 64 hex digits", path.display()))?;
    raw.try_into()
        .map_err(|_| anyhow::anyhow!("{}: expected 32 bytes", path.display()))
}

fn dev_key(dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = dir.join("dev-journal.key");
    if path.exists() {
        return read_key(&path);
    }
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    std::fs::write(&path, hex::encode(key))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

/// The journal key of `section` (from `key_file`, or the dev key beside the journal).
pub fn key_for(section: &JournalSection) -> anyhow::Result<JournalKey> {
    let key_bytes = match &section.key_file {
        Some(path) => read_key(path)?,
        None => {
            tracing::warn!(dir = %section.dir.display(), "no journal key_file: using a generated dev key stored beside the journal");
            std::fs::create_dir_all(&section.dir)
                .with_context(|| format!("creating {}", section.dir.display()))?;
            dev_key(&section.dir)?
        }
    };
    let mut prefix = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut prefix);
    Ok(JournalKey::new(section.key_id, &key_bytes, prefix))
}

/// Opens, recovers and replays the journal of `section` for `shards` shards.
pub fn open(
    section: &JournalSection,
    settings: &Arc<CoreSettings>,
    shards: usize,
) -> anyhow::Result<Opened> {
    let started = Instant::now();
    std::fs::create_dir_all(&section.dir)
        .with_context(|| format!("creating {}", section.dir.display()))?;
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
    let key = key_for(section)?;
    let (mut journal, recovered) = Journal::open(config).context("opening the journal")?;
    if recovered.truncated_tail_bytes > 0 {
        tracing::warn!(
            bytes = recovered.truncated_tail_bytes,
            "journal: torn tail record truncated at recovery"
        );
    }
    let replayed = recovery::replay(
        &recovered.records,
        std::slice::from_ref(&key),
        settings,
        shards,
        None,
        paymesh_actors::now_ms(),
    )?;
    if !replayed.to_append.is_empty() {
        journal
            .append(&replayed.to_append)
            .context("journaling the recovery")?;
    }
    tracing::info!(
        requests = replayed.requests,
        outcomes = replayed.outcomes,
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
    })
}
