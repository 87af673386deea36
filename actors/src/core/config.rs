//! Configuration of the transaction core: merchants, routes and upstream hosts as the router's TOML
//! file describes them. Plain data, deserialized by serde; validated once into [`CoreSettings`].

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use super::route::RouteTable;
use crate::error::MeshError;

/// One merchant as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantConfig {
    /// Merchant id as clients send it (field `merchant_id`, 1..15 printable ASCII).
    pub id: String,
    /// A disabled merchant's requests are refused with MERCHANT_DISABLED.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Largest single authorization, in minor units; none = unlimited.
    #[serde(default)]
    pub single_limit_minor: Option<u64>,
    /// Largest total of authorizations per day, in minor units; none = unlimited.
    #[serde(default)]
    pub daily_limit_minor: Option<u64>,
    /// ISO 4217 numeric codes accepted; empty = any.
    #[serde(default)]
    pub currencies: Vec<u16>,
}

fn default_true() -> bool {
    true
}

/// Which payment method a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteMethod {
    /// Card numbers (and wallet tokens, which resolve to cards) by BIN range.
    Card,
    /// Carrier (mobile phone) billing, optionally by carrier name.
    Carrier,
    /// Bank transfer, optionally by bank code.
    Bank,
}

/// One row of the route table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Payment method this row routes.
    pub method: RouteMethod,
    /// First BIN (6 digits) of the range, inclusive; cards only. Absent = every BIN.
    #[serde(default)]
    pub bin_from: Option<u32>,
    /// Last BIN (6 digits) of the range, inclusive; cards only.
    #[serde(default)]
    pub bin_to: Option<u32>,
    /// Carrier name (carrier billing) or bank code (bank transfer); absent = any.
    #[serde(default)]
    pub key: Option<String>,
    /// Name of the upstream host (an entry of `[[hosts]]`).
    pub host: String,
}

/// Everything the shards need, validated and shared read-only between them.
#[derive(Debug)]
pub struct CoreSettings {
    /// Merchants by id.
    pub merchants: HashMap<Bytes, MerchantConfig>,
    /// The route table.
    pub routes: RouteTable,
    /// Offset of the business day from UTC, in minutes (Korea: 540). Daily limits reset at its midnight.
    pub day_offset_minutes: i32,
    /// Orders (and their idempotency records) a shard keeps before evicting the oldest finished ones.
    pub orders_per_shard_max: usize,
    /// Retransmissions that may wait on one in-progress operation; more get IN_PROGRESS.
    pub waiters_per_operation_max: usize,
    /// Tokens a shard's wallet vault holds.
    pub vault_tokens_per_shard_max: usize,
}

/// Default of [`CoreSettings::orders_per_shard_max`].
pub const ORDERS_PER_SHARD_MAX: usize = 1_000_000;
/// Default of [`CoreSettings::waiters_per_operation_max`].
pub const WAITERS_PER_OPERATION_MAX: usize = 4;
/// Default of [`CoreSettings::vault_tokens_per_shard_max`].
pub const VAULT_TOKENS_PER_SHARD_MAX: usize = 1_000_000;

impl CoreSettings {
    /// Validates merchants and routes against the named hosts.
    pub fn new(
        merchants: &[MerchantConfig],
        routes: &[RouteConfig],
        host_names: &[String],
        day_offset_minutes: i32,
    ) -> Result<Arc<Self>, MeshError> {
        let mut by_id = HashMap::with_capacity(merchants.len());
        for m in merchants {
            if m.id.is_empty()
                || m.id.len() > 15
                || !m.id.bytes().all(|b| (0x20..0x7f).contains(&b))
            {
                return Err(MeshError::Config(format!(
                    "merchant id {:?} is not 1..15 printable ASCII",
                    m.id
                )));
            }
            if by_id
                .insert(Bytes::copy_from_slice(m.id.as_bytes()), m.clone())
                .is_some()
            {
                return Err(MeshError::Config(format!(
                    "merchant {:?} configured twice",
                    m.id
                )));
            }
        }
        Ok(Arc::new(Self {
            merchants: by_id,
            routes: RouteTable::new(routes, host_names)?,
            day_offset_minutes,
            orders_per_shard_max: ORDERS_PER_SHARD_MAX,
            waiters_per_operation_max: WAITERS_PER_OPERATION_MAX,
            vault_tokens_per_shard_max: VAULT_TOKENS_PER_SHARD_MAX,
        }))
    }

    /// Business day number of a unix time in milliseconds.
    pub fn business_day(&self, now_ms: u64) -> u64 {
        let offset_ms = i64::from(self.day_offset_minutes) * 60_000;
        let local = (now_ms as i64).saturating_add(offset_ms).max(0) as u64;
        local / 86_400_000
    }
}

/// One upstream host (VAN, bank, card company, carrier) as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Name routes refer to.
    pub name: String,
    /// `host:port` to connect to.
    pub address: String,
    /// ISO 8583 profile: `ascii_1987` or `binary_bcd`.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Length header: `binary2`, `ascii4`, `bcd2` or `none`.
    #[serde(default = "default_length_header")]
    pub length_header: String,
    /// Persistent connections kept to the host.
    #[serde(default = "default_links")]
    pub links: usize,
    /// How long an answer may take before the request is reported timed out, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Requests in flight per link; beyond it requests are refused BUSY.
    #[serde(default = "default_inflight_per_link")]
    pub inflight_per_link_max: usize,
    /// Card acceptor terminal id (field 41), 8 characters.
    #[serde(default = "default_terminal_id")]
    pub terminal_id: String,
    /// Acquiring institution id (field 32), up to 11 digits.
    #[serde(default = "default_acquirer_id")]
    pub acquirer_id: String,
    /// Delay before reconnecting a dropped link, in milliseconds.
    #[serde(default = "default_reconnect_ms")]
    pub reconnect_ms: u64,
}

fn default_profile() -> String {
    "ascii_1987".into()
}
fn default_length_header() -> String {
    "binary2".into()
}
fn default_links() -> usize {
    2
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_inflight_per_link() -> usize {
    1_024
}
fn default_terminal_id() -> String {
    "PAYMESH1".into()
}
fn default_acquirer_id() -> String {
    "123456".into()
}
fn default_reconnect_ms() -> u64 {
    500
}
