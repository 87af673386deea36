//! Test support: a minimal PayMesh protocol client over real loopback TCP/TLS, and an environment
//! of gateway-sim hosts plus a router started in-process.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use paymesh_codecs::frame::decode_frame;
use paymesh_codecs::message::{
    Login, LoginAnswer, Message, PaymentMethod, TxnAnswer, TxnKind, TxnRequest,
};
use paymesh_codecs::types::{Pan, ResultCode, Secret};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for any one frame before failing (generous: CI machines are slow).
pub const RECV_TIMEOUT: Duration = Duration::from_secs(20);

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A protocol client.
pub struct Client {
    stream: Box<dyn Stream>,
    buf: BytesMut,
    next_correlation: u64,
}

impl Client {
    pub async fn tcp(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            stream: Box::new(s),
            buf: BytesMut::new(),
            next_correlation: 1,
        }
    }

    /// A plain TCP client whose connection comes from `local_ip` (any of 127.0.0.0/8 on Linux), so
    /// that tests can play several source addresses.
    pub async fn tcp_from(addr: SocketAddr, local_ip: [u8; 4]) -> std::io::Result<Client> {
        let s = connect_from(addr, local_ip, None).await?;
        Ok(Client {
            stream: Box::new(s),
            buf: BytesMut::new(),
            next_correlation: 1,
        })
    }

    pub async fn tls(
        addr: SocketAddr,
        ca_pem: &str,
        identity: Option<(&str, &str)>,
    ) -> std::io::Result<Client> {
        paymesh_router::tls::install_provider();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => {
                let certs = rustls_pemfile::certs(&mut cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = rustls_pemfile::private_key(&mut key.as_bytes())
                    .unwrap()
                    .unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let s = connector.connect(name, tcp).await?;
        Ok(Client {
            stream: Box::new(s),
            buf: BytesMut::new(),
            next_correlation: 1,
        })
    }

    /// Everything the server sends until it closes the connection (bounded by [`RECV_TIMEOUT`]).
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        let mut all = self.buf.split().to_vec();
        let read = tokio::time::timeout(RECV_TIMEOUT, self.stream.read_to_end(&mut all)).await;
        read.expect("the server did not close in time").ok();
        all
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_correlation += 1;
        self.next_correlation
    }

    pub async fn send(&mut self, correlation_id: u64, msg: &Message) {
        let mut out = BytesMut::new();
        msg.encode(correlation_id, 0, &mut out);
        self.stream.write_all(&out).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next frame, or `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<(u64, Message)> {
        self.recv_flagged()
            .await
            .map(|(correlation, _, msg)| (correlation, msg))
    }

    /// [`Client::recv`] with the frame's flag bits (RETRANSMIT on replayed answers).
    pub async fn recv_flagged(&mut self) -> Option<(u64, u16, Message)> {
        loop {
            if let Some(frame) =
                decode_frame(&mut self.buf, 16_384).expect("server sent a bad frame")
            {
                let msg = Message::decode(&frame).expect("server sent a bad body");
                return Some((frame.header.correlation_id, frame.header.flags, msg));
            }
            let n = tokio::time::timeout(RECV_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("no frame from the server in time");
            match n {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    pub async fn login(&mut self, network: &str, credential: &str) -> LoginAnswer {
        let login = Login {
            network_id: Bytes::copy_from_slice(network.as_bytes()),
            credential: Secret::new(Bytes::copy_from_slice(credential.as_bytes())),
            client_software: Some(Bytes::from_static(b"paymesh-tests")),
        };
        let id = self.next_id();
        self.send(id, &Message::Login(login)).await;
        match self.recv().await {
            Some((cid, Message::LoginAnswer(a))) => {
                assert_eq!(cid, id);
                a
            }
            other => panic!("expected LOGIN_ANSWER, got {other:?}"),
        }
    }

    /// Sends one request and waits for its answer (no other traffic in flight).
    pub async fn call(&mut self, req: TxnRequest) -> TxnAnswer {
        self.call_flagged(req).await.0
    }

    /// [`Client::call`] with the answer frame's flag bits.
    pub async fn call_flagged(&mut self, req: TxnRequest) -> (TxnAnswer, u16) {
        let id = self.next_id();
        self.send(id, &Message::Request(req)).await;
        match self.recv_flagged().await {
            Some((cid, flags, Message::Answer(a))) => {
                assert_eq!(cid, id, "answer to another request");
                (a, flags)
            }
            other => panic!("expected an answer, got {other:?}"),
        }
    }
}

/// A TCP connection from `local_ip`, with a receive buffer of `recv_buffer_bytes` if given (set
/// before connecting, so that the window the server sees is small from the start).
pub async fn connect_from(
    addr: SocketAddr,
    local_ip: [u8; 4],
    recv_buffer_bytes: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(bytes) = recv_buffer_bytes {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.bind(SocketAddr::from((local_ip, 0)))?;
    let s = socket.connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A LOGIN frame.
pub fn login_frame(correlation_id: u64, network: &str, credential: &str) -> Vec<u8> {
    let login = Login {
        network_id: Bytes::copy_from_slice(network.as_bytes()),
        credential: Secret::new(Bytes::copy_from_slice(credential.as_bytes())),
        client_software: Some(Bytes::from_static(b"paymesh-tests")),
    };
    let mut out = BytesMut::new();
    Message::Login(login).encode(correlation_id, 0, &mut out);
    out.to_vec()
}

pub const NETWORK: &str = "VANTEST";
/// A second network: granted M000002, MSHARED and MCREATOR (not M000001), same credential;
/// `NETWORK` is granted every merchant.
pub const NETWORK_B: &str = "VANTEST-B";
pub const CREDENTIAL: &str = "test-credential";

pub fn card(pan: &str) -> PaymentMethod {
    PaymentMethod::Card {
        pan: Pan::new(Bytes::copy_from_slice(pan.as_bytes())).unwrap(),
        expiry: Bytes::from_static(b"3012"),
        cvv: Some(Secret::new(Bytes::from_static(b"123"))),
    }
}

/// A card without CVV (TOKENIZE and BALANCE_INQUIRY must not carry one).
pub fn card_without_cvv(pan: &str) -> PaymentMethod {
    PaymentMethod::Card {
        pan: Pan::new(Bytes::copy_from_slice(pan.as_bytes())).unwrap(),
        expiry: Bytes::from_static(b"3012"),
        cvv: None,
    }
}

pub fn request(
    kind: TxnKind,
    merchant: &str,
    order: &str,
    amount: Option<u64>,
    payment: Option<PaymentMethod>,
) -> TxnRequest {
    let mut r = TxnRequest::new(
        kind,
        Bytes::copy_from_slice(merchant.as_bytes()),
        Bytes::copy_from_slice(order.as_bytes()),
    );
    r.amount = amount;
    if payment.is_some() {
        r.currency = Some(410);
    }
    r.payment = payment;
    r
}

/// The device registered to M000001: wallet-token payments must be signed.
pub const TEST_DEVICE: &str = "test-phone";

pub fn test_device_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

/// `req` signed by `device` with `key` and `counter`, as the device would (docs/PROTOCOL.md,
/// "Device signatures").
pub fn sign(
    mut req: TxnRequest,
    key: &ed25519_dalek::SigningKey,
    device: &str,
    counter: u64,
) -> TxnRequest {
    use ed25519_dalek::Signer;
    req.device_signature = Some(paymesh_codecs::message::DeviceSignature {
        device_id: Bytes::copy_from_slice(device.as_bytes()),
        counter,
        signature: Bytes::new(),
    });
    let mut message = BytesMut::new();
    req.device_signed_bytes(&mut message);
    let signature = key.sign(&message).to_bytes();
    if let Some(d) = &mut req.device_signature {
        d.signature = Bytes::copy_from_slice(&signature);
    }
    req
}

pub fn assert_result(a: &TxnAnswer, code: ResultCode) {
    assert_eq!(a.result, code, "answer: {a:?}");
}

pub const VAN_PAN: &str = "4111111111111111";
pub const CARD_PAN: &str = "5400000000000005";
pub const MERCHANT_SINGLE_LIMIT: u64 = 10_000_000;

/// What a test environment looks like.
#[derive(Debug, Clone)]
pub struct EnvOptions {
    /// Fixed latency of the "card" host (BIN 51-55); the others answer at once.
    pub card_latency_ms: u64,
    /// Answer timeout of every host.
    pub host_timeout_ms: u64,
    /// The router's per-connection window.
    pub inflight_window: u32,
    /// Start a TLS listener with a generated self-signed certificate (development mode).
    pub tls: bool,
    /// Start a TLS listener that requires client certificates signed by a test CA.
    pub mutual_tls: bool,
    /// The router's connection limit.
    pub max_connections: usize,
    /// Journal directory to use (to restart on the same journal); a fresh one when `None`.
    pub journal_dir: Option<std::path::PathBuf>,
    /// The journal's key file; when `None`, `<journal dir>.key` beside it, generated (0600) on
    /// first use so that restarts on the same journal find the same key.
    pub key_file: Option<std::path::PathBuf>,
    /// The plain TCP listener address.
    pub listen: String,
    /// Start the router in this process (else only the hosts and `config_text`).
    pub start_router: bool,
    /// Extra lines for the `[journal]` section (checkpoint and segment settings).
    pub journal_toml: String,
    /// Extra lines for the `[server]` section (window limits).
    pub server_toml: String,
    /// More `[[merchants]]` (with their `[[merchants.devices]]`).
    pub merchants_toml: String,
    /// Lines for the `[login]` section (login threads, failed-login throttle).
    pub login_toml: String,
    /// More `[[networks]]` entries.
    pub networks_toml: String,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            card_latency_ms: 0,
            host_timeout_ms: 5_000,
            inflight_window: 64,
            tls: false,
            mutual_tls: false,
            max_connections: 100,
            journal_dir: None,
            key_file: None,
            listen: "127.0.0.1:0".into(),
            start_router: true,
            journal_toml: String::new(),
            server_toml: String::new(),
            merchants_toml: String::new(),
            login_toml: String::new(),
            networks_toml: String::new(),
        }
    }
}

/// gateway-sim hosts and a router, in this process, on loopback.
pub struct Env {
    router: Option<paymesh_router::server::Router>,
    pub hosts: Vec<(String, sim::Host)>,
    pub tcp: SocketAddr,
    pub tls: Option<SocketAddr>,
    /// The admin port (`/metrics`, `/health`) on an ephemeral loopback port.
    pub admin: Option<SocketAddr>,
    pub dev_cert_pem: Option<String>,
    pub server_ca_pem: Option<String>,
    pub client_identity: Option<(String, String)>,
    /// With `mutual_tls`: a second client certificate from the same CA, bound to no network.
    pub unbound_client_identity: Option<(String, String)>,
    /// The router configuration (TOML) this environment uses.
    pub config_text: String,
    /// The query store's SQLite file.
    pub store_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A CA, a server certificate for localhost and a client certificate, as PEM.
struct TestPki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
    unbound_client: (String, String),
}

fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issue = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    TestPki {
        ca_pem: ca.pem(),
        server: issue(vec!["localhost".into()]),
        client: issue(vec!["van-client".into()]),
        unbound_client: issue(vec!["someone-else".into()]),
    }
}

impl Env {
    pub async fn start(opts: EnvOptions) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut hosts = Vec::new();
        let mut host_toml = String::new();
        for (name, profile, header, latency) in [
            ("van", "ascii_1987", "binary2", 0),
            ("card", "binary_bcd", "bcd2", opts.card_latency_ms),
            ("bank", "ascii_1987", "ascii4", 0),
            ("carrier", "ascii_1987", "binary2", 0),
        ] {
            let host = sim::start(name, profile, header, latency).await;
            host_toml.push_str(&format!(
                "[[hosts]]\nname = \"{name}\"\naddress = \"{}\"\nprofile = \"{profile}\"\nlength_header = \"{header}\"\nlinks = 2\ntimeout_ms = {}\n\n",
                host.addr, opts.host_timeout_ms
            ));
            hosts.push((name.to_string(), host));
        }
        let hash = paymesh_router::auth::hash_credential(CREDENTIAL).unwrap();
        let mut tls_toml = String::new();
        let mut server_ca_pem = None;
        let mut client_identity = None;
        let mut unbound_client_identity = None;
        // With mutual TLS, the test network is bound to the test client certificate.
        let mut network_binding = String::new();
        if opts.tls || opts.mutual_tls {
            tls_toml.push_str("tls_listen = \"127.0.0.1:0\"\n");
        }
        if opts.tls && !opts.mutual_tls {
            tls_toml.push_str("dev_mode = true\n");
        }
        if opts.mutual_tls {
            let pki = test_pki();
            let write = |name: &str, text: &str| {
                let p = dir.path().join(name);
                std::fs::write(&p, text).unwrap();
                p.display().to_string()
            };
            tls_toml.push_str(&format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{}\"\n",
                write("server.crt", &pki.server.0),
                write("server.key", &pki.server.1),
                write("ca.crt", &pki.ca_pem)
            ));
            server_ca_pem = Some(pki.ca_pem.clone());
            let der = rustls_pemfile::certs(&mut pki.client.0.as_bytes())
                .next()
                .unwrap()
                .unwrap();
            network_binding = format!(
                "client_cert_sha256 = [\"{}\"]\n",
                paymesh_router::auth::certificate_sha256_hex(&der)
            );
            client_identity = Some(pki.client);
            unbound_client_identity = Some(pki.unbound_client);
        }
        let journal_dir = opts
            .journal_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("journal"));
        let key_file = opts.key_file.clone().unwrap_or_else(|| {
            let mut name = journal_dir.as_os_str().to_owned();
            name.push(".key");
            std::path::PathBuf::from(name)
        });
        if !key_file.exists() {
            paymesh_router::key_file::generate(&key_file).unwrap();
        }
        let store_path = dir.path().join("store.sqlite");
        let config = format!(
            "[journal]\ndir = \"{}\"\nkey_file = \"{}\"\n{}\n[store]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[server]\nlisten = \"{}\"\n{tls_toml}inflight_window = {}\nmax_connections = {}\narbiters = 2\nshards = 2\nshutdown_grace_ms = 2000\n{}\n\
             [login]\n{}\n\
             [[networks]]\nid = \"{NETWORK}\"\ncredential_hash = \"{hash}\"\nmerchants = [\"*\"]\n{network_binding}\n\
             [[networks]]\nid = \"{NETWORK_B}\"\ncredential_hash = \"{hash}\"\n\
             merchants = [\"M000002\", \"MSHARED\", \"MCREATOR\"]\n\n{}\n\
             [[merchants]]\nid = \"M000001\"\nsingle_limit_minor = {MERCHANT_SINGLE_LIMIT}\n\
             [[merchants.devices]]\nid = \"{TEST_DEVICE}\"\npublic_key = \"{}\"\n\n\
             [[merchants]]\nid = \"M000002\"\n\n\
             [[merchants]]\nid = \"MSHARED\"\nfollow_ups = \"any_granted_network\"\n\n\
             [[merchants]]\nid = \"MCREATOR\"\n\n\
             [[merchants]]\nid = \"MOFF\"\nenabled = false\n\n{}\n{host_toml}\
             [[routes]]\nmethod = \"card\"\nbin_from = 400000\nbin_to = 499999\nhost = \"van\"\n\n\
             [[routes]]\nmethod = \"card\"\nbin_from = 510000\nbin_to = 559999\nhost = \"card\"\n\n\
             [[routes]]\nmethod = \"card\"\nbin_from = 620000\nbin_to = 629999\nhost = \"bank\"\n\n\
             [[routes]]\nmethod = \"bank\"\nhost = \"bank\"\n\n\
             [[routes]]\nmethod = \"carrier\"\nhost = \"carrier\"\n",
            journal_dir.display(),
            key_file.display(),
            opts.journal_toml,
            store_path.display(),
            opts.listen,
            opts.inflight_window,
            opts.max_connections,
            opts.server_toml,
            opts.login_toml,
            opts.networks_toml,
            hex::encode(test_device_key().verifying_key().to_bytes()),
            opts.merchants_toml,
        );
        let config_text = config;
        if !opts.start_router {
            return Env {
                tcp: opts.listen.parse().unwrap(),
                tls: None,
                admin: None,
                dev_cert_pem: None,
                router: None,
                hosts,
                server_ca_pem,
                client_identity,
                unbound_client_identity,
                config_text,
                store_path,
                _dir: dir,
            };
        }
        let config = paymesh_router::config::Config::parse(&config_text).unwrap();
        let router = paymesh_router::server::Router::start(config).await.unwrap();
        // Wait until every upstream link is up, so tests do not race the pools' first connects.
        let deadline = Instant::now() + Duration::from_secs(10);
        while router.metrics.upstream_links_up.get() < 8 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Env {
            tcp: router.tcp_addr.unwrap(),
            tls: router.tls_addr,
            admin: router.admin_addr,
            dev_cert_pem: router.dev_cert_pem.clone(),
            router: Some(router),
            hosts,
            server_ca_pem,
            client_identity,
            unbound_client_identity,
            config_text,
            store_path,
            _dir: dir,
        }
    }

    /// A logged-in client on the plain TCP listener.
    pub async fn client(&self) -> Client {
        let mut c = Client::tcp(self.tcp).await;
        assert_eq!(
            c.login(NETWORK, CREDENTIAL).await.result,
            ResultCode::Approved
        );
        c
    }

    /// Reloads the router's merchants and grants from `config_text` (as SIGHUP does).
    pub async fn reload(&self, config_text: &str) -> anyhow::Result<u64> {
        let config = paymesh_router::config::Config::parse(config_text)?;
        self.router.as_ref().unwrap().reload(&config).await
    }

    /// The router's counters.
    pub fn metrics(&self) -> Arc<paymesh_actors::metrics::Metrics> {
        self.router.as_ref().unwrap().metrics.clone()
    }

    fn host(&self, name: &str) -> &sim::Host {
        &self.hosts.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// Authorizations, sales, refunds and reversals the host recorded for an order.
    pub fn host_count(&self, host: &str, order: &str) -> usize {
        self.host(host).count_order(order)
    }

    pub fn host_authorizations(&self, host: &str, order: &str) -> usize {
        self.host(host).count_authorizations(order)
    }

    /// See [`sim::Host::reversals`].
    pub fn host_reversals(&self, host: &str, order: &str) -> (Vec<Option<u32>>, Vec<u32>) {
        self.host(host).reversals(order)
    }

    pub fn host_saw(&self, host: &str, order: &str) -> bool {
        self.host_count(host, order) > 0
    }

    /// Takes the router out, to shut it down by hand.
    pub fn take_router(&mut self) -> paymesh_router::server::Router {
        self.router.take().unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.router.take() {
            r.shutdown().await;
        }
    }

    /// Shuts the router down (flushing the query store) and hands back the environment.
    pub async fn stop_router(&mut self) {
        if let Some(r) = self.router.take() {
            r.shutdown().await;
        }
    }
}

use std::time::Instant;

/// A loopback port free a moment ago, for a router started as its own process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (and reaped) on drop, so a failing test leaves no router behind.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` (a `paymesh` invocation) with its log (stderr, `RUST_LOG=info`) in `log`.
pub fn spawn_logged(mut command: std::process::Command, log: &std::path::Path) -> KillOnDrop {
    command
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .map(KillOnDrop)
        .unwrap()
}

/// `paymesh serve --config CONFIG` as its own process, logging to `log`.
pub fn spawn_router(config: &std::path::Path, log: &std::path::Path) -> KillOnDrop {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_paymesh"));
    command.args(["serve", "--config"]).arg(config);
    spawn_logged(command, log)
}

/// A client logged in as `network` on `addr`, once a router started as a process answers there
/// (a bounded wait: 20 s).
pub async fn connect_as(addr: SocketAddr, network: &str) -> Client {
    for _ in 0..400 {
        if TcpStream::connect(addr).await.is_ok() {
            let mut c = Client::tcp(addr).await;
            if c.login(network, CREDENTIAL).await.result == ResultCode::Approved {
                return c;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("router did not come up");
}

/// The gateway-sim hosts as tests use them.
pub mod sim {
    use std::net::SocketAddr;

    pub struct Host {
        pub addr: SocketAddr,
        pub handle: paymesh_gateway_sim::server::SimHostHandle,
    }

    impl Host {
        /// Authorizations and sales (not refunds or reversals) the host saw for an order.
        pub fn count_authorizations(&self, order: &str) -> usize {
            self.handle.record().count(|e| {
                e.order_ref.as_deref() == Some(order)
                    && (e.mti == 100 || e.mti == 200)
                    && e.processing_code.starts_with("00")
            })
        }

        /// Reversals (0400 and repeats 0401) the host saw for an order, with the STAN each
        /// names as the original's (field 90), and the STANs of the order's authorizations.
        pub fn reversals(&self, order: &str) -> (Vec<Option<u32>>, Vec<u32>) {
            let entries = self.handle.record().entries();
            let mine = entries
                .iter()
                .filter(|e| e.order_ref.as_deref() == Some(order));
            let reversals = mine
                .clone()
                .filter(|e| e.mti == 400 || e.mti == 401)
                .map(|e| e.original_stan)
                .collect();
            let auths = mine
                .filter(|e| (e.mti == 100 || e.mti == 200) && e.processing_code.starts_with("00"))
                .map(|e| e.stan)
                .collect();
            (reversals, auths)
        }

        pub fn count_order(&self, order: &str) -> usize {
            self.handle
                .record()
                .count(|e| e.order_ref.as_deref() == Some(order))
        }
    }

    pub async fn start(name: &str, profile: &str, header: &str, latency_ms: u64) -> Host {
        let mut cfg = paymesh_gateway_sim::config::default_hosts()
            .into_iter()
            .next()
            .unwrap();
        cfg.name = name.to_string();
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.profile = profile.parse().unwrap();
        cfg.length_header = header.parse().unwrap();
        cfg.latency = paymesh_gateway_sim::latency::Latency::Fixed { ms: latency_ms };
        // Amounts ending in 91: "issuer or switch inoperative" (PROTOCOL.md 3007).
        cfg.rules
            .patterns
            .push(paymesh_gateway_sim::rules::AmountPattern::suffix(
                "91", b"91",
            ));
        let handle = paymesh_gateway_sim::server::spawn_host(cfg).await.unwrap();
        Host {
            addr: handle.local_addr(),
            handle,
        }
    }
}
