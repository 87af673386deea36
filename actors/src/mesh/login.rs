//! What a session asks of the router at LOGIN, and what it hears back.
//!
//! Checking a credential is deliberately slow (Argon2id: milliseconds of CPU and megabytes of
//! memory), so it must never run on an Arbiter thread, where it would stall every session and shard
//! sharing that thread. A session therefore hands a [`LoginAttempt`] to its [`Authenticator`] and
//! gets back a future ([`LoginCheck`]); it waits for the future without handling anything else
//! meanwhile. The router's implementation (`paymesh-router`'s `login` module) checks credentials on
//! a small pool of threads of its own, throttles failed logins per source address, and answers fast
//! (BUSY) when it is saturated, so the future always resolves soon; the session also bounds the
//! wait by its login deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use paymesh_codecs::types::Secret;

/// What the listener knows about a connection when it starts the session.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The client's address: failed logins are throttled per source address.
    pub addr: SocketAddr,
    /// The client certificate (DER) the TLS handshake verified, when the listener requires one
    /// (mutual TLS). It is bound to the one network it may log in as.
    pub certificate: Option<Bytes>,
    /// When the connection was accepted: LOGIN must complete within the login deadline of it,
    /// TLS handshake included.
    pub accepted_at: tokio::time::Instant,
}

impl PeerInfo {
    /// A peer without a client certificate, accepted now.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            certificate: None,
            accepted_at: tokio::time::Instant::now(),
        }
    }
}

/// One LOGIN to check.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    /// Where it came from.
    pub peer: SocketAddr,
    /// The network it claims to be.
    pub network_id: Bytes,
    /// The credential it sent (never logged).
    pub credential: Secret<Bytes>,
    /// The client certificate of the connection (mutual TLS), DER.
    pub certificate: Option<Bytes>,
    /// How long the session can still wait (its login deadline). A check that would have to be
    /// delayed longer is answered [`LoginVerdict::Busy`] at once instead.
    pub wait_ms_max: u64,
}

/// The outcome of a LOGIN check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginVerdict {
    /// Network id, credential and client certificate all check out.
    Approved,
    /// Unknown network id, wrong credential, or a client certificate bound to another network:
    /// one answer for all three (AUTH_FAILED), so that none can be told from the others.
    Refused,
    /// Too many failed logins from this source address lately; nothing was checked.
    LockedOut,
    /// No capacity to check it now (the check queue is full, or this address must wait past the
    /// login deadline); nothing was checked.
    Busy,
}

/// A LOGIN check in progress. It runs on the session's Arbiter, so it need not be `Send`; the
/// slow part happens elsewhere.
pub type LoginCheck = Pin<Box<dyn Future<Output = LoginVerdict>>>;

/// Checks LOGINs (the router checks hashed credentials, certificate bindings and throttling).
pub trait Authenticator: Send + Sync {
    /// Starts checking `attempt`. Must return at once without blocking the calling (Arbiter)
    /// thread; the returned future resolves with the verdict.
    fn check(&self, attempt: LoginAttempt) -> LoginCheck;
}
