//! The route table: payment method and card BIN range → upstream host, with failover.
//!
//! A route row names a primary host and, optionally, secondary hosts in order of preference.
//! [`RouteTable::route`] answers the first of them that is available, and the primary when none
//! is (its pool then refuses fast, UPSTREAM_UNAVAILABLE). Availability is a [`HostAvailability`]
//! flag per host that the host's pool actor keeps current (a link signed on and the circuit breaker
//! closed) and every shard reads: one relaxed atomic load per candidate, no locks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::core::config::{RouteConfig, RouteMethod};
use crate::error::MeshError;

/// Hosts a route row may name (the primary and its failover hosts).
pub const ROUTE_HOSTS_MAX: usize = 8;

/// Whether each upstream host can take transactions now, shared by the pools (writers) and the
/// shards' route tables (readers). Every host starts available.
#[derive(Debug, Clone)]
pub struct HostAvailability(Arc<[AtomicBool]>, Arc<[AtomicU64]>);

impl HostAvailability {
    /// Flags for `hosts` hosts, all available.
    pub fn new(hosts: usize) -> Self {
        Self(
            (0..hosts).map(|_| AtomicBool::new(true)).collect(),
            (0..hosts).map(|_| AtomicU64::new(0)).collect(),
        )
    }

    /// Whether host `host` is available; an unknown host counts as available.
    pub fn is_available(&self, host: HostId) -> bool {
        self.0
            .get(usize::from(host))
            .is_none_or(|a| a.load(Ordering::Relaxed))
    }

    /// Sets host `host`'s availability (the host's pool actor calls this).
    pub fn set(&self, host: HostId, available: bool) {
        if let Some(a) = self.0.get(usize::from(host)) {
            a.store(available, Ordering::Relaxed);
        }
    }

    /// How many times a link of `host` signed on (the shards send the store-and-forward
    /// messages waiting for it when this grows).
    pub fn sign_ons(&self, host: HostId) -> u64 {
        self.1
            .get(usize::from(host))
            .map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// Publishes `host`'s sign-on count (its pool actor calls this).
    pub fn set_sign_ons(&self, host: HostId, count: u64) {
        if let Some(a) = self.1.get(usize::from(host)) {
            a.store(count, Ordering::Relaxed);
        }
    }

    /// Hosts known.
    pub fn hosts(&self) -> usize {
        self.0.len()
    }
}

impl Default for HostAvailability {
    fn default() -> Self {
        Self::new(0)
    }
}

/// Index of an upstream host in the router's host list.
pub type HostId = u16;

/// What a transaction is routed by.
#[derive(Debug, Clone, Copy)]
pub enum RouteKey<'a> {
    /// A card, by its BIN (first six digits).
    Card {
        /// First six digits of the PAN.
        bin: u32,
    },
    /// Carrier billing, by carrier name.
    Carrier {
        /// Carrier name as the client sent it.
        carrier: &'a [u8],
    },
    /// Bank transfer, by bank code.
    Bank {
        /// Bank code as the client sent it.
        bank_code: &'a [u8],
    },
}

/// A route's hosts: the primary first, then the failover hosts in order of preference.
type Hosts = Vec<HostId>;

#[derive(Debug, Clone)]
struct CardRange {
    from: u32,
    to: u32,
    hosts: Hosts,
}

#[derive(Debug, Clone)]
struct KeyedRoute {
    key: Option<Vec<u8>>,
    hosts: Hosts,
}

/// Compiled route table. Card ranges are checked most specific (narrowest) first.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    cards: Vec<CardRange>,
    carriers: Vec<KeyedRoute>,
    banks: Vec<KeyedRoute>,
    availability: HostAvailability,
}

fn host_id(name: &str, host_names: &[String]) -> Result<HostId, MeshError> {
    host_names
        .iter()
        .position(|h| h == name)
        .and_then(|i| HostId::try_from(i).ok())
        .ok_or_else(|| MeshError::Config(format!("route names unknown host {name:?}")))
}

/// The primary and failover hosts of a row, checked: known, distinct, at most [`ROUTE_HOSTS_MAX`].
fn row_hosts(row: &RouteConfig, host_names: &[String]) -> Result<Hosts, MeshError> {
    let mut hosts = Vec::with_capacity(1 + row.failover.len());
    for name in std::iter::once(&row.host).chain(&row.failover) {
        let id = host_id(name, host_names)?;
        if hosts.contains(&id) {
            return Err(MeshError::Config(format!(
                "route to {:?} names host {name:?} twice",
                row.host
            )));
        }
        hosts.push(id);
    }
    if hosts.len() > ROUTE_HOSTS_MAX {
        return Err(MeshError::Config(format!(
            "route to {:?} names {} hosts, at most {ROUTE_HOSTS_MAX}",
            row.host,
            hosts.len()
        )));
    }
    Ok(hosts)
}

impl RouteTable {
    /// Compiles route rows, resolving host names to ids. Every host starts available.
    pub fn new(rows: &[RouteConfig], host_names: &[String]) -> Result<Self, MeshError> {
        let mut table = Self {
            availability: HostAvailability::new(host_names.len()),
            ..Self::default()
        };
        for row in rows {
            let hosts = row_hosts(row, host_names)?;
            match row.method {
                RouteMethod::Card => {
                    let from = row.bin_from.unwrap_or(0);
                    let to = row.bin_to.unwrap_or(999_999);
                    if from > to || to > 999_999 {
                        return Err(MeshError::Config(format!("bad BIN range {from}..={to}")));
                    }
                    table.cards.push(CardRange { from, to, hosts });
                }
                RouteMethod::Carrier => table.carriers.push(KeyedRoute {
                    key: row.key.as_ref().map(|k| k.as_bytes().to_vec()),
                    hosts,
                }),
                RouteMethod::Bank => table.banks.push(KeyedRoute {
                    key: row.key.as_ref().map(|k| k.as_bytes().to_vec()),
                    hosts,
                }),
            }
        }
        table.cards.sort_by_key(|r| r.to - r.from);
        // Keyed rows before catch-all rows.
        table.carriers.sort_by_key(|r| r.key.is_none());
        table.banks.sort_by_key(|r| r.key.is_none());
        Ok(table)
    }

    /// The host for a transaction: the first available host of the matching row (primary, then
    /// failover hosts), the primary when none is available, `None` when no row matches
    /// (UNROUTABLE).
    pub fn route(&self, key: RouteKey<'_>) -> Option<HostId> {
        let hosts = match key {
            RouteKey::Card { bin } => self
                .cards
                .iter()
                .find(|r| (r.from..=r.to).contains(&bin))
                .map(|r| &r.hosts),
            RouteKey::Carrier { carrier } => keyed(&self.carriers, carrier),
            RouteKey::Bank { bank_code } => keyed(&self.banks, bank_code),
        }?;
        let primary = hosts.first().copied()?;
        Some(
            hosts
                .iter()
                .copied()
                .find(|h| self.availability.is_available(*h))
                .unwrap_or(primary),
        )
    }

    /// The availability flags this table reads; the pool actors write them.
    pub fn availability(&self) -> &HostAvailability {
        &self.availability
    }
}

fn keyed<'a>(rows: &'a [KeyedRoute], key: &[u8]) -> Option<&'a Hosts> {
    rows.iter()
        .find(|r| r.key.as_deref().is_none_or(|k| k.eq_ignore_ascii_case(key)))
        .map(|r| &r.hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        method: RouteMethod,
        from: Option<u32>,
        to: Option<u32>,
        key: Option<&str>,
        host: &str,
    ) -> RouteConfig {
        RouteConfig {
            method,
            bin_from: from,
            bin_to: to,
            key: key.map(str::to_owned),
            host: host.into(),
            failover: Vec::new(),
        }
    }

    #[test]
    fn narrow_bin_range_wins_and_unknown_methods_are_unroutable() {
        let hosts = vec!["van".to_string(), "card".to_string(), "carrier".to_string()];
        let t = RouteTable::new(
            &[
                row(RouteMethod::Card, None, None, None, "van"),
                row(
                    RouteMethod::Card,
                    Some(510_000),
                    Some(559_999),
                    None,
                    "card",
                ),
                row(RouteMethod::Carrier, None, None, Some("SKT"), "carrier"),
            ],
            &hosts,
        )
        .unwrap();
        assert_eq!(t.route(RouteKey::Card { bin: 411_111 }), Some(0));
        assert_eq!(t.route(RouteKey::Card { bin: 540_000 }), Some(1));
        assert_eq!(t.route(RouteKey::Carrier { carrier: b"skt" }), Some(2));
        assert_eq!(t.route(RouteKey::Carrier { carrier: b"KT" }), None);
        assert_eq!(t.route(RouteKey::Bank { bank_code: b"004" }), None);
    }

    #[test]
    fn unknown_host_is_a_config_error() {
        let err = RouteTable::new(&[row(RouteMethod::Bank, None, None, None, "nope")], &[]);
        assert!(err.is_err());
        let hosts = vec!["van".to_string(), "backup".to_string()];
        for failover in [vec!["nope"], vec!["van"], vec!["backup", "backup"]] {
            let mut r = row(RouteMethod::Card, None, None, None, "van");
            r.failover = failover.iter().map(|s| s.to_string()).collect();
            assert!(RouteTable::new(&[r], &hosts).is_err(), "{failover:?}");
        }
    }

    #[test]
    fn failover_takes_the_first_available_host_and_falls_back_to_the_primary() {
        let hosts: Vec<String> = ["van", "backup", "last", "carrier"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut card = row(RouteMethod::Card, None, None, None, "van");
        card.failover = vec!["backup".into(), "last".into()];
        let carrier = row(RouteMethod::Carrier, None, None, None, "carrier");
        let t = RouteTable::new(&[card, carrier], &hosts).unwrap();
        let key = RouteKey::Card { bin: 411_111 };
        assert_eq!(t.route(key), Some(0));
        let a = t.availability().clone();
        a.set(0, false);
        assert_eq!(t.route(key), Some(1));
        a.set(1, false);
        assert_eq!(t.route(key), Some(2));
        a.set(2, false);
        assert_eq!(t.route(key), Some(0), "none available: the primary");
        a.set(1, true);
        assert_eq!(t.route(key), Some(1));
        a.set(0, true);
        assert_eq!(t.route(key), Some(0), "back to the primary");
        // A route without failover hosts always names its one host.
        a.set(3, false);
        assert_eq!(t.route(RouteKey::Carrier { carrier: b"x" }), Some(3));
    }
}
