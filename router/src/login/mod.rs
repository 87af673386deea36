//! LOGIN checks, off the actor threads: the router's [`Authenticator`].
//!
//! A LOGIN from a session goes through, in order:
//! 1. the [`throttle`] of its source address: a locked-out address is refused at once, unchecked;
//! 2. the cache of verified credentials ([`Credentials::verified_before`], one SHA-256) and the
//!    certificate binding: a network reconnecting with its right credential (and certificate) is
//!    approved at once, so reconnects never wait behind anything;
//! 3. the throttle's spacing: after failures, an address's checks are spaced out; one whose turn
//!    comes after its session's login deadline is answered BUSY at once;
//! 4. the check queue (at most `checks_queued_max`; BUSY at once when full) and one of the login
//!    threads (`threads`), which runs the full Argon2 verification, records a failure against
//!    the address, and sends the verdict back. A LOGIN with the same network id and credential
//!    as a check already queued or running waits for that check instead of queueing its own
//!    (a "flight"), so that the connect storm after a restart, when nothing is cached yet, costs
//!    one Argon2 check per network rather than one per connection and does not fill the queue.
//!    Refusals for a certificate bound elsewhere never share a flight: each costs a full check.
//!
//! Argon2id with the default parameters costs about 11 ms of CPU and 19 MiB of memory per check
//! on the reference machine, so one thread checks about 90 LOGINs a second and uses one core at
//! most, however many clients guess: the Arbiters keep serving sessions and shards meanwhile.
//! Failed logins are counted (`paymesh_login_failures_total`, `paymesh_login_lockouts_total`) and
//! logged at most once per [`LOGIN_LOG_INTERVAL_MS`], with the counts since the previous line.

pub mod throttle;

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use paymesh_actors::mesh::login::{Authenticator, LoginAttempt, LoginCheck, LoginVerdict};
use paymesh_actors::metrics::Metrics;
use paymesh_actors::now_ms;
use paymesh_codecs::types::Secret;
use tokio::sync::oneshot;

use crate::auth::Credentials;
use throttle::{AddressKey, Admission, LoginThrottle, ThrottleSettings};

/// At most one log line about failed logins per this many milliseconds.
pub const LOGIN_LOG_INTERVAL_MS: u64 = 10_000;
/// Login threads at most (`[login] threads`): each runs one Argon2 check at a time, a core's
/// worth of CPU and 19 MiB while it does.
pub const LOGIN_THREADS_MAX: usize = 16;
/// How long [`LoginThreads::join`] waits for the threads at shutdown.
pub const LOGIN_THREADS_JOIN_MS: u64 = 2_000;

/// Settings of the login checks (the `[login]` section).
#[derive(Debug, Clone, Copy)]
pub struct LoginSettings {
    /// Threads running credential checks.
    pub threads: usize,
    /// Checks waiting for a thread, at most; beyond it LOGIN is answered BUSY.
    pub checks_queued_max: usize,
    /// The failed-login throttle.
    pub throttle: ThrottleSettings,
}

/// A LOGIN past the throttle and the cache, to be checked in full.
struct Check {
    key: AddressKey,
    network_id: Bytes,
    credential: Secret<Bytes>,
    /// Whether the connection's certificate may log in as the network (checked when queued).
    certificate_ok: bool,
}

/// One credential check for a login thread.
struct Job {
    check: Check,
    /// The flight this check leads, if it shares its result (see the module doc).
    flight: Option<[u8; 32]>,
    reply: oneshot::Sender<LoginVerdict>,
}

/// LOGINs waiting for the credential check of a flight: each gets whether the credential was right.
type Flights = HashMap<[u8; 32], Vec<oneshot::Sender<bool>>>;

struct Shared {
    credentials: Arc<Credentials>,
    throttle: Mutex<LoginThrottle>,
    /// Flights under way, by [`Credentials::digest`] of network id and credential. Each holds at
    /// most one waiter per connection, so `max_connections` bounds it.
    flights: Mutex<Flights>,
    metrics: Arc<Metrics>,
}

impl Shared {
    /// The full check, on a login thread.
    fn run(&self, job: Job) {
        self.metrics.login_checks_queued.dec();
        let check = &job.check;
        let (network_id, credential) = (&check.network_id, check.credential.expose());
        // A certificate that may not log in as this network is refused after the full Argon2
        // work all the same, never from the cache: every refusal costs the same, so its timing
        // cannot tell whether the credential was right.
        let credential_ok = if check.certificate_ok {
            self.credentials.verify(network_id, credential)
        } else {
            self.credentials.verify_fully(network_id, credential)
        };
        if let Some(flight) = job.flight {
            let waiters = self.flights().remove(&flight).unwrap_or_default();
            for waiter in waiters {
                let _ = waiter.send(credential_ok);
            }
        }
        let verdict = self.verdict(check.key, credential_ok && check.certificate_ok);
        let _ = job.reply.send(verdict);
    }

    /// The verdict of a finished check; a failure is recorded against the address.
    fn verdict(&self, key: AddressKey, ok: bool) -> LoginVerdict {
        if ok {
            LoginVerdict::Approved
        } else {
            self.record_failure(key);
            LoginVerdict::Refused
        }
    }

    /// The throttle. A panic elsewhere while it was held cannot have left it inconsistent (its
    /// methods do not panic), so a poisoned lock is used as it is.
    fn throttle(&self) -> MutexGuard<'_, LoginThrottle> {
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The flights (a map whose every change is a single insert or remove: poison is harmless).
    fn flights(&self) -> MutexGuard<'_, Flights> {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record_failure(&self, key: AddressKey) {
        self.metrics.login_failures.inc();
        let mut throttle = self.throttle();
        let outcome = throttle.record_failure(key, now_ms());
        self.metrics
            .login_tracked_addresses
            .set(throttle.tracked() as u64);
        drop(throttle);
        if outcome.locked_out {
            self.metrics.login_lockouts.inc();
        }
        if let Some(line) = outcome.log {
            // The address is the latest one; the counts cover every address since the last line.
            tracing::warn!(
                address = %key,
                failures = line.failures,
                lockouts = line.lockouts,
                "failed logins (counts since the previous line)"
            );
        }
    }

    fn admit(&self, key: AddressKey, wait_ms_max: u64) -> Admission {
        self.throttle().admit(key, now_ms(), wait_ms_max)
    }

    fn locked_out(&self, key: AddressKey) -> bool {
        self.throttle().locked_out(key, now_ms())
    }
}

/// The router's [`Authenticator`]: see the module doc.
pub struct LoginService {
    shared: Arc<Shared>,
    jobs: SyncSender<Job>,
}

impl std::fmt::Debug for LoginService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginService").finish_non_exhaustive()
    }
}

/// The login threads, joined at shutdown.
#[derive(Debug)]
pub struct LoginThreads {
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl LoginThreads {
    /// Waits (a bounded time) for the threads to end; they end once every [`LoginService`]
    /// handle (held by the sessions and listeners) is gone.
    pub async fn join(self) {
        let joined = tokio::task::spawn_blocking(move || {
            for h in self.handles {
                let _ = h.join();
            }
        });
        let wait = Duration::from_millis(LOGIN_THREADS_JOIN_MS);
        if tokio::time::timeout(wait, joined).await.is_err() {
            tracing::warn!("login threads still running at shutdown");
        }
    }
}

impl LoginService {
    /// Starts the login threads.
    pub fn start(
        credentials: Arc<Credentials>,
        settings: LoginSettings,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<(Arc<LoginService>, LoginThreads)> {
        let shared = Arc::new(Shared {
            credentials,
            throttle: Mutex::new(LoginThrottle::new(settings.throttle)),
            flights: Mutex::new(HashMap::new()),
            metrics,
        });
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(settings.checks_queued_max);
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::new();
        for i in 0..settings.threads.clamp(1, LOGIN_THREADS_MAX) {
            let (shared, rx) = (shared.clone(), rx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("paymesh-login-{i}"))
                .spawn(move || login_thread(&shared, &rx))
                .context("starting a login thread")?;
            handles.push(handle);
        }
        Ok((
            Arc::new(LoginService { shared, jobs }),
            LoginThreads { handles },
        ))
    }
}

fn login_thread(shared: &Shared, rx: &Mutex<Receiver<Job>>) {
    loop {
        // One thread waits in `recv` holding the lock, the others wait for the lock: each job
        // goes to one thread.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => shared.run(job),
            Err(_) => return,
        }
    }
}

impl Authenticator for LoginService {
    fn check(&self, attempt: LoginAttempt) -> LoginCheck {
        let shared = self.shared.clone();
        let key = AddressKey::of(attempt.peer.ip());
        let ready = |verdict| -> LoginCheck { Box::pin(std::future::ready(verdict)) };
        if shared.locked_out(key) {
            shared.metrics.login_locked_refusals.inc();
            return ready(LoginVerdict::LockedOut);
        }
        let credentials = &shared.credentials;
        let (network_id, credential) = (&attempt.network_id, attempt.credential.expose());
        let certificate_ok =
            credentials.certificate_allows(network_id, attempt.certificate.as_deref());
        if certificate_ok && credentials.verified_before(network_id, credential) {
            return ready(LoginVerdict::Approved);
        }
        let wait_ms = match shared.admit(key, attempt.wait_ms_max) {
            Admission::Now => 0,
            Admission::After(ms) => ms,
            Admission::TooLate => {
                shared.metrics.login_busy.inc();
                return ready(LoginVerdict::Busy);
            }
            Admission::LockedOut => {
                shared.metrics.login_locked_refusals.inc();
                return ready(LoginVerdict::LockedOut);
            }
        };
        let check = Check {
            key,
            network_id: attempt.network_id,
            credential: attempt.credential,
            certificate_ok,
        };
        if wait_ms == 0 {
            // Queued now, so that a full queue answers BUSY before this call returns.
            return submit(&shared, &self.jobs, check);
        }
        let jobs = self.jobs.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            // Other attempts from the address may have locked it out meanwhile.
            if shared.locked_out(key) {
                shared.metrics.login_locked_refusals.inc();
                return LoginVerdict::LockedOut;
            }
            submit(&shared, &jobs, check).await
        })
    }
}

/// Joins the flight of an identical check under way, or queues `check` for a login thread
/// (leading a new flight when its certificate may log in); BUSY at once when the queue is full.
fn submit(shared: &Arc<Shared>, jobs: &SyncSender<Job>, check: Check) -> LoginCheck {
    let mut flights = shared.flights();
    let digest = check.certificate_ok.then(|| {
        shared
            .credentials
            .digest(&check.network_id, check.credential.expose())
    });
    if let Some(waiters) = digest.and_then(|d| flights.get_mut(&d)) {
        let (tell, told) = oneshot::channel();
        waiters.push(tell);
        drop(flights);
        let (shared, key) = (shared.clone(), check.key);
        return Box::pin(async move {
            match told.await {
                Ok(ok) => shared.verdict(key, ok),
                Err(_) => LoginVerdict::Busy,
            }
        });
    }
    let (reply, verdict) = oneshot::channel();
    let job = Job {
        check,
        flight: digest,
        reply,
    };
    // Counted before the send so that the thread's decrement can never come first.
    shared.metrics.login_checks_queued.inc();
    match jobs.try_send(job) {
        Ok(()) => {
            if let Some(d) = digest {
                // Still under the lock: the thread cannot end this flight before it is listed,
                // nor miss a waiter that joins it from now on.
                flights.insert(d, Vec::new());
            }
            Box::pin(async move { verdict.await.unwrap_or(LoginVerdict::Busy) })
        }
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            shared.metrics.login_checks_queued.dec();
            shared.metrics.login_busy.inc();
            Box::pin(std::future::ready(LoginVerdict::Busy))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::auth::{NetworkCredential, hash_credential};

    fn service(threads: usize, queued: usize) -> (Arc<LoginService>, LoginThreads, Arc<Metrics>) {
        let phc = hash_credential("right").unwrap();
        let credentials =
            Arc::new(Credentials::new([NetworkCredential::new("VAN1", phc)]).unwrap());
        let metrics = Arc::new(Metrics::new(1));
        let settings = LoginSettings {
            threads,
            checks_queued_max: queued,
            throttle: ThrottleSettings {
                failures_max: 3,
                failure_window_ms: 60_000,
                lockout_ms: 60_000,
                delay_ms: 1,
                delay_ms_max: 4,
                addresses_max: 16,
                log_interval_ms: LOGIN_LOG_INTERVAL_MS,
            },
        };
        let (service, threads) =
            LoginService::start(credentials, settings, metrics.clone()).unwrap();
        (service, threads, metrics)
    }

    fn attempt(from: [u8; 4], network: &'static str, credential: &'static str) -> LoginAttempt {
        LoginAttempt {
            peer: (from, 4000).into(),
            network_id: Bytes::from_static(network.as_bytes()),
            credential: Secret::new(Bytes::from_static(credential.as_bytes())),
            certificate: None,
            wait_ms_max: 60_000,
        }
    }

    #[tokio::test]
    async fn failures_lock_their_address_out_and_no_other() {
        let (service, threads, metrics) = service(1, 8);
        let guesser = [192, 0, 2, 1];
        for _ in 0..3 {
            let v = service.check(attempt(guesser, "VAN1", "guess")).await;
            assert_eq!(v, LoginVerdict::Refused);
        }
        let v = service.check(attempt(guesser, "VAN1", "right")).await;
        assert_eq!(v, LoginVerdict::LockedOut, "even the right credential");
        let v = service
            .check(attempt([192, 0, 2, 2], "VAN1", "right"))
            .await;
        assert_eq!(
            v,
            LoginVerdict::Approved,
            "another address is not locked out"
        );
        assert_eq!(metrics.login_failures.get(), 3);
        assert_eq!(metrics.login_lockouts.get(), 1);
        assert_eq!(metrics.login_locked_refusals.get(), 1);
        assert_eq!(metrics.login_tracked_addresses.get(), 1);
        assert_eq!(metrics.login_checks_queued.get(), 0);
        drop(service);
        threads.join().await;
    }

    #[tokio::test]
    async fn a_connect_storm_with_one_credential_shares_one_check() {
        // A queue of one: without flights, all but two of these would be answered BUSY.
        let (service, threads, metrics) = service(1, 1);
        let storm = |credential: &'static str| -> Vec<LoginCheck> {
            (0..50u8)
                .map(|i| service.check(attempt([203, 0, 113, i], "VAN1", credential)))
                .collect()
        };
        for check in storm("right") {
            assert_eq!(check.await, LoginVerdict::Approved);
        }
        // The right credential is cached now; the wrong one gets a flight of its own.
        for check in storm("wrong") {
            assert_eq!(check.await, LoginVerdict::Refused);
        }
        assert_eq!(metrics.login_busy.get(), 0);
        assert_eq!(
            metrics.login_failures.get(),
            50,
            "each waiter's failure counts"
        );
        // Fifty addresses failed; the table keeps the sixteen it may.
        assert_eq!(metrics.login_tracked_addresses.get(), 16);
        drop(service);
        threads.join().await;
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        // No thread takes jobs out of a queue of one while the only thread is busy: fill it.
        let (service, threads, metrics) = service(1, 1);
        let checks: Vec<_> = (0..8u8)
            .map(|i| service.check(attempt([198, 51, 100, i], "NOSUCH", "x")))
            .collect();
        let mut busy = 0;
        for check in checks {
            if check.await == LoginVerdict::Busy {
                busy += 1;
            }
        }
        // Each check was queued (or refused) when it was made, before any was awaited: one can be
        // in the thread, one in the queue; the rest were refused at once.
        assert!(busy >= 6, "busy {busy}");
        assert_eq!(metrics.login_busy.get(), busy);
        drop(service);
        threads.join().await;
    }
}
