//! `paymesh bench-recovery`: how long start-up takes to recover and replay a journal of N
//! transactions (one authorization request and its approved upstream answer each), for
//! docs/PERFORMANCE.md. It writes the journal with the same encoders the shards use, taking
//! checkpoints (every shard's sealed snapshot behind a MARK record) every `checkpoint_records`
//! records as the router's checkpointer does, then times [`crate::journal::open`] exactly as
//! `paymesh serve` runs it. `--recover-only` times the recovery of a directory written before,
//! so that its memory can be measured alone (`/usr/bin/time -v`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use paymesh_actors::core::access::{AccessTable, Origin, Step};
use paymesh_actors::core::config::{
    CoreSettings, DeviceSignaturePolicy, MerchantConfig, RouteConfig, RouteMethod,
};
use paymesh_actors::core::journal_codec::{
    RECORD_MARK, RECORD_META, RECORD_REQUEST_NETWORK, RECORD_UPSTREAM, encode_mark, encode_meta,
    encode_request, encode_upstream,
};
use paymesh_actors::core::recovery::{ClearPart, encode_checkpoint_sealing};
use paymesh_actors::core::shard::{Output, ShardCore, shard_for_merchant};
use paymesh_actors::core::upstream::{OriginalRef, UpstreamOutcome, UpstreamResult};
use paymesh_codecs::message::{PaymentMethod, TxnKind, TxnRequest};
use paymesh_codecs::types::{Pan, ResultCode};
use paymesh_journal::{Durability, Journal, JournalConfig, Lsn};

use crate::journal::JournalSection;

/// The network the generated requests come from (granted every merchant).
const BENCH_NETWORK: &[u8] = b"BENCH";

/// Options of `paymesh bench-recovery`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchRecoveryArgs {
    /// Transactions to journal.
    #[arg(long, default_value_t = 1_000_000)]
    pub transactions: u64,
    /// Directory for the journal (emptied first).
    #[arg(long)]
    pub dir: PathBuf,
    /// Shards.
    #[arg(long, default_value_t = 2)]
    pub shards: usize,
    /// Merchants the orders spread over.
    #[arg(long, default_value_t = 1_000)]
    pub merchants: u32,
    /// Checkpoint every this many records (0: never), like `[journal] checkpoint_records`.
    #[arg(long, default_value_t = crate::journal::CHECKPOINT_RECORDS_DEFAULT)]
    pub checkpoint_records: u64,
    /// Only time the recovery of `dir` (written by an earlier run with the same options).
    #[arg(long)]
    pub recover_only: bool,
}

/// Records appended per write while generating.
const GENERATE_BATCH_RECORDS: usize = 4_096;

/// Writes the journal, then times recovery.
pub fn run(args: BenchRecoveryArgs) -> anyhow::Result<()> {
    if !args.recover_only {
        let _ = std::fs::remove_dir_all(&args.dir);
        std::fs::create_dir_all(&args.dir)?;
    }
    let merchants: Vec<MerchantConfig> = (1..=args.merchants)
        .map(|m| MerchantConfig {
            id: format!("M{m:06}"),
            enabled: true,
            single_limit_minor: None,
            daily_limit_minor: None,
            currencies: vec![],
            follow_ups: Default::default(),
            devices: Vec::new(),
            device_signature: DeviceSignaturePolicy::Optional,
        })
        .collect();
    let routes = vec![RouteConfig {
        method: RouteMethod::Card,
        bin_from: None,
        bin_to: None,
        key: None,
        host: "van".into(),
        failover: vec![],
    }];
    let mut settings = CoreSettings::new(&merchants, &routes, &["van".to_string()], 540)?;
    if let Some(s) = std::sync::Arc::get_mut(&mut settings) {
        s.access = AccessTable::grant_all(&[BENCH_NETWORK]);
    }
    let section = JournalSection {
        dir: args.dir.clone(),
        ..JournalSection::default()
    };
    // The key the replay will use: generated once beside the journal (development mode: this is
    // a benchmark's scratch directory), read back here.
    let key = crate::journal::key_for(&section, true)?;
    if !args.recover_only {
        generate(&args, &settings, &key)?;
    }
    let started = Instant::now();
    let seed =
        paymesh_actors::core::versions::Seed::new(paymesh_actors::core::versions::BusinessData {
            merchants,
            grants: vec![paymesh_actors::core::versions::NetworkGrant {
                network: String::from_utf8_lossy(BENCH_NETWORK).into_owned(),
                merchants: vec![paymesh_actors::core::versions::ALL_MERCHANTS.into()],
            }],
        })?;
    let opened = crate::journal::open(&section, key, &settings, &seed, args.shards)?;
    let elapsed = started.elapsed();
    let orders: usize = opened.cores.iter().map(|c| c.order_count()).sum();
    println!(
        "recovered {} transactions into {} orders (the shards' window) in {:.2} s",
        args.transactions,
        orders,
        elapsed.as_secs_f64()
    );
    opened.journal.handle.shutdown()?;
    Ok(())
}

/// Total bytes of the files in `dir`.
fn dir_bytes(dir: &std::path::Path) -> anyhow::Result<u64> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum())
}

/// Writes the journal of `args.transactions` approved authorizations, with checkpoints.
fn generate(
    args: &BenchRecoveryArgs,
    settings: &std::sync::Arc<CoreSettings>,
    key: &paymesh_actors::core::journal_codec::JournalKey,
) -> anyhow::Result<()> {
    let mut config = JournalConfig::new(&args.dir);
    config.durability = Durability::Relaxed;
    let (mut journal, _) = Journal::open(config)?;
    journal.append(&[(RECORD_META, encode_meta(u16::try_from(args.shards)?))])?;
    // Run the real cores while generating, so op ids in the outcomes match what replay computes.
    let mut cores: Vec<ShardCore<()>> = (0..args.shards)
        .map(|i| ShardCore::new(i as u16, settings.clone(), 0).with_shard_count(args.shards as u16))
        .collect();
    let started = Instant::now();
    let now = paymesh_actors::now_ms();
    let pan = Pan::new(Bytes::from_static(b"4111111111111111")).context("pan")?;
    let mut batch = Vec::with_capacity(GENERATE_BATCH_RECORDS);
    let mut out = Vec::new();
    let mut since_checkpoint = 0u64;
    let mut checkpoints = 0u64;
    let mut seal_counter = args.transactions;
    for n in 0..args.transactions {
        let merchant = format!("M{:06}", n % u64::from(args.merchants) + 1);
        let mut req = TxnRequest::new(
            TxnKind::Authorize,
            Bytes::from(merchant),
            Bytes::from(format!("O{n}")),
        );
        req.amount = Some(1_000 + n % 1_000);
        req.currency = Some(410);
        req.payment = Some(PaymentMethod::Card {
            pan: pan.clone(),
            expiry: Bytes::from_static(b"3012"),
            cvv: None,
        });
        let record = encode_request(key, n, now, BENCH_NETWORK, &req)?;
        batch.push((RECORD_REQUEST_NETWORK, record));
        let shard = shard_for_merchant(&req.merchant_id, args.shards);
        let core = cores.get_mut(shard).context("shard")?;
        let origin = Origin::Network(BENCH_NETWORK);
        anyhow::ensure!(core.handle_request(now, (), origin, &req, &mut out) == Step::Journal);
        for o in out.drain(..) {
            if let Output::Upstream(up) = o {
                let sent = OriginalRef {
                    mti: 100,
                    stan: (n % 999_999) as u32 + 1,
                    transmitted: Bytes::from_static(b"1126213956"),
                    rrn: Bytes::from_static(b"633021000001"),
                    terminal: bytes::Bytes::new(),
                };
                let result = UpstreamResult {
                    op_id: up.op_id,
                    outcome: UpstreamOutcome::Answered {
                        result: ResultCode::Approved,
                        response_code: Bytes::from_static(b"00"),
                        approval_code: Bytes::from_static(b"A00001"),
                        sent,
                        balance: None,
                    },
                };
                batch.push((RECORD_UPSTREAM, encode_upstream(now, &result)));
                core.handle_upstream(now, result, &mut Vec::new());
            }
        }
        since_checkpoint += 2;
        if batch.len() >= GENERATE_BATCH_RECORDS {
            journal.append(&batch)?;
            batch.clear();
        }
        if args.checkpoint_records > 0 && since_checkpoint >= args.checkpoint_records {
            journal.append(&batch)?;
            batch.clear();
            // As the checkpointer does: each shard snapshots and journals its mark; the
            // checkpoint is filed at the oldest mark.
            let mut parts = Vec::with_capacity(cores.len());
            for (i, core) in cores.iter().enumerate() {
                let bytes = core.encode_snapshot();
                let lsn = journal.append(&[(RECORD_MARK, encode_mark(i as u16, checkpoints))])?;
                parts.push(ClearPart {
                    mark_lsn: lsn.0,
                    settings: core.settings().version_record.clone(),
                    bytes,
                    seal_with: Some((key.clone(), seal_counter)),
                });
                seal_counter += 1;
            }
            let lsn = parts.iter().map(|p| p.mark_lsn).min().unwrap_or(0);
            journal.checkpoint(Lsn(lsn), &encode_checkpoint_sealing(parts, true)?)?;
            checkpoints += 1;
            since_checkpoint = 0;
        }
    }
    journal.append(&batch)?;
    drop(journal);
    drop(cores);
    println!(
        "wrote {} transactions with {checkpoints} checkpoints in {:.1} s; on disk now {} MiB",
        args.transactions,
        started.elapsed().as_secs_f64(),
        dir_bytes(&args.dir)? >> 20
    );
    Ok(())
}
