//! The main job on the embedded default: gateway-sim hosts (VAN, card company, bank, carrier) on
//! ephemeral loopback ports, the router in front of them, and a short load through the real
//! protocol from the bundled harness, ending with the harness's summary (transactions by type and
//! result, TPS, latency percentiles). Nothing outside this process is needed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use paymesh_loadtest::{LoadConfig, Stop, TlsOptions};

use crate::config::Config;
use crate::server::Router;
use crate::{auth, run_system, tls};

/// The demo network's id and credential (the harness logs in with them).
pub const DEMO_NETWORK: &str = "DEMO";
/// The demo credential; it exists only in this process.
pub const DEMO_CREDENTIAL: &str = "demo-credential";

/// Options of `paymesh demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Seconds of load (after a one-second warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Client connections.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 64)]
    pub depth: usize,
    /// Open loop at this many requests per second (closed loop when absent).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Merchants the load spreads over.
    #[arg(long, default_value_t = 100)]
    pub merchants: u32,
    /// Actor threads (Arbiters) of the router; 0 = one per core.
    #[arg(long, default_value_t = 0)]
    pub arbiters: usize,
    /// Application shards; 0 = one per core.
    #[arg(long, default_value_t = 0)]
    pub shards: usize,
    /// Journal directory; the query store (`store.sqlite`, `-wal`, `-shm`) and the generated
    /// journal key go there too, and it is kept. Default: a fresh one under the system temp dir
    /// (`$TMPDIR`), removed at the end. Nothing is written to the working directory.
    #[arg(long)]
    pub journal_dir: Option<PathBuf>,
    /// Run without the query store (to measure that it stays off the hot path).
    #[arg(long)]
    pub no_store: bool,
    /// Journal without fsync (UNSAFE: for measuring what durability costs).
    #[arg(long)]
    pub relaxed: bool,
    /// Connect over TLS (the router's generated self-signed certificate).
    #[arg(long)]
    pub tls: bool,
    /// Write the harness's JSON result here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the harness's HTML report here.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// The router configuration of the demo, for hosts listening at `hosts` (name, address, profile,
/// length header). It runs in development mode: its journal key is generated beside the scratch
/// journal and its TLS certificate is self-signed, so the demo needs no setup.
pub fn demo_config(
    hosts: &[(String, String, String, String)],
    args: &DemoArgs,
) -> anyhow::Result<Config> {
    let (merchants, tls) = (args.merchants, args.tls);
    let journal = match &args.journal_dir {
        Some(dir) => dir.display().to_string(),
        None => String::new(),
    };
    let store = match (&args.journal_dir, args.no_store) {
        (Some(dir), false) => dir.join("store.sqlite").display().to_string(),
        _ => String::new(),
    };
    let mut text = format!(
        "[journal]\ndir = \"{journal}\"\ndurability = \"{}\"\n\n[store]\npath = \"{store}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[server]\nlisten = \"127.0.0.1:0\"\ndev_mode = true\ninflight_window = 1024\narbiters = {}\nshards = {}\n",
        if args.relaxed { "relaxed" } else { "fsync" },
        args.arbiters,
        args.shards
    );
    if tls {
        text.push_str("tls_listen = \"127.0.0.1:0\"\n");
    }
    text.push_str(&format!(
        "\n[[networks]]\nid = \"{DEMO_NETWORK}\"\ncredential_hash = \"{}\"\nmerchants = [\"*\"]\n",
        auth::hash_credential(DEMO_CREDENTIAL)?
    ));
    for m in 1..=merchants {
        text.push_str(&format!("\n[[merchants]]\nid = \"M{m:06}\"\n"));
    }
    for (name, address, profile, header) in hosts {
        text.push_str(&format!(
            "\n[[hosts]]\nname = \"{name}\"\naddress = \"{address}\"\nprofile = \"{profile}\"\nlength_header = \"{header}\"\nlinks = 2\ntimeout_ms = 5000\n"
        ));
    }
    for (method, range, host) in [
        ("card", Some((400_000, 499_999)), "van"),
        ("card", Some((510_000, 559_999)), "card"),
        ("card", Some((620_000, 629_999)), "bank"),
        ("bank", None, "bank"),
        ("carrier", None, "carrier"),
    ] {
        text.push_str(&format!(
            "\n[[routes]]\nmethod = \"{method}\"\nhost = \"{host}\"\n"
        ));
        if let Some((from, to)) = range {
            text.push_str(&format!("bin_from = {from}\nbin_to = {to}\n"));
        }
    }
    Config::parse(&text)
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    tls::install_provider();
    // The simulated hosts and the load harness run on their own runtime, like outside programs.
    let outside = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("demo-outside")
        .enable_all()
        .build()
        .context("starting the demo's client runtime")?;
    let sims = outside.block_on(async {
        let mut started = Vec::new();
        for mut cfg in paymesh_gateway_sim::config::default_hosts() {
            cfg.listen = "127.0.0.1:0".parse()?;
            let handle = paymesh_gateway_sim::server::spawn_host(cfg.clone()).await?;
            started.push((cfg, handle));
        }
        anyhow::Ok(started)
    })?;
    let hosts: Vec<_> = sims
        .iter()
        .map(|(cfg, h)| {
            (
                cfg.name.clone(),
                h.local_addr().to_string(),
                cfg.profile.to_string(),
                cfg.length_header.to_string(),
            )
        })
        .collect();
    for (name, addr, profile, header) in &hosts {
        println!("gateway-sim host {name:<8} {addr} ({profile}, {header})");
    }
    let mut args = args;
    // Everything the demo writes (journal, its generated key, the query store with its -wal and
    // -shm) goes to the journal directory: a scratch one under the system temp dir unless one is
    // given, never the working directory. The guard removes the scratch directory however the
    // run ends (an error included).
    let _scratch = match &args.journal_dir {
        Some(_) => None,
        None => {
            let dir = std::env::temp_dir().join(format!("paymesh-demo-{}", std::process::id()));
            args.journal_dir = Some(dir.clone());
            Some(ScratchDir(dir))
        }
    };
    let config = demo_config(&hosts, &args)?;
    println!(
        "journal: {} ({})",
        args.journal_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        if args.relaxed {
            "relaxed, no fsync: UNSAFE"
        } else {
            "fsync per group commit"
        }
    );
    let handle = outside.handle().clone();
    run_system(move || async move {
        let router = Router::start(config).await?;
        let target = if args.tls {
            router.tls_addr
        } else {
            router.tcp_addr
        }
        .context("no listener")?;
        println!(
            "paymesh router on {target}{}",
            if args.tls { " (TLS)" } else { "" }
        );
        if let Some(admin) = router.admin_addr {
            println!("admin port: http://{admin}/metrics and /health");
        }
        // Give the upstream links a moment to connect and sign on.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while router.metrics.upstream_links_up.get() < 8 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let load = LoadConfig {
            target: target.to_string(),
            tls: args.tls.then(|| TlsOptions {
                ca_pem: router.dev_cert_pem.clone(),
                ..TlsOptions::default()
            }),
            connections: args.connections,
            depth: args.depth,
            rate: args.rate,
            stop: Stop::Duration(Duration::from_secs(args.duration_secs)),
            warmup: Duration::from_secs(1),
            network_id: DEMO_NETWORK.into(),
            credential: DEMO_CREDENTIAL.into(),
            merchants: args.merchants,
            progress: false,
            json: args.json.clone(),
            html: args.html.clone(),
            ..LoadConfig::default()
        };
        println!(
            "load: {} connections x depth {}, {} s after 1 s warm-up, {} merchants",
            args.connections, args.depth, args.duration_secs, args.merchants
        );
        let report = handle
            .spawn(paymesh_loadtest::run(load))
            .await
            .context("load task")??;
        report.print_summary();
        router.shutdown().await;
        actix::System::current().stop();
        Ok(())
    })?;
    drop(sims);
    outside.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// A directory removed, with everything in it, when this is dropped.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Nothing to do about a failure here: the directory is under the temp dir.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
