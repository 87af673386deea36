//! The TCP shell around [`crate::host`]: [`spawn_host`] listens on loopback (or any address),
//! frames each connection with the host's length header, answers requests after their latency
//! (pipelined: answers may overtake each other), applies faults, and can be paused (host down,
//! port closed) and resumed on the same port.
//!
//! Tasks: one accept task per running host, one task per connection reading and deciding, one
//! writer task per connection batching ready answers into one write, and one short task per
//! answer that waits out a latency (none when the latency is zero). Stopping (pause, shutdown or
//! dropping the handle) ends them all and closes every socket.

mod connection;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use paymesh_codecs::iso8583::{IsoFramer, LengthHeader, Profile};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::SimError;
use crate::faults::{Faults, NetworkManagement};
use crate::latency::Latency;
use crate::record::Record;
use crate::rules::{Book, HostRules};

/// Pending connections the kernel queues for a host.
pub const LISTEN_BACKLOG: u32 = 128;
/// Default of [`HostLimits::connections_max`].
pub const CONNECTIONS_MAX: usize = 64;
/// Default of [`HostLimits::inflight_per_connection_max`].
pub const INFLIGHT_PER_CONNECTION_MAX: usize = 1_024;
/// Default of [`HostLimits::frame_bytes_max`].
pub const FRAME_BYTES_MAX: usize = 8_192;
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY_MS: u64 = 10;

/// The ISO 8583 profile of a host, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ProfileName {
    /// `ascii_1987`: [`Profile::ascii_1987`].
    #[default]
    #[serde(rename = "ascii_1987")]
    Ascii1987,
    /// `binary_bcd`: [`Profile::binary_bcd`].
    #[serde(rename = "binary_bcd")]
    BinaryBcd,
    /// `pyiso_default`: [`Profile::pyiso_default`].
    #[serde(rename = "pyiso_default")]
    PyisoDefault,
}

impl ProfileName {
    /// The profile.
    pub fn profile(self) -> &'static Profile {
        match self {
            ProfileName::Ascii1987 => Profile::ascii_1987(),
            ProfileName::BinaryBcd => Profile::binary_bcd(),
            ProfileName::PyisoDefault => Profile::pyiso_default(),
        }
    }

    /// The name as written in configurations.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileName::Ascii1987 => "ascii_1987",
            ProfileName::BinaryBcd => "binary_bcd",
            ProfileName::PyisoDefault => "pyiso_default",
        }
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProfileName {
    type Err = SimError;
    fn from_str(s: &str) -> Result<ProfileName, SimError> {
        [
            ProfileName::Ascii1987,
            ProfileName::BinaryBcd,
            ProfileName::PyisoDefault,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| {
            SimError::Config(format!(
                "profile {s:?}: expected ascii_1987, binary_bcd or pyiso_default"
            ))
        })
    }
}

/// The length header of a host's messages, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderName {
    /// `binary2`: two bytes big-endian.
    #[default]
    Binary2,
    /// `ascii4`: four ASCII digits.
    Ascii4,
    /// `bcd2`: two bytes BCD.
    Bcd2,
    /// `none`: not usable over TCP (a stream has no message boundaries); rejected by
    /// [`spawn_host`], accepted here so that configurations shared with the router parse.
    None,
}

impl HeaderName {
    /// The codec's length header.
    pub fn header(self) -> LengthHeader {
        match self {
            HeaderName::Binary2 => LengthHeader::Binary2,
            HeaderName::Ascii4 => LengthHeader::Ascii4,
            HeaderName::Bcd2 => LengthHeader::Bcd2,
            HeaderName::None => LengthHeader::None,
        }
    }

    /// The name as written in configurations.
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderName::Binary2 => "binary2",
            HeaderName::Ascii4 => "ascii4",
            HeaderName::Bcd2 => "bcd2",
            HeaderName::None => "none",
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HeaderName {
    type Err = SimError;
    fn from_str(s: &str) -> Result<HeaderName, SimError> {
        [
            HeaderName::Binary2,
            HeaderName::Ascii4,
            HeaderName::Bcd2,
            HeaderName::None,
        ]
        .into_iter()
        .find(|h| h.as_str() == s)
        .ok_or_else(|| {
            SimError::Config(format!(
                "length header {s:?}: expected binary2, ascii4, bcd2 or none"
            ))
        })
    }
}

/// Bounds of one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostLimits {
    /// Open connections; one more is accepted and closed at once.
    pub connections_max: usize,
    /// Requests of one connection waiting out their latency or in its write queue; one more
    /// closes the connection (a peer that sends without reading is cut off, as hosts do).
    pub inflight_per_connection_max: usize,
    /// Longest message, length header excluded; a longer one closes the connection.
    pub frame_bytes_max: usize,
}

impl Default for HostLimits {
    fn default() -> HostLimits {
        HostLimits {
            connections_max: CONNECTIONS_MAX,
            inflight_per_connection_max: INFLIGHT_PER_CONNECTION_MAX,
            frame_bytes_max: FRAME_BYTES_MAX,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// One simulated host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimHostConfig {
    /// Name in logs and in the record, e.g. `van`.
    pub name: String,
    /// Address to listen on; port 0 picks a free port (see [`SimHostHandle::local_addr`]).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// ISO 8583 profile.
    #[serde(default)]
    pub profile: ProfileName,
    /// Length header in front of each message.
    #[serde(default)]
    pub length_header: HeaderName,
    /// Balances, limits, checks, amount patterns.
    #[serde(default)]
    pub rules: HostRules,
    /// Answer latency.
    #[serde(default)]
    pub latency: Latency,
    /// Fault probabilities (transactions only).
    #[serde(default)]
    pub faults: Faults,
    /// Sign-on requirement and network management faults.
    #[serde(default)]
    pub network: NetworkManagement,
    /// Seed of the latency and fault draws (each connection draws from its own generator, seeded
    /// from this and the connection's number).
    #[serde(default)]
    pub seed: u64,
    /// Also append the record to this file as JSON lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_path: Option<PathBuf>,
    /// Today's date as `YYMM` for expiry checks; the system clock's (UTC) if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub today_yymm: Option<u16>,
    /// Bounds.
    #[serde(default)]
    pub limits: HostLimits,
}

impl SimHostConfig {
    /// A host named `name` on a free loopback port with default everything else.
    pub fn new(name: &str, profile: ProfileName, length_header: HeaderName) -> SimHostConfig {
        SimHostConfig {
            name: name.to_string(),
            listen: default_listen(),
            profile,
            length_header,
            rules: HostRules::default(),
            latency: Latency::default(),
            faults: Faults::default(),
            network: NetworkManagement::default(),
            seed: 0,
            record_path: None,
            today_yymm: None,
            limits: HostLimits::default(),
        }
    }

    /// Checks everything [`spawn_host`] would refuse.
    pub fn validate(&self) -> Result<(), SimError> {
        let fail = |what: String| Err(SimError::Config(format!("host {:?}: {what}", self.name)));
        if self.name.is_empty() {
            return fail("empty name".into());
        }
        if self.length_header == HeaderName::None {
            return fail("length_header none cannot delimit messages on TCP".into());
        }
        let limits = self.limits;
        if limits.connections_max == 0
            || limits.inflight_per_connection_max == 0
            || limits.frame_bytes_max < 32
        {
            return fail(format!("limits {limits:?} too small"));
        }
        if self
            .today_yymm
            .is_some_and(|d| d > 9999 || !(1..=12).contains(&(d % 100)))
        {
            return fail(format!("today_yymm {:?} is not YYMM", self.today_yymm));
        }
        self.rules.validate()?;
        self.latency.validate()?;
        self.faults.validate()
    }
}

/// Latency and faults, changeable while serving.
#[derive(Debug, Clone, Copy)]
struct Behaviour {
    latency: Latency,
    faults: Faults,
    network: NetworkManagement,
}

/// What the tasks of one host share.
#[derive(Debug)]
struct Host {
    name: String,
    profile: &'static Profile,
    framer: IsoFramer,
    rules: HostRules,
    today_yymm: Option<u16>,
    limits: HostLimits,
    seed: u64,
    book: Mutex<Book>,
    behaviour: Mutex<Behaviour>,
    record: Arc<Record>,
    /// Connections accepted since start, numbering each connection's random generator.
    accepted: AtomicU64,
    /// Connections open now.
    open: AtomicUsize,
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every update is a
/// single assignment or a whole `decide`).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Host {
    fn behaviour(&self) -> Behaviour {
        *lock(&self.behaviour)
    }

    /// The next connection's number and random generator.
    fn next_connection(&self) -> (u64, SmallRng) {
        let n = self.accepted.fetch_add(1, Ordering::Relaxed);
        let rng = SmallRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        (n, rng)
    }
}

/// A running accept loop and the signal that stops it and its connections.
#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A running (or paused) simulated host. Dropping it stops the host.
#[derive(Debug)]
pub struct SimHostHandle {
    host: Arc<Host>,
    addr: SocketAddr,
    running: tokio::sync::Mutex<Option<Running>>,
}

/// Starts a host: validates `cfg`, listens, and serves in tasks of the current tokio runtime.
pub async fn spawn_host(cfg: SimHostConfig) -> Result<SimHostHandle, SimError> {
    cfg.validate()?;
    let record = match &cfg.record_path {
        Some(path) => Record::with_file(path)?,
        None => Record::new(),
    };
    let listener = listen(cfg.listen)?;
    let addr = listener.local_addr().map_err(|source| SimError::Listen {
        addr: cfg.listen,
        source,
    })?;
    let profile = cfg.profile.profile();
    let host = Arc::new(Host {
        framer: IsoFramer::new(cfg.length_header.header(), cfg.limits.frame_bytes_max),
        profile,
        rules: cfg.rules,
        today_yymm: cfg.today_yymm,
        limits: cfg.limits,
        seed: cfg.seed,
        book: Mutex::new(Book::default()),
        behaviour: Mutex::new(Behaviour {
            latency: cfg.latency,
            faults: cfg.faults,
            network: cfg.network,
        }),
        record: Arc::new(record),
        accepted: AtomicU64::new(0),
        open: AtomicUsize::new(0),
        name: cfg.name,
    });
    tracing::info!(host = %host.name, %addr, profile = profile.name, header = %cfg.length_header, "gateway-sim host listening");
    let running = start(host.clone(), listener);
    Ok(SimHostHandle {
        host,
        addr,
        running: tokio::sync::Mutex::new(Some(running)),
    })
}

/// A listening socket with `SO_REUSEADDR`, so that a resumed host gets its port back although
/// the connections it closed linger in TIME_WAIT.
fn listen(addr: SocketAddr) -> Result<TcpListener, SimError> {
    let error = |source| SimError::Listen { addr, source };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(error)?;
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(addr).map_err(error)?;
    socket.listen(LISTEN_BACKLOG).map_err(error)
}

fn start(host: Arc<Host>, listener: TcpListener) -> Running {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(host, listener, stopped));
    Running { stop, task }
}

async fn accept_loop(host: Arc<Host>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // A send or the sender's drop (the handle is gone): stop either way.
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= host.limits.connections_max {
                        tracing::warn!(host = %host.name, %peer, "connection refused: connections_max reached");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let (number, rng) = host.next_connection();
                    connections.spawn(connection::serve(host.clone(), stream, stop.clone(), number, rng));
                }
                Err(error) => {
                    tracing::warn!(host = %host.name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                }
            }
        }
    }
    drop(listener);
    // Each connection sees the same stop signal and closes its socket before ending.
    while connections.join_next().await.is_some() {}
}

impl SimHostHandle {
    /// The host's name.
    pub fn name(&self) -> &str {
        &self.host.name
    }

    /// The address the host listens on (the actual port when configured with port 0); the same
    /// after [`SimHostHandle::resume`].
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything the host processed.
    pub fn record(&self) -> Arc<Record> {
        self.host.record.clone()
    }

    /// The current balance of `account`.
    pub fn balance(&self, account: &str) -> u64 {
        let configured = self
            .host
            .rules
            .accounts
            .iter()
            .find(|rule| rule.account == account)
            .and_then(|rule| rule.balance)
            .unwrap_or(self.host.rules.default_balance);
        lock(&self.host.book).balance(account.as_bytes(), configured)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.host.open.load(Ordering::Relaxed)
    }

    /// Changes the fault probabilities for requests from now on.
    pub fn set_faults(&self, faults: Faults) -> Result<(), SimError> {
        faults.validate()?;
        lock(&self.host.behaviour).faults = faults;
        Ok(())
    }

    /// Changes the latency for requests from now on.
    pub fn set_latency(&self, latency: Latency) -> Result<(), SimError> {
        latency.validate()?;
        lock(&self.host.behaviour).latency = latency;
        Ok(())
    }

    /// Changes how network management is treated, from now on (connections keep whether they
    /// signed on).
    pub fn set_network(&self, network: NetworkManagement) {
        lock(&self.host.behaviour).network = network;
    }

    /// How network management is treated now.
    pub fn network(&self) -> NetworkManagement {
        self.host.behaviour().network
    }

    /// The current fault probabilities.
    pub fn faults(&self) -> Faults {
        self.host.behaviour().faults
    }

    /// The current latency.
    pub fn latency(&self) -> Latency {
        self.host.behaviour().latency
    }

    /// Host down: stops listening (connection attempts are refused) and closes every connection,
    /// losing the answers not yet sent. Returns when the port and the sockets are closed. The
    /// record and balances are kept.
    pub async fn pause(&self) {
        let running = self.running.lock().await.take();
        if let Some(running) = running {
            let _ = running.stop.send(true);
            let _ = running.task.await;
            tracing::info!(host = %self.host.name, "gateway-sim host stopped");
        }
    }

    /// Host back up on the same address. Does nothing if it is running.
    pub async fn resume(&self) -> Result<(), SimError> {
        let mut running = self.running.lock().await;
        if running.is_none() {
            let listener = listen(self.addr)?;
            *running = Some(start(self.host.clone(), listener));
            tracing::info!(host = %self.host.name, addr = %self.addr, "gateway-sim host resumed");
        }
        Ok(())
    }

    /// Whether the host is paused (or shut down).
    pub async fn is_paused(&self) -> bool {
        self.running.lock().await.is_none()
    }

    /// Stops the host for good and waits until every socket is closed.
    pub async fn shutdown(self) {
        self.pause().await;
    }
}
