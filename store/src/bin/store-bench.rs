//! Measures the query store: rows/s written (inserts, then updates of the same payments), the
//! writer's CPU time at a fixed offered rate, the cost of `offer` on the caller's thread, and
//! point reads/s.
//!
//! `cargo run --release -p paymesh-store --bin store-bench -- [ROWS] [OFFER_ROWS] [BATCH_MAX]
//! [FLUSH_INTERVAL_MS]` (defaults: 1 000 000 rows, 64 per offer, and `StoreConfig::new`'s batch
//! and interval). The database goes to a fresh directory under the system temp dir and is
//! deleted afterwards.

use std::time::{Duration, Instant};

use paymesh_codecs::message::{TxnAnswer, TxnKind};
use paymesh_codecs::types::ResultCode;
use paymesh_store::{Store, StoreConfig, StoreError, StoreHandle, TxnRow};

/// Merchants the rows are spread over.
const MERCHANTS: u64 = 100;

fn main() -> Result<(), StoreError> {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let rows = arg(1, 1_000_000);
    let offer_rows = arg(2, 64).max(1);
    let defaults = StoreConfig::new("");
    let batch_max = usize::try_from(arg(3, defaults.batch_max as u64)).unwrap_or(4_096);
    let flush_interval_ms = arg(4, defaults.flush_interval_ms);
    let dir = std::env::temp_dir().join(format!("paymesh-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(StoreError::Spawn)?;
    let path = dir.join("store.db");
    let config = StoreConfig {
        path: path.clone(),
        batch_max,
        flush_interval_ms,
        ..defaults
    };
    println!(
        "rows {rows}, {offer_rows} rows per offer, queue_max {}, batch_max {batch_max}, \
         flush_interval_ms {flush_interval_ms}, {path:?}",
        config.queue_max
    );
    let store = Store::open(config)?;
    run_phase(&store, "insert", rows, offer_rows, 1_000)?;
    run_phase(&store, "update", rows, offer_rows, 2_000)?;
    // Each phase moves every row it touches to a newer time: a real update.
    let mut at_base = 2_000 + rows;
    for rate in [10_000, 40_000] {
        for per_offer in [1, offer_rows] {
            at_base += rows;
            paced_phase(&store, rate, per_offer, at_base)?;
        }
    }
    let stats = store.stats();
    println!(
        "stats: written {} stale {} failed {} batches {} dropped {} rejected_pan {}",
        stats.rows_written,
        stats.rows_stale,
        stats.rows_failed,
        stats.batches,
        stats.dropped,
        stats.rejected_pan
    );
    store.shutdown();
    read_phase(&path, rows)?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "database {:.1} MB ({:.0} B/row)",
        bytes as f64 / 1e6,
        bytes as f64 / rows as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Offers `rows` rows as fast as the queue takes them; when it refuses, waits 50 µs and offers
/// again (so the figure is the writer's throughput, and the refusals show how often it was full).
fn run_phase(
    store: &StoreHandle,
    name: &str,
    rows: u64,
    offer_rows: u64,
    at_base: u64,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let before = store.stats();
    let mut build = Duration::ZERO;
    let mut accepted_ns: Vec<u64> = Vec::new();
    let mut refused = 0u64;
    let mut next = 0u64;
    while next < rows {
        let end = (next + offer_rows).min(rows);
        let t = Instant::now();
        let batch: Vec<TxnRow> = (next..end)
            .filter_map(|id| TxnRow::from_answer(&answer(id + 1, at_base), at_base + id))
            .collect();
        build += t.elapsed();
        loop {
            let copy = batch.clone();
            let t = Instant::now();
            let accepted = store.offer(copy);
            let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
            if accepted {
                accepted_ns.push(ns);
                break;
            }
            refused += 1;
            std::thread::sleep(Duration::from_micros(50));
        }
        next = end;
    }
    store.flush()?;
    let elapsed = started.elapsed().as_secs_f64();
    let after = store.stats();
    let written = after.rows_written - before.rows_written;
    let batches = after.batches - before.batches;
    let busy = (after.write_micros - before.write_micros) as f64 / 1e6;
    println!(
        "{name}: {written} rows in {elapsed:.2} s = {:.0} rows/s; writer busy {busy:.2} s = \
         {:.0} rows/s of writer time; {batches} batches ({:.0} rows/batch); {refused} offers \
         refused while full; accepted offer {}; from_answer {:.0} ns/row",
        written as f64 / elapsed,
        written as f64 / busy.max(1e-9),
        written as f64 / batches.max(1) as f64,
        percentiles(&mut accepted_ns),
        build.as_nanos() as f64 / rows.max(1) as f64,
    );
    Ok(())
}

/// Offers `rate` rows/s for `PACED_SECONDS`, `offer_rows` per offer, as the router would at
/// that many TPS, and reports the writer thread's CPU time and the cost of `offer`.
fn paced_phase(
    store: &StoreHandle,
    rate: u32,
    offer_rows: u64,
    at_base: u64,
) -> Result<(), StoreError> {
    let rows = u64::from(rate) * PACED_SECONDS;
    let cpu_before = writer_cpu_ticks();
    let batches_before = store.stats().batches;
    let started = Instant::now();
    let mut offer_ns: Vec<u64> = Vec::with_capacity(usize::try_from(rows).unwrap_or(0));
    let mut refused = 0u64;
    let mut next = 0u64;
    while next < rows {
        // Where the schedule says we should be.
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        if next >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        while next < due.min(rows) {
            let end = (next + offer_rows).min(rows);
            let batch: Vec<TxnRow> = (next..end)
                .filter_map(|id| TxnRow::from_answer(&answer(id + 1, at_base), at_base + id))
                .collect();
            let t = Instant::now();
            let accepted = store.offer(batch);
            offer_ns.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            refused += u64::from(!accepted);
            next = end;
        }
    }
    store.flush()?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = writer_cpu_ticks()
        .zip(cpu_before)
        .map(|(a, b)| (a - b) as f64 / TICKS_PER_SECOND);
    let batches = store.stats().batches - batches_before;
    println!(
        "paced {rate} rows/s, {offer_rows} per offer, {elapsed:.1} s: writer CPU {} ({batches} \
         batches); offer {}; {refused} refused",
        cpu.map_or("unknown".to_owned(), |c| format!(
            "{c:.2} s = {:.1} % of a core",
            100.0 * c / elapsed
        )),
        percentiles(&mut offer_ns),
    );
    Ok(())
}

/// Seconds of each paced phase.
const PACED_SECONDS: u64 = 5;
/// Linux's USER_HZ, the unit of `/proc/<pid>/task/<tid>/stat` times.
const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime of the `paymesh-store` thread, in ticks (Linux only).
fn writer_cpu_ticks() -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim() != "paymesh-store" {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the ")" closing the name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        return Some(utime + stime);
    }
    None
}

/// "p50 / p99 / max" of nanosecond samples.
fn percentiles(samples: &mut [u64]) -> String {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or(0)
    };
    format!(
        "p50 {} / p99 {} / max {} ns",
        at(0.5),
        at(0.99),
        samples.last().copied().unwrap_or(0)
    )
}

fn read_phase(path: &std::path::Path, rows: u64) -> Result<(), StoreError> {
    let reader = Store::reader(path)?;
    let lookups = rows.min(200_000);
    let started = Instant::now();
    let mut found = 0u64;
    for i in 0..lookups {
        // A stride that visits ids in a scattered order.
        let id = (i * 7_919) % rows + 1;
        found += u64::from(reader.by_txn_id(i64::try_from(id).unwrap_or(0))?.is_some());
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "by_txn_id: {found}/{lookups} found, {:.0} lookups/s; count {}",
        lookups as f64 / elapsed,
        reader.count()?
    );
    let started = Instant::now();
    let listed = reader.list_by_merchant("merchant-7", 0, 1_000)?.len();
    println!(
        "list_by_merchant: {listed} rows in {:.2} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// An approved authorization (insert phase) or its capture (update phase, later `at_base`).
fn answer(txn_id: u64, at_base: u64) -> TxnAnswer {
    let capture = at_base > 1_000;
    let kind = if capture {
        TxnKind::Capture
    } else {
        TxnKind::Authorize
    };
    let mut a = TxnAnswer::new(kind, ResultCode::Approved);
    a.server_txn_id = Some(txn_id);
    a.merchant_id = Some(format!("merchant-{}", txn_id % MERCHANTS).into());
    a.order_id = Some(format!("order-{txn_id:012}").into());
    a.amount = Some(1_000 + txn_id % 50_000);
    a.currency = Some(978);
    a.state = Some(if capture { 2 } else { 1 });
    a.authorized_amount = a.amount;
    a.captured_amount = Some(if capture { 1_000 + txn_id % 50_000 } else { 0 });
    a.refunded_amount = Some(0);
    a.approval_code = Some("A1B2C3".into());
    a.rrn = Some(format!("{:012}", txn_id % 1_000_000_000_000).into());
    a.upstream_response_code = Some("00".into());
    a.masked_pan = Some("411111******1111".into());
    a
}
