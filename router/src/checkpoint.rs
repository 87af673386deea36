//! The checkpointer: a thread that, every `checkpoint_records` journaled records (or every
//! `checkpoint_interval_secs` with anything new), collects every shard's snapshot and files them
//! as one journal checkpoint, after which the journal deletes the segments it covers. Recovery then
//! loads the checkpoint and replays only what came after: start-up time and disk stay bounded
//! however long the router runs (see `paymesh_actors::core::recovery` for why per-shard marks make
//! this consistent without pausing the mesh).
//!
//! Before filing, it waits for the query store to commit what the shards offered up to their
//! marks, and records whether the store dropped anything: if it did, the next start-up rebuilds the
//! store from the shards.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::Addr;
use paymesh_actors::core::recovery::{ClearPart, encode_checkpoint_sealing};
use paymesh_actors::mesh::shard::{ShardActor, SnapshotPart, TakeSnapshot};
use paymesh_journal::{JournalHandle, Lsn};

/// How often the thread looks at the journal's record count.
pub const CHECKPOINT_POLL_MS: u64 = 50;
/// How long a round waits for every shard's part.
pub const CHECKPOINT_PARTS_WAIT_MS: u64 = 60_000;
/// How long a round waits for the journal to write the checkpoint.
pub const CHECKPOINT_WRITE_WAIT_MS: u64 = 120_000;

/// When to checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// Records journaled since the last checkpoint.
    pub records: u64,
    /// Time since the last checkpoint, when anything was journaled (zero: never by time).
    pub interval: Duration,
}

/// What one checkpoint round did.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointInfo {
    /// LSN it was filed at.
    pub lsn: u64,
    /// Bytes of state written.
    pub bytes: usize,
    /// Time from asking the shards to the checkpoint being durable.
    pub elapsed: Duration,
}

enum Command {
    Stop { last_checkpoint: bool },
}

/// The running checkpointer thread.
#[derive(Debug)]
pub struct Checkpointer {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

/// What a round needs.
struct Rounds {
    journal: JournalHandle,
    shards: Vec<Addr<ShardActor>>,
    store: Option<paymesh_store::StoreHandle>,
    store_complete: bool,
    round: u64,
}

impl Checkpointer {
    /// Starts the thread. `store_complete`: whether the store held every answer at start-up.
    pub fn start(
        journal: JournalHandle,
        shards: Vec<Addr<ShardActor>>,
        store: Option<paymesh_store::StoreHandle>,
        store_complete: bool,
        policy: CheckpointPolicy,
    ) -> std::io::Result<Checkpointer> {
        let (commands, rx) = mpsc::channel();
        let mut rounds = Rounds {
            journal,
            shards,
            store,
            store_complete,
            round: 0,
        };
        let thread = std::thread::Builder::new()
            .name("paymesh-checkpoint".into())
            .spawn(move || rounds.run(&rx, policy))?;
        Ok(Checkpointer {
            commands,
            thread: Some(thread),
        })
    }

    /// Stops the thread, taking one last checkpoint first when anything was journaled since the
    /// previous one (a clean shutdown then restarts from it at once). The shards must still run.
    pub fn stop(mut self, last_checkpoint: bool) {
        let _ = self.commands.send(Command::Stop { last_checkpoint });
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Rounds {
    fn run(&mut self, commands: &mpsc::Receiver<Command>, policy: CheckpointPolicy) {
        let mut last_records = self.journal.stats().records;
        let mut last_at = Instant::now();
        loop {
            let stop = match commands.recv_timeout(Duration::from_millis(CHECKPOINT_POLL_MS)) {
                Ok(Command::Stop { last_checkpoint }) => Some(last_checkpoint),
                Err(RecvTimeoutError::Disconnected) => Some(false),
                Err(RecvTimeoutError::Timeout) => None,
            };
            let records = self.journal.stats().records;
            let new = records.saturating_sub(last_records);
            let due = match stop {
                Some(last) => last && new > 0,
                None => {
                    new >= policy.records
                        || (!policy.interval.is_zero()
                            && new > 0
                            && last_at.elapsed() >= policy.interval)
                }
            };
            if due {
                match self.take() {
                    Ok(info) => tracing::info!(
                        lsn = info.lsn,
                        bytes = info.bytes,
                        elapsed_ms = info.elapsed.as_millis() as u64,
                        "journal checkpoint"
                    ),
                    Err(error) => {
                        tracing::warn!(%error, "journal checkpoint failed; retrying at the next one")
                    }
                }
                last_records = self.journal.stats().records;
                last_at = Instant::now();
            }
            if stop.is_some() {
                return;
            }
        }
    }

    /// One round: every shard's part, the store flushed, the checkpoint written.
    fn take(&mut self) -> Result<CheckpointInfo, String> {
        let started = Instant::now();
        self.round += 1;
        let round = self.round;
        let (tx, rx) = mpsc::channel::<SnapshotPart>();
        for shard in &self.shards {
            shard.do_send(TakeSnapshot {
                round,
                reply: tx.clone(),
            });
        }
        drop(tx);
        let deadline = started + Duration::from_millis(CHECKPOINT_PARTS_WAIT_MS);
        let mut parts: Vec<Option<ClearPart>> = (0..self.shards.len()).map(|_| None).collect();
        while parts.iter().any(Option::is_none) {
            let wait = deadline.saturating_duration_since(Instant::now());
            let part = rx
                .recv_timeout(wait)
                .map_err(|_| "not every shard answered".to_string())?;
            if part.round != round {
                continue;
            }
            if part.store_dropped {
                self.store_complete = false;
            }
            let shard = part.shard;
            // Sealed below (ChaCha20-Poly1305 over hundreds of MB), not on the shard's thread.
            let snapshot = part.result.map_err(|e| format!("shard {shard}: {e}"))?;
            if let Some(slot) = parts.get_mut(usize::from(shard)) {
                *slot = Some(snapshot);
            }
        }
        let parts: Vec<ClearPart> = parts.into_iter().flatten().collect();
        if let Some(store) = &self.store {
            // Every answer up to the marks was offered; make sure it is committed.
            store.flush().map_err(|e| format!("query store: {e}"))?;
        }
        let lsn = parts.iter().map(|p| p.mark_lsn).min().unwrap_or(0);
        let state = encode_checkpoint_sealing(parts, self.store_complete)
            .map_err(|e| format!("sealing: {e}"))?;
        let bytes = state.len();
        let (done_tx, done_rx) = mpsc::channel();
        self.journal
            .checkpoint(
                Lsn(lsn),
                state,
                Box::new(move |r| {
                    let _ = done_tx.send(r);
                }),
            )
            .map_err(|e| e.to_string())?;
        done_rx
            .recv_timeout(Duration::from_millis(CHECKPOINT_WRITE_WAIT_MS))
            .map_err(|_| "the journal did not write the checkpoint in time".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(CheckpointInfo {
            lsn,
            bytes,
            elapsed: started.elapsed(),
        })
    }
}
