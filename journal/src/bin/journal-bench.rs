//! `journal-bench`: group-commit throughput of the journal on this disk. N producer threads submit
//! records as fast as the bounded queue accepts them for D seconds (a `Busy` answer costs the
//! producer a short sleep, as a shard would answer BUSY and move on); then the journal is shut
//! down, reopened and the recovery time measured.
//!
//! `cargo run --release -p paymesh-journal --bin journal-bench -- --seconds 5 [--durability relaxed]
//! [--rate 20000]`

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use paymesh_journal::{
    Durability, Journal, JournalConfig, JournalError, JournalHandle, JournalStats,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long a producer waits after a `Busy` answer.
const BUSY_BACKOFF_MICROS: u64 = 50;
/// Largest acknowledgement latency the histogram tracks: 60 s.
const LATENCY_MICROS_MAX: u64 = 60_000_000;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// fdatasync per batch (production).
    Fsync,
    /// No fsync at all: UNSAFE, measures everything but the disk.
    Relaxed,
}

/// Measure journal group commit: records/s, fsyncs/s, batch sizes, fsync and ack latency.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// How long producers submit.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Producer threads (shards).
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 200)]
    record_bytes: usize,
    /// Records per submission.
    #[arg(long, default_value_t = 1)]
    records_per_submit: usize,
    /// fsync (default) or relaxed (UNSAFE: no fsync).
    #[arg(long, value_enum, default_value_t = Mode::Fsync)]
    durability: Mode,
    /// Submissions the queue holds before answering Busy.
    #[arg(long, default_value_t = 4096)]
    queue: usize,
    /// Records per batch at most.
    #[arg(long, default_value_t = 4096)]
    batch_records: usize,
    /// Journal directory (default: a fresh directory under the system temp dir, deleted after).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Submissions per second across all producers (0: as fast as the queue accepts).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Skip the reopen that measures recovery time.
    #[arg(long)]
    no_recovery: bool,
}

/// What the producers' callbacks record.
struct Acks {
    latency_micros: Mutex<Histogram<u64>>,
    errors: AtomicU64,
}

/// The default journal directory, deleted when dropped: also when a panic (a closed stdout
/// pipe, say) unwinds out of `main`.
struct TemporaryDir(PathBuf);

impl Drop for TemporaryDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            eprintln!("journal-bench: cannot delete {}: {error}", self.0.display());
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (dir, _temporary) = match &args.dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let name = format!("journal-bench-{}", std::process::id());
            let dir = std::env::temp_dir().join(name);
            (dir.clone(), Some(TemporaryDir(dir)))
        }
    };
    let durability = match args.durability {
        Mode::Fsync => Durability::Fsync,
        Mode::Relaxed => Durability::Relaxed,
    };
    let config = JournalConfig {
        durability,
        queue_batches_max: args.queue,
        batch_records_max: args.batch_records,
        ..JournalConfig::new(&dir)
    };
    run(&args, &config)
}

fn run(args: &Args, config: &JournalConfig) -> anyhow::Result<()> {
    let (journal, recovered) = Journal::open(config.clone())?;
    anyhow::ensure!(
        recovered.next_lsn.0 == 1,
        "{} is not empty",
        config.dir.display()
    );
    let handle = journal.start_writer()?;
    let acks = Arc::new(Acks {
        latency_micros: Mutex::new(Histogram::new_with_bounds(1, LATENCY_MICROS_MAX, 3)?),
        errors: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let payload = Bytes::from(vec![0xA5; args.record_bytes]);
    let started = Instant::now();
    let producers: Vec<_> = (0..args.producers)
        .map(|producer| {
            let (handle, acks, stop, payload) =
                (handle.clone(), acks.clone(), stop.clone(), payload.clone());
            let per_submit = args.records_per_submit;
            // Each producer paces itself at its share of the rate.
            let interval = (args.rate > 0)
                .then(|| Duration::from_secs_f64(args.producers as f64 / args.rate as f64));
            std::thread::Builder::new()
                .name(format!("producer-{producer}"))
                .spawn(move || produce(&handle, &acks, &stop, &payload, per_submit, interval))
        })
        .collect::<Result<_, _>>()?;
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut busy = 0;
    for producer in producers {
        busy += producer
            .join()
            .map_err(|_| anyhow::anyhow!("a producer panicked"))?;
    }
    handle.shutdown()?;
    let elapsed = started.elapsed().as_secs_f64();
    report(args, &handle.stats(), &acks, busy, elapsed);
    if !args.no_recovery {
        report_recovery(config)?;
    }
    Ok(())
}

/// Reopens the journal twice: collecting every record in memory (`open`), then streaming them
/// through a visitor (`open_with`, memory bounded by one segment).
fn report_recovery(config: &JournalConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    let (_, recovered) = Journal::open(config.clone())?;
    let seconds = started.elapsed().as_secs_f64();
    let records = recovered.records.len() as f64;
    drop(recovered);
    println!(
        "recovery open       {records} records in {:.0} ms ({:.0} records/s, all held in memory)",
        seconds * 1000.0,
        records / seconds
    );
    let started = Instant::now();
    let (mut count, mut payload_bytes) = (0_u64, 0_u64);
    Journal::open_with(config.clone(), |view| {
        count += 1;
        payload_bytes += view.payload.len() as u64;
    })?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "recovery open_with  {count} records ({payload_bytes} payload bytes) in {:.0} ms \
         ({:.0} records/s, streamed)",
        seconds * 1000.0,
        count as f64 / seconds
    );
    Ok(())
}

/// One producer: submit until told to stop; returns how many submissions were refused.
fn produce(
    handle: &JournalHandle,
    acks: &Arc<Acks>,
    stop: &AtomicBool,
    payload: &Bytes,
    per_submit: usize,
    interval: Option<Duration>,
) -> u64 {
    let mut busy = 0;
    let mut due = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(interval) = interval {
            due += interval;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let records = vec![(1_u8, payload.clone()); per_submit];
        let submitted = Instant::now();
        let acks_for_callback = acks.clone();
        let on_durable = Box::new(move |result: Result<_, JournalError>| {
            if result.is_err() {
                acks_for_callback.errors.fetch_add(1, Ordering::Relaxed);
            }
            let micros = submitted.elapsed().as_micros() as u64;
            if let Ok(mut histogram) = acks_for_callback.latency_micros.lock() {
                histogram.saturating_record(micros.max(1));
            }
        });
        match handle.submit(records, on_durable) {
            Ok(()) => {}
            Err(JournalError::Busy) => {
                busy += 1;
                std::thread::sleep(Duration::from_micros(BUSY_BACKOFF_MICROS));
            }
            Err(error) => {
                eprintln!("journal-bench: submit failed: {error}");
                break;
            }
        }
    }
    busy
}

fn report(args: &Args, stats: &JournalStats, acks: &Acks, busy: u64, elapsed: f64) {
    println!(
        "journal-bench: durability={:?} producers={} record={}B records/submit={} queue={} \
         batch_records_max={} rate={} seconds={elapsed:.2}",
        args.durability,
        args.producers,
        args.record_bytes,
        args.records_per_submit,
        args.queue,
        args.batch_records,
        if args.rate == 0 {
            "unlimited".to_owned()
        } else {
            format!("{}/s", args.rate)
        }
    );
    let per_second = |count: u64| count as f64 / elapsed;
    println!(
        "records         {} ({:.0} records/s, {:.1} MB/s written)",
        stats.records,
        per_second(stats.records),
        per_second(stats.bytes) / 1e6
    );
    println!(
        "submissions     {} (busy refusals {busy})",
        stats.submissions
    );
    println!(
        "batches         {} ({:.0}/s), mean batch {:.1} records",
        stats.batches,
        per_second(stats.batches),
        stats.mean_batch_records()
    );
    println!(
        "fsyncs          {} ({:.0} fsyncs/s), fdatasync mean {:.0} us, max {} us",
        stats.fsyncs,
        per_second(stats.fsyncs),
        stats.fsync_micros_mean(),
        stats.fsync_micros_max
    );
    if let Ok(latency) = acks.latency_micros.lock() {
        println!(
            "ack latency     p50 {} us, p99 {} us, p99.9 {} us, max {} us (submit to on_durable)",
            latency.value_at_quantile(0.5),
            latency.value_at_quantile(0.99),
            latency.value_at_quantile(0.999),
            latency.max()
        );
    }
    println!("errors          {}", acks.errors.load(Ordering::Relaxed));
    println!("batch size histogram (records per batch: batches)");
    for (bucket, count) in stats.batch_records_histogram.iter().enumerate() {
        if *count > 0 {
            let label = JournalStats::bucket_label(bucket);
            println!("  {label:>11}: {count}");
        }
    }
}
