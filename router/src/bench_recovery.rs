//! `paymesh bench-recovery`: how long start-up takes to recover and replay a journal of N
//! transactions (one authorization request and its approved upstream answer each), for
//! docs/PERFORMANCE.md. It writes the journal with the same encoders the shards use, then times
//! [`crate::journal::open`] exactly as `paymesh serve` runs it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use paymesh_actors::core::config::{CoreSettings, MerchantConfig, RouteConfig, RouteMethod};
use paymesh_actors::core::journal_codec::{
    RECORD_META, RECORD_REQUEST, RECORD_UPSTREAM, encode_meta, encode_request, encode_upstream,
};
use paymesh_actors::core::shard::{Output, ShardCore, shard_for_merchant};
use paymesh_actors::core::upstream::{OriginalRef, UpstreamOutcome, UpstreamResult};
use paymesh_codecs::message::{PaymentMethod, TxnKind, TxnRequest};
use paymesh_codecs::types::{Pan, ResultCode};
use paymesh_journal::{Durability, Journal, JournalConfig};

use crate::journal::JournalSection;

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
}

/// Records appended per write while generating.
const GENERATE_BATCH_RECORDS: usize = 4_096;

/// Writes the journal, then times recovery.
pub fn run(args: BenchRecoveryArgs) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let merchants: Vec<MerchantConfig> = (1..=args.merchants)
        .map(|m| MerchantConfig {
            id: format!("M{m:06}"),
            enabled: true,
            single_limit_minor: None,
            daily_limit_minor: None,
            currencies: vec![],
        })
        .collect();
    let routes = vec![RouteConfig {
        method: RouteMethod::Card,
        bin_from: None,
        bin_to: None,
        key: None,
        host: "van".into(),
    }];
    let settings = CoreSettings::new(&merchants, &routes, &["van".to_string()], 540)?;
    let section = JournalSection {
        dir: args.dir.clone(),
        ..JournalSection::default()
    };
    // The key the replay will use: generated once, beside the journal (dev key), read back here.
    let key = crate::journal::key_for(&section)?;
    let mut config = JournalConfig::new(&args.dir);
    config.durability = Durability::Relaxed;
    let (mut journal, _) = Journal::open(config)?;
    journal.append(&[(RECORD_META, encode_meta(u16::try_from(args.shards)?))])?;
    // Run the real cores while generating, so op ids in the outcomes match what replay computes.
    let mut cores: Vec<ShardCore<()>> = (0..args.shards)
        .map(|i| ShardCore::new(i as u16, settings.clone(), 0))
        .collect();
    let started = Instant::now();
    let now = paymesh_actors::now_ms();
    let pan = Pan::new(Bytes::from_static(b"4111111111111111")).context("pan")?;
    let mut batch = Vec::with_capacity(GENERATE_BATCH_RECORDS);
    let mut out = Vec::new();
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
        batch.push((RECORD_REQUEST, encode_request(&key, n, now, &req)?));
        let shard = shard_for_merchant(&req.merchant_id, args.shards);
        let core = cores.get_mut(shard).context("shard")?;
        core.handle_request(now, (), &req, &mut out);
        for o in out.drain(..) {
            if let Output::Upstream(up) = o {
                let sent = OriginalRef {
                    mti: 100,
                    stan: (n % 999_999) as u32 + 1,
                    transmitted: Bytes::from_static(b"1126213956"),
                    rrn: Bytes::from_static(b"633021000001"),
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
        if batch.len() >= GENERATE_BATCH_RECORDS {
            journal.append(&batch)?;
            batch.clear();
        }
    }
    journal.append(&batch)?;
    drop(journal);
    drop(cores);
    let size: u64 = std::fs::read_dir(&args.dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "wrote {} transactions ({} MiB) in {:.1} s",
        args.transactions,
        size >> 20,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let opened = crate::journal::open(&section, &settings, args.shards)?;
    let elapsed = started.elapsed();
    let orders: usize = opened.cores.iter().map(|c| c.order_count()).sum();
    println!(
        "recovered and replayed {} transactions into {} orders in {:.2} s",
        args.transactions,
        orders,
        elapsed.as_secs_f64()
    );
    opened.journal.handle.shutdown()?;
    Ok(())
}
