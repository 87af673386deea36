//! [`run`]: resolve and check the target, open and log in every connection, drive them together,
//! show progress, merge the figures into a [`Report`], then the echo baseline and the files.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{LoadConfig, Peer, Stop, TlsOptions};
use crate::conn::{self, Dial, Session, Shared};
use crate::echo::EchoServer;
use crate::error::LoadError;
use crate::report::{Report, RunSetup};
use crate::schedule::{Pacer, Tickets};
use crate::stats::{ConnStats, Live, SharedSeries};
use crate::workload::Workload;

/// Connections being opened (TCP + TLS + LOGIN) at once.
const CONNECTS_IN_FLIGHT_MAX: usize = 256;
/// How often the progress bar is redrawn.
const PROGRESS_REFRESH_MS: u64 = 200;

/// Whether `ip` is in 127.0.0.0/8.
pub fn is_loopback_v4(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 127)
}

/// Resolves `target` to the address to load: the first one in 127.0.0.0/8, or (with
/// `allow_remote`) the first one at all.
pub async fn resolve(target: &str, allow_remote: bool) -> Result<SocketAddr, LoadError> {
    let resolve_error = |reason: String| LoadError::Resolve {
        target: target.to_owned(),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target)
        .await
        .map_err(|e| resolve_error(e.to_string()))?
        .collect();
    if let Some(addr) = addrs.iter().find(|a| is_loopback_v4(a.ip())) {
        return Ok(*addr);
    }
    match addrs.first() {
        None => Err(resolve_error("no address".to_owned())),
        Some(addr) if allow_remote => Ok(*addr),
        Some(addr) => Err(LoadError::RemoteTarget(format!("{target} ({addr})"))),
    }
}

/// A fresh run id: `lt` and eight hex digits; it prefixes every order id of the run.
fn new_run_id() -> String {
    format!("lt{:08x}", rand::random::<u32>())
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Runs the load of `config` and returns its report; with `echo_baseline`, also the same load
/// against an in-process echo server. Writes the JSON and HTML files when asked. Call it on a
/// tokio runtime (multi-threaded for figures worth quoting).
pub async fn run(config: LoadConfig) -> Result<Report, LoadError> {
    config.validate()?;
    let addr = resolve(&config.target, config.allow_remote).await?;
    let mut report = run_once(&config, addr).await?;
    if config.echo_baseline {
        let baseline = run_baseline(&config, &report).await?;
        report = report.with_baseline(baseline);
    }
    if let Some(path) = &config.json {
        report.write_json(path)?;
    }
    if let Some(path) = &config.html {
        report.write_html(path)?;
    }
    Ok(report)
}

/// The same load (connections, effective depth, pacing, mix) against an in-process echo server.
async fn run_baseline(config: &LoadConfig, main: &Report) -> Result<Report, LoadError> {
    let identity = config.tls.as_ref().and(config.echo_identity.as_ref());
    let server = EchoServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), identity).await?;
    let baseline_config = LoadConfig {
        target: server.local_addr().to_string(),
        peer: Peer::Echo,
        depth: main.setup.effective_depth.max(1),
        tls: server.is_tls().then(|| TlsOptions {
            insecure_skip_verify: true,
            ..TlsOptions::default()
        }),
        echo_baseline: false,
        json: None,
        html: None,
        ..config.clone()
    };
    let result = run_once(&baseline_config, server.local_addr()).await;
    server.shutdown().await;
    result
}

/// Opens every connection (bounded concurrency), failing the run if any cannot log in.
async fn open_all(config: &Arc<LoadConfig>, dial: Dial) -> Result<Vec<Session>, LoadError> {
    let permits = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT_MAX));
    let mut opening = JoinSet::new();
    for index in 0..config.connections {
        let (config, dial, permits) = (config.clone(), dial.clone(), permits.clone());
        opening.spawn(async move {
            let _permit = permits.acquire_owned().await;
            conn::open(&dial, &config)
                .await
                .map(|session| (index, session))
        });
    }
    let mut sessions: Vec<(usize, Session)> = Vec::with_capacity(config.connections);
    while let Some(joined) = opening.join_next().await {
        match joined {
            Ok(Ok(session)) => sessions.push(session),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(LoadError::Io(std::io::Error::other(e))),
        }
    }
    sessions.sort_by_key(|(index, _)| *index);
    Ok(sessions.into_iter().map(|(_, session)| session).collect())
}

/// One run against `addr`.
async fn run_once(config: &LoadConfig, addr: SocketAddr) -> Result<Report, LoadError> {
    let tls = match &config.tls {
        Some(options) => Some((
            crate::tls::client_config(options)?,
            crate::tls::server_name(options)?,
        )),
        None => None,
    };
    let config = Arc::new(config.clone());
    let sessions = open_all(&config, Dial { addr, tls }).await?;
    let server_window = sessions.iter().filter_map(Session::window).min();
    let run_id = new_run_id();
    let started = unix_now();
    let shared = Shared {
        config: config.clone(),
        series: SharedSeries::default(),
        live: Arc::new(Live::default()),
        start: Instant::now(),
    };
    let tickets = match (config.rate, config.stop) {
        (None, Stop::Count(count)) => Some(Tickets::new(count)),
        _ => None,
    };
    let mut drivers = JoinSet::new();
    for (index, session) in sessions.into_iter().enumerate() {
        let pacer = match config.rate {
            Some(rate) => Pacer::open(rate, index, config.connections, config.warmup, config.stop),
            None => Pacer::closed(config.warmup, config.stop, tickets.clone()),
        };
        let workload = Workload::new(&config, &run_id, index, started.as_secs());
        drivers.spawn(conn::drive(session, pacer, workload, shared.clone()));
    }
    let progress = config.progress.then(|| spawn_progress(&config, &shared));
    let mut total = ConnStats::default();
    while let Some(joined) = drivers.join_next().await {
        match joined {
            Ok(stats) => total.merge(&stats),
            Err(e) => return Err(LoadError::Io(std::io::Error::other(e))),
        }
    }
    if let Some((bar, task)) = progress {
        task.abort();
        bar.finish_and_clear();
    }
    let end_us = shared.start.elapsed().as_micros() as u64;
    let mut setup = RunSetup::new(&config, addr.to_string());
    setup.server_window = server_window;
    setup.effective_depth = server_window.map_or(config.depth, |w| config.depth.min(w as usize));
    setup.request_frame_bytes_mean = if total.sent > 0 {
        total.request_bytes as f64 / total.sent as f64
    } else {
        0.0
    };
    let series = shared
        .series
        .lock()
        .map_err(|_| LoadError::Config("series lock poisoned".into()))?;
    Ok(Report::build(
        run_id,
        started.as_millis() as u64,
        setup,
        &total,
        &series,
        end_us,
    ))
}

/// The progress bar: elapsed time against the planned length, or answers against the count.
fn spawn_progress(
    config: &LoadConfig,
    shared: &Shared,
) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let (length, by_time) = match (config.stop, config.rate) {
        (Stop::Duration(d), _) => ((config.warmup + d).as_secs().max(1), true),
        (Stop::Count(count), Some(rate)) => (
            count + (config.warmup.as_secs_f64() * rate as f64).ceil() as u64,
            false,
        ),
        (Stop::Count(count), None) => (count, false),
    };
    let bar = ProgressBar::new(length);
    let template = if by_time {
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} s  {msg}"
    } else {
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}  {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    let (bar_task, live, start) = (bar.clone(), shared.live.clone(), shared.start);
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(PROGRESS_REFRESH_MS));
        let mut last = (Instant::now(), 0u64);
        loop {
            ticker.tick().await;
            let answered = live.answered.load(std::sync::atomic::Ordering::Relaxed);
            let errors = live.errors.load(std::sync::atomic::Ordering::Relaxed);
            let now = Instant::now();
            let rate = (answered - last.1.min(answered)) as f64
                / now.duration_since(last.0).as_secs_f64().max(1e-3);
            last = (now, answered);
            bar_task.set_position(if by_time {
                start.elapsed().as_secs()
            } else {
                answered
            });
            bar_task.set_message(format!("{answered} answered, {rate:.0}/s, {errors} errors"));
        }
    });
    (bar, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_127_8_is_loopback() {
        assert!(is_loopback_v4("127.0.0.1".parse().unwrap()));
        assert!(is_loopback_v4("127.255.1.2".parse().unwrap()));
        assert!(!is_loopback_v4("10.0.0.1".parse().unwrap()));
        assert!(!is_loopback_v4("::1".parse().unwrap()));
    }

    #[tokio::test]
    async fn remote_targets_are_refused() {
        let refused = resolve("192.0.2.1:7400", false).await;
        assert!(
            matches!(refused, Err(LoadError::RemoteTarget(_))),
            "{refused:?}"
        );
        assert!(resolve("192.0.2.1:7400", true).await.is_ok());
        assert_eq!(resolve("127.0.0.2:1", false).await.unwrap().port(), 1);
    }
}
