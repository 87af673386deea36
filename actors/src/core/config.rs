//! Configuration of the transaction core: merchants, routes and upstream hosts as the router's TOML
//! file describes them. Plain data, deserialized by serde; validated once into [`CoreSettings`].

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::access::{AccessTable, FollowUps};
use super::device::DeviceRegistry;
use super::ids::CoreSecrets;
use super::route::{HostId, RouteTable};
pub use super::shard::stans::HostStanPlan;
use crate::error::MeshError;

/// One merchant as configured (and as settings versions journal it: fields added later need a
/// default, so that older records still read).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
    /// Which networks may follow up this merchant's orders: `creator` (default) or
    /// `any_granted_network`.
    #[serde(default)]
    pub follow_ups: FollowUps,
    /// The devices whose signatures this merchant's requests may carry
    /// (`[[merchants.devices]]`; docs/PROTOCOL.md, "Device signatures").
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// Whether this merchant's requests must be signed by one of its devices. Wallet-token
    /// payments must be signed whatever this says.
    #[serde(default)]
    pub device_signature: DeviceSignaturePolicy,
}

/// One device registered to a merchant: its id and its Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device id as requests carry it (field `device_id`, 1..64 printable ASCII), unique within
    /// its merchant.
    pub id: String,
    /// The device's Ed25519 public key (RFC 8032, 32 bytes) as 64 hex digits.
    pub public_key: String,
}

/// Which of a merchant's requests must carry a device signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceSignaturePolicy {
    /// A signature is checked when a request carries one; wallet-token payments must.
    #[default]
    Optional,
    /// Every request but INQUIRY must carry one.
    Required,
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
    /// Secondary hosts for the same route, in order of preference: a transaction goes to the first
    /// of `host`, then these, that is available (a link signed on and its circuit breaker closed),
    /// and to `host` when none is. Reversals and refunds always go to the original's host.
    #[serde(default)]
    pub failover: Vec<String>,
}

/// Everything the shards need, validated and shared read-only between them.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// Merchants by id.
    pub merchants: HashMap<Bytes, MerchantConfig>,
    /// Which network may act for which merchant (empty: none may).
    pub access: AccessTable,
    /// Keys of unguessable transaction ids and wallet tokens (from the journal key material; random
    /// without a journal).
    pub secrets: CoreSecrets,
    /// The merchants' devices and signature policies, keys parsed.
    pub devices: DeviceRegistry,
    /// The route table.
    pub routes: RouteTable,
    /// Offset of the business day from UTC, in minutes (Korea: 540). Daily limits reset at its midnight.
    pub day_offset_minutes: i32,
    /// Orders (and their idempotency records) a shard keeps before evicting the oldest finished ones.
    pub orders_per_shard_max: usize,
    /// Orders a shard keeps hot (ready to change); older ones are kept frozen (encoded, about half
    /// the size) and thawed when a request touches them.
    pub orders_hot_per_shard_max: usize,
    /// Keys of evicted orders a shard remembers (8 bytes of hash each), so that a request reusing
    /// one is refused DUPLICATE_ORDER rather than authorized a second time.
    pub evicted_keys_per_shard_max: usize,
    /// Orders one network may hold in a shard's window that cannot leave it (open
    /// authorizations, orders in doubt or in progress); beyond it the network's new orders are
    /// refused BUSY, so one tenant cannot fill the window and lock the others out.
    pub open_orders_per_network_max: usize,
    /// Retransmissions that may wait on one in-progress operation; more get IN_PROGRESS.
    pub waiters_per_operation_max: usize,
    /// Tokens a shard's wallet vault holds.
    pub vault_tokens_per_shard_max: usize,
    /// Hosts (by id) that take captures online; the others settle captures by file.
    pub capture_online: Vec<bool>,
    /// Store-and-forward messages (reversals, capture advices) a shard holds unacknowledged;
    /// beyond it new authorizations and sales are refused BUSY until hosts catch up (a queued
    /// reversal is never dropped).
    pub forwards_pending_per_shard_max: usize,
    /// How each host's terminal ids and STANs are divided between the shards (by host id; a
    /// host without an entry gets [`CoreSettings::stan_fallback`]).
    pub host_stans: Vec<HostStanPlan>,
    /// The plan of a host nobody configured (tests).
    pub stan_fallback: HostStanPlan,
    /// Store-and-forward: delay before the second attempt of a reversal or capture advice,
    /// milliseconds; it doubles with each attempt.
    pub forward_retry_ms: u64,
    /// Store-and-forward: longest delay between two attempts, milliseconds.
    pub forward_retry_max_ms: u64,
    /// The business settings' version these are (0: the configuration file's, before any
    /// version was journaled; see [`crate::core::versions`]).
    pub version: u64,
    /// The hash of the whole data the version was made from (zeros for version 0).
    pub version_hash: [u8; 32],
    /// The shard's settings record of the version (empty for version 0), kept for checkpoints.
    pub version_record: Bytes,
}

/// Default of [`CoreSettings::forward_retry_ms`].
pub const FORWARD_RETRY_MS: u64 = 1_000;
/// Default of [`CoreSettings::forward_retry_max_ms`].
pub const FORWARD_RETRY_MAX_MS: u64 = 60_000;

/// Default of [`CoreSettings::forwards_pending_per_shard_max`].
pub const FORWARDS_PENDING_PER_SHARD_MAX: usize = 100_000;

/// Default of [`CoreSettings::orders_per_shard_max`]: about 500 MiB of a shard's memory once
/// full (`benches/benches/order_memory.rs`: ~500 bytes per frozen order, ~1 KiB per hot one).
pub const ORDERS_PER_SHARD_MAX: usize = 1_000_000;
/// Default of [`CoreSettings::orders_hot_per_shard_max`].
pub const ORDERS_HOT_PER_SHARD_MAX: usize = 32 * 1024;
/// Default of [`CoreSettings::evicted_keys_per_shard_max`].
/// About 19 MiB a shard.
pub const EVICTED_KEYS_PER_SHARD_MAX: usize = 1_000_000;
/// Default of [`CoreSettings::waiters_per_operation_max`].
pub const WAITERS_PER_OPERATION_MAX: usize = 4;
/// Default of [`CoreSettings::vault_tokens_per_shard_max`].
pub const VAULT_TOKENS_PER_SHARD_MAX: usize = 1_000_000;

/// Merchants by id, validated: ids 1..15 printable ASCII, none configured twice.
pub(crate) fn merchants_by_id(
    merchants: &[MerchantConfig],
) -> Result<HashMap<Bytes, MerchantConfig>, MeshError> {
    let mut by_id = HashMap::with_capacity(merchants.len());
    for m in merchants {
        if m.id.is_empty() || m.id.len() > 15 || !m.id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
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
    Ok(by_id)
}

impl CoreSettings {
    /// Validates merchants and routes against the named hosts.
    pub fn new(
        merchants: &[MerchantConfig],
        routes: &[RouteConfig],
        host_names: &[String],
        day_offset_minutes: i32,
    ) -> Result<Arc<Self>, MeshError> {
        let by_id = merchants_by_id(merchants)?;
        Ok(Arc::new(Self {
            devices: DeviceRegistry::new(merchants)?,
            merchants: by_id,
            access: AccessTable::default(),
            secrets: CoreSecrets::default(),
            routes: RouteTable::new(routes, host_names)?,
            day_offset_minutes,
            orders_per_shard_max: ORDERS_PER_SHARD_MAX,
            orders_hot_per_shard_max: ORDERS_HOT_PER_SHARD_MAX,
            evicted_keys_per_shard_max: EVICTED_KEYS_PER_SHARD_MAX,
            open_orders_per_network_max: ORDERS_PER_SHARD_MAX / 2,
            waiters_per_operation_max: WAITERS_PER_OPERATION_MAX,
            vault_tokens_per_shard_max: VAULT_TOKENS_PER_SHARD_MAX,
            capture_online: Vec::new(),
            forwards_pending_per_shard_max: FORWARDS_PENDING_PER_SHARD_MAX,
            host_stans: Vec::new(),
            stan_fallback: HostStanPlan::fallback(day_offset_minutes),
            forward_retry_ms: FORWARD_RETRY_MS,
            forward_retry_max_ms: FORWARD_RETRY_MAX_MS,
            version: 0,
            version_hash: [0; 32],
            version_record: Bytes::new(),
        }))
    }

    /// Whether `network` may act for `merchant`: granted it, and the merchant is configured.
    pub fn may_act(&self, network: &[u8], merchant: &[u8]) -> bool {
        self.access.grants(network, merchant) && self.merchants.contains_key(merchant)
    }

    /// Whether an INQUIRY from `network` naming `merchant` (empty: by transaction id alone) may
    /// be looked for at all; whether the order found is one the network may see is decided on
    /// the order ([`CoreSettings::may_see`]).
    pub fn may_inquire(&self, network: &[u8], merchant: &[u8]) -> bool {
        if merchant.is_empty() {
            self.access.knows(network)
        } else {
            self.may_act(network, merchant)
        }
    }

    /// Whether `network` may see (and follow up) an order of `merchant` created by `creator`
    /// (`None`: not recorded): it must act for the merchant, and be the creator unless the
    /// merchant shares its orders among its networks or the creator is unknown.
    pub fn may_see(&self, network: &[u8], merchant: &[u8], creator: Option<&[u8]>) -> bool {
        if !self.may_act(network, merchant) {
            return false;
        }
        match creator {
            None => true,
            Some(c) if c == network => true,
            Some(_) => self
                .merchants
                .get(merchant)
                .is_some_and(|m| m.follow_ups == FollowUps::AnyGrantedNetwork),
        }
    }

    /// Whether `host` takes captures online.
    pub fn captures_online(&self, host: HostId) -> bool {
        self.capture_online
            .get(usize::from(host))
            .copied()
            .unwrap_or(false)
    }

    /// How `host`'s terminal ids and STANs are divided between the shards.
    pub fn stan_plan(&self, host: HostId) -> &HostStanPlan {
        self.host_stans
            .get(usize::from(host))
            .unwrap_or(&self.stan_fallback)
    }

    /// Business day number of a unix time in milliseconds.
    pub fn business_day(&self, now_ms: u64) -> u64 {
        let offset_ms = i64::from(self.day_offset_minutes) * 60_000;
        let local = (now_ms as i64).saturating_add(offset_ms).max(0) as u64;
        local / 86_400_000
    }
}

/// One upstream host (VAN, bank, card company, carrier) as configured. Every setting is described
/// with an example in docs/HOSTS.md; [`crate::core::pool::HostSpec::from_config`] validates them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Name routes refer to.
    pub name: String,
    /// `host:port` to connect to.
    pub address: String,
    /// ISO 8583 profile: `ascii_1987`, `binary_bcd` or `pyiso_default`.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Length header: `binary2`, `ascii4` or `bcd2`.
    #[serde(default = "default_length_header")]
    pub length_header: String,
    /// Persistent connections kept to the host.
    #[serde(default = "default_links")]
    pub links: usize,
    /// How long an answer may take before the request is reported timed out, in milliseconds.
    /// Also bounds the wait for sign-on and echo answers.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Requests in flight per link; beyond it requests are refused BUSY.
    #[serde(default = "default_inflight_per_link")]
    pub inflight_per_link_max: usize,
    /// Requests in flight on the whole host, as the VAN agreement sets it; beyond it requests are
    /// refused BUSY. 0 = `links` × `inflight_per_link_max`.
    #[serde(default)]
    pub inflight_max: usize,
    /// Transactions per second sent to the host (a token bucket holding one second's worth);
    /// beyond it requests are refused BUSY. 0 = unlimited.
    #[serde(default)]
    pub rate_per_sec: u32,
    /// Card acceptor terminal id, 8 characters: sent in `terminal_id_field` when
    /// `terminal_id_source` is `fixed`, and in network management messages.
    #[serde(default = "default_terminal_id")]
    pub terminal_id: String,
    /// The terminal ids transactions are sent from (8 characters each, none twice), with
    /// `terminal_id_source = "fixed"`. Every terminal has its own STAN space per business day
    /// (999,999 STANs); the shards divide the terminals among themselves (docs/HOSTS.md, "STANs
    /// and terminals"). Empty: `[terminal_id]`.
    #[serde(default)]
    pub terminal_ids: Vec<String>,
    /// STANs of `terminal_id` reserved each day for network management (sign-on, echo,
    /// sign-off): the top of its range, so that they never collide with a transaction's.
    #[serde(default = "default_network_stans")]
    pub network_stans: u32,
    /// Offset of the acceptor's local time from UTC in minutes, for fields 12 and 13 (local
    /// time and date of the transaction) and the host's business day of STANs. `None`: the
    /// router's `day_offset_minutes` (UTC when the pool is used alone).
    #[serde(default)]
    pub local_time_offset_minutes: Option<i32>,
    /// Which original-data elements (37 original RRN, 38 original approval code, 90 original
    /// data elements) each follow-up carries (`[hosts.original_data]`).
    #[serde(default)]
    pub original_data: OriginalData,
    /// Acquiring institution id, up to 11 digits, sent in `acquirer_id_field`.
    #[serde(default = "default_acquirer_id")]
    pub acquirer_id: String,
    /// Delay before reconnecting a dropped link, in milliseconds: the base of the exponential
    /// backoff.
    #[serde(default = "default_reconnect_ms")]
    pub reconnect_ms: u64,
    /// Longest reconnect delay, in milliseconds: the delay doubles per failed attempt up to it.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Randomisation of each reconnect delay, so that links do not reconnect in step.
    #[serde(default)]
    pub reconnect_jitter: Jitter,
    /// Sign on (0800, field 70 = 001) when a link connects; the link carries transactions only once
    /// the host answered 00. `false` for hosts without network management.
    #[serde(default = "default_true")]
    pub sign_on: bool,
    /// Echo test (0800, field 70 = 301) on a link that has sent nothing for this long, in
    /// milliseconds; 0 = never.
    #[serde(default = "default_echo_idle_ms")]
    pub echo_idle_ms: u64,
    /// Consecutive unanswered echo tests after which a link is closed and reopened.
    #[serde(default = "default_echo_misses_max")]
    pub echo_misses_max: u32,
    /// Consecutive failures (timeouts, links lost with requests in flight, failed connects and
    /// sign-ons, answers 91/92/96) that open the host's circuit breaker; 0 = no breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker refuses transactions (UPSTREAM_UNAVAILABLE) before it lets one
    /// probe through, in milliseconds.
    #[serde(default = "default_breaker_open_ms")]
    pub breaker_open_ms: u64,
    /// Field carrying the merchant id (default 42, card acceptor id); 0 = not sent.
    #[serde(default = "default_merchant_id_field")]
    pub merchant_id_field: u8,
    /// Field carrying the terminal id (default 41, card acceptor terminal id); 0 = not sent.
    #[serde(default = "default_terminal_id_field")]
    pub terminal_id_field: u8,
    /// Field carrying the acquirer id (default 32, acquiring institution id); 0 = not sent.
    #[serde(default = "default_acquirer_id_field")]
    pub acquirer_id_field: u8,
    /// Private field carrying installment months (default 63: `IM` and two digits); 0 = the
    /// host takes no installments (installment payments routed to it are refused).
    #[serde(default = "default_installment_field")]
    pub installment_field: u8,
    /// Where a transaction's terminal id comes from.
    #[serde(default)]
    pub terminal_id_source: TerminalIdSource,
    /// Message type per operation.
    #[serde(default)]
    pub mti: OperationMtis,
    /// Processing code (field 3) per operation.
    #[serde(default)]
    pub processing_code: ProcessingCodes,
    /// Whether the currency travels in field 49.
    #[serde(default)]
    pub currency: CurrencyMode,
    /// The host's one currency (ISO 4217 numeric): requests in another are refused
    /// UNSUPPORTED_CURRENCY. Required when `currency` is `omit`.
    #[serde(default)]
    pub host_currency: Option<u16>,
    /// How captures reach the host: `local` (default: kept for the settlement file) or `online`
    /// (a message per capture, `[hosts.mti] capture`; one without an answer is repeated until the
    /// host acknowledges it, and the capture stands).
    #[serde(default)]
    pub capture: CaptureMode,
    /// Fields every payment request (authorization, sale, refund, balance inquiry) must carry before
    /// it is sent (e.g. `[14, 22]`); one without is refused INVALID_REQUEST. Reversals and network
    /// management messages are not checked.
    #[serde(default)]
    pub required_fields: Vec<u8>,
}

/// How a reconnect delay is randomised (AWS architecture blog, "Exponential Backoff And Jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Uniform between 0 and the delay.
    Full,
    /// Half the delay plus uniform between 0 and the other half.
    #[default]
    Equal,
}

/// Where the terminal id of a transaction comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminalIdSource {
    /// The host's `terminal_id`, the same on every request.
    #[default]
    Fixed,
    /// The merchant id's last 8 characters, right-padded with spaces: one terminal per merchant.
    Merchant,
}

/// How captures reach a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    /// Not sent online: the captured amount goes to the host in the settlement file.
    #[default]
    Local,
    /// A message per capture (completion advice 0220 by default), store-and-forward.
    Online,
}

/// Whether a host gets the currency in field 49.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurrencyMode {
    /// Field 49, three digits.
    #[default]
    Send,
    /// No field 49: the host has one currency (`host_currency`), implied.
    Omit,
}

/// MTIs per operation (`[hosts.mti]`), four digits each; answers are the MTI + 10.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperationMtis {
    /// Authorization (default `0100`).
    pub authorize: String,
    /// Sale, authorization and capture in one (default `0200`).
    pub sale: String,
    /// Refund (default `0200`; some hosts want `0220`).
    pub refund: String,
    /// Reversal (default `0400`); a repeat adds 1 (`0401`).
    pub reversal: String,
    /// Balance inquiry (default `0100`).
    pub balance: String,
    /// Capture, with `capture = "online"` (default `0220`, a completion advice; a repeat adds 1).
    pub capture: String,
}

impl Default for OperationMtis {
    fn default() -> Self {
        Self {
            authorize: "0100".into(),
            sale: "0200".into(),
            refund: "0200".into(),
            reversal: "0400".into(),
            balance: "0100".into(),
            capture: "0220".into(),
        }
    }
}

/// Original-data elements per follow-up (`[hosts.original_data]`): the fields among 37 (the
/// original's RRN; without it the follow-up gets an RRN of its own), 38 (the original's approval
/// code, when it had one) and 90 (original MTI, STAN, transmission time, acquirer) that each
/// follow-up carries. Defaults: all three on every follow-up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginalData {
    /// Refunds (`mti.refund`, processing code 20).
    pub refund: Vec<u8>,
    /// Online captures (completion advices, `mti.capture`).
    pub capture: Vec<u8>,
    /// Reversals (cancels, timed-out authorizations; `mti.reversal`).
    pub reversal: Vec<u8>,
}

/// Fields that may be listed in [`OriginalData`].
pub const ORIGINAL_DATA_FIELDS: [u8; 3] = [37, 38, 90];

impl Default for OriginalData {
    fn default() -> Self {
        Self {
            refund: ORIGINAL_DATA_FIELDS.to_vec(),
            capture: ORIGINAL_DATA_FIELDS.to_vec(),
            reversal: ORIGINAL_DATA_FIELDS.to_vec(),
        }
    }
}

/// Processing codes (field 3) per operation (`[hosts.processing_code]`), six digits each.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingCodes {
    /// Authorization (default `000000`).
    pub authorize: String,
    /// Sale (default `000000`).
    pub sale: String,
    /// Refund (default `200000`).
    pub refund: String,
    /// Reversal (default `000000`).
    pub reversal: String,
    /// Balance inquiry (default `310000`).
    pub balance: String,
    /// Capture, with `capture = "online"` (default `000000`).
    pub capture: String,
}

impl Default for ProcessingCodes {
    fn default() -> Self {
        Self {
            authorize: "000000".into(),
            sale: "000000".into(),
            refund: "200000".into(),
            reversal: "000000".into(),
            balance: "310000".into(),
            capture: "000000".into(),
        }
    }
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
fn default_network_stans() -> u32 {
    20_000
}
fn default_acquirer_id() -> String {
    "123456".into()
}
fn default_reconnect_ms() -> u64 {
    500
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}
fn default_echo_idle_ms() -> u64 {
    30_000
}
fn default_echo_misses_max() -> u32 {
    3
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open_ms() -> u64 {
    10_000
}
fn default_merchant_id_field() -> u8 {
    42
}
fn default_terminal_id_field() -> u8 {
    41
}
fn default_acquirer_id_field() -> u8 {
    32
}
fn default_installment_field() -> u8 {
    63
}
