//! The route table: payment method and card BIN range → upstream host.

use crate::core::config::{RouteConfig, RouteMethod};
use crate::error::MeshError;

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

#[derive(Debug, Clone)]
struct CardRange {
    from: u32,
    to: u32,
    host: HostId,
}

#[derive(Debug, Clone)]
struct KeyedRoute {
    key: Option<Vec<u8>>,
    host: HostId,
}

/// Compiled route table. Card ranges are checked most specific (narrowest) first.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    cards: Vec<CardRange>,
    carriers: Vec<KeyedRoute>,
    banks: Vec<KeyedRoute>,
}

impl RouteTable {
    /// Compiles route rows, resolving host names to ids.
    pub fn new(rows: &[RouteConfig], host_names: &[String]) -> Result<Self, MeshError> {
        let mut table = Self::default();
        for row in rows {
            let host = host_names
                .iter()
                .position(|h| *h == row.host)
                .and_then(|i| HostId::try_from(i).ok())
                .ok_or_else(|| {
                    MeshError::Config(format!("route names unknown host {:?}", row.host))
                })?;
            match row.method {
                RouteMethod::Card => {
                    let from = row.bin_from.unwrap_or(0);
                    let to = row.bin_to.unwrap_or(999_999);
                    if from > to || to > 999_999 {
                        return Err(MeshError::Config(format!("bad BIN range {from}..={to}")));
                    }
                    table.cards.push(CardRange { from, to, host });
                }
                RouteMethod::Carrier => table.carriers.push(KeyedRoute {
                    key: row.key.as_ref().map(|k| k.as_bytes().to_vec()),
                    host,
                }),
                RouteMethod::Bank => table.banks.push(KeyedRoute {
                    key: row.key.as_ref().map(|k| k.as_bytes().to_vec()),
                    host,
                }),
            }
        }
        table.cards.sort_by_key(|r| r.to - r.from);
        // Keyed rows before catch-all rows.
        table.carriers.sort_by_key(|r| r.key.is_none());
        table.banks.sort_by_key(|r| r.key.is_none());
        Ok(table)
    }

    /// The host for a transaction, or `None` when no row matches (UNROUTABLE).
    pub fn route(&self, key: RouteKey<'_>) -> Option<HostId> {
        match key {
            RouteKey::Card { bin } => self
                .cards
                .iter()
                .find(|r| (r.from..=r.to).contains(&bin))
                .map(|r| r.host),
            RouteKey::Carrier { carrier } => keyed(&self.carriers, carrier),
            RouteKey::Bank { bank_code } => keyed(&self.banks, bank_code),
        }
    }
}

fn keyed(rows: &[KeyedRoute], key: &[u8]) -> Option<HostId> {
    rows.iter()
        .find(|r| r.key.as_deref().is_none_or(|k| k.eq_ignore_ascii_case(key)))
        .map(|r| r.host)
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
    }
}
