//! [`HostSpec`]: a host's configuration validated once at start-up into what the pool core uses,
//! including its [`Dialect`]: which fields carry the merchant, terminal and acquirer ids, the MTI
//! and processing code of each operation, currency handling and the fields a request must carry.

use bytes::Bytes;
use paymesh_codecs::iso8583::{ContentClass, IsoMessage, LengthHeader, LengthKind, Mti, Profile};

use crate::core::config::{
    CurrencyMode, HostConfig, Jitter, ORIGINAL_DATA_FIELDS, TerminalIdSource,
};
use crate::core::upstream::{STAN_MAX, UpstreamKind};
use crate::error::MeshError;

/// Links one host may have.
pub const LINKS_MAX: usize = 64;
/// Longest answer timeout, milliseconds (one hour: anything longer is a configuration mistake).
pub const TIMEOUT_MS_MAX: u64 = 3_600_000;
/// Longest reconnect delay, milliseconds.
pub const RECONNECT_MS_MAX: u64 = 3_600_000;
/// Fields a host may require.
pub const REQUIRED_FIELDS_MAX: usize = 32;
/// Terminal ids one host's pool may have.
pub const TERMINAL_IDS_MAX: usize = 1_024;
/// Most STANs of a day `network_stans` may reserve for network management.
pub const NETWORK_STANS_MAX: u32 = 499_999;
/// Largest offset of local time from UTC, minutes (UTC+14 and UTC-14).
pub const LOCAL_OFFSET_MINUTES_MAX: i32 = 14 * 60;

/// Fields the pool itself fills in transaction requests (some only for some requests: 14 for
/// cards, 48 with an order id, 90 for reversals, 100/102 for bank accounts). The id fields of a
/// dialect may not reuse them.
const POOL_FIELDS: [u8; 16] = [2, 3, 4, 7, 11, 12, 13, 14, 22, 37, 38, 48, 49, 90, 100, 102];
/// Field 70, network management information code: only in 0800s.
const NETWORK_CODE_FIELD: u8 = 70;

/// One value per upstream operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerOperation<T> {
    /// Authorization.
    pub authorize: T,
    /// Sale (authorization and capture).
    pub sale: T,
    /// Refund.
    pub refund: T,
    /// Reversal.
    pub reversal: T,
    /// Balance inquiry.
    pub balance: T,
    /// Capture (hosts that take captures online).
    pub capture: T,
}

impl<T> PerOperation<T> {
    /// The value for `kind`.
    pub fn get(&self, kind: UpstreamKind) -> &T {
        match kind {
            UpstreamKind::Authorize => &self.authorize,
            UpstreamKind::Sale => &self.sale,
            UpstreamKind::Refund => &self.refund,
            UpstreamKind::Reversal => &self.reversal,
            UpstreamKind::BalanceInquiry => &self.balance,
            UpstreamKind::Capture => &self.capture,
        }
    }

    fn try_map<U>(
        &self,
        mut f: impl FnMut(&'static str, &T) -> Result<U, MeshError>,
    ) -> Result<PerOperation<U>, MeshError> {
        Ok(PerOperation {
            authorize: f("authorize", &self.authorize)?,
            sale: f("sale", &self.sale)?,
            refund: f("refund", &self.refund)?,
            reversal: f("reversal", &self.reversal)?,
            balance: f("balance", &self.balance)?,
            capture: f("capture", &self.capture)?,
        })
    }
}

/// How a host wants its messages filled (issue 5 §4).
#[derive(Debug, Clone)]
pub struct Dialect {
    /// Field carrying the merchant id, if sent.
    pub merchant_id_field: Option<u8>,
    /// Spaces pad the merchant id to this length (a fixed-length text field).
    pub merchant_id_width: Option<usize>,
    /// Field carrying the terminal id, if sent (also how answers are matched).
    pub terminal_id_field: Option<u8>,
    /// Spaces pad a terminal id derived from the merchant id to this length.
    pub terminal_id_width: Option<usize>,
    /// Field carrying the acquirer id, if sent.
    pub acquirer_id_field: Option<u8>,
    /// Where a transaction's terminal id comes from.
    pub terminal_id_source: TerminalIdSource,
    /// Request MTI per operation (answers are + 10; a repeated reversal is + 1).
    pub mti: PerOperation<u16>,
    /// Processing code (field 3) per operation, six digits.
    pub processing_code: PerOperation<Bytes>,
    /// Whether field 49 is sent.
    pub currency: CurrencyMode,
    /// The host's one currency, if it has one.
    pub host_currency: Option<u16>,
    /// Fields a payment request must carry (reversals are exempt), ascending.
    pub required_fields: Vec<u8>,
    /// Original-data elements of refunds, capture advices and reversals.
    pub original_data: PerOperation<OriginalFields>,
    /// Private field carrying installment months (`IM` and two digits), if the host takes
    /// installments.
    pub installment_field: Option<u8>,
}

/// Which original-data elements a follow-up carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OriginalFields {
    /// Field 37 is the original's RRN (else the follow-up's own).
    pub rrn: bool,
    /// Field 38 is the original's approval code, when it had one.
    pub approval: bool,
    /// Field 90, original data elements.
    pub data: bool,
}

impl Dialect {
    /// The MTI of a request: the operation's, + 1 for a repeated reversal or capture advice
    /// (0400 → 0401, 0220 → 0221).
    pub fn request_mti(&self, kind: UpstreamKind, repeat: bool) -> u16 {
        let base = *self.mti.get(kind);
        match (kind, repeat) {
            (UpstreamKind::Reversal | UpstreamKind::Capture, true) => base + 1,
            _ => base,
        }
    }

    /// The MTI the host answers a request of `kind` with (0410 for 0400 and 0401 alike).
    pub fn answer_mti(&self, kind: UpstreamKind) -> u16 {
        *self.mti.get(kind) + 10
    }
}

/// Reconnect timing: exponential backoff with jitter.
#[derive(Debug, Clone, Copy)]
pub struct BackoffSpec {
    /// First delay, milliseconds.
    pub base_ms: u64,
    /// Longest delay, milliseconds.
    pub max_ms: u64,
    /// How each delay is randomised.
    pub jitter: Jitter,
}

/// A host's settings as the pool core uses them.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// Host name (for logs).
    pub name: String,
    /// ISO 8583 profile.
    pub profile: &'static Profile,
    /// Length header on the links.
    pub header: LengthHeader,
    /// Response timeout (transactions, sign-on, echo, sign-off), milliseconds.
    pub timeout_ms: u64,
    /// In-flight bound per link.
    pub inflight_per_link_max: usize,
    /// In-flight bound for the whole host.
    pub inflight_max: usize,
    /// Transactions per second; 0 = unlimited.
    pub rate_per_sec: u32,
    /// The host's terminal id, 8 characters.
    pub terminal_id: Bytes,
    /// Acquirer id, digits.
    pub acquirer_id: Bytes,
    /// Number of links.
    pub links: usize,
    /// Reconnect timing.
    pub reconnect: BackoffSpec,
    /// Whether links sign on (and off) with 0800s.
    pub sign_on: bool,
    /// Idle time before an echo test, milliseconds; 0 = never.
    pub echo_idle_ms: u64,
    /// Unanswered echoes in a row that close a link.
    pub echo_misses_max: u32,
    /// The terminal ids transactions are sent from (`terminal_ids`, or `[terminal_id]`).
    pub terminal_ids: Vec<Bytes>,
    /// The first STAN of `terminal_id` reserved for network management: transactions on it use
    /// 1 up to just below it, network management it up to 999,999.
    pub network_stan_first: u32,
    /// Offset of the acceptor's local time from UTC, minutes (fields 12 and 13, the STANs' day).
    pub local_offset_minutes: i32,
    /// Consecutive failures that open the breaker; 0 = no breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open, milliseconds.
    pub breaker_open_ms: u64,
    /// Message layout choices.
    pub dialect: Dialect,
}

impl HostSpec {
    /// How the shards assign this host's terminal ids and STANs.
    pub fn stan_plan(&self) -> crate::core::config::HostStanPlan {
        let pool_fills = self.dialect.terminal_id_field.is_none()
            || self.dialect.terminal_id_source == TerminalIdSource::Merchant;
        crate::core::config::HostStanPlan {
            terminals: match pool_fills {
                true => vec![Bytes::new()],
                false => self.terminal_ids.clone(),
            },
            network_terminal: self.terminal_id.clone(),
            network_stan_first: self.network_stan_first,
            local_offset_minutes: self.local_offset_minutes,
        }
    }
}

fn config_error(host: &str, what: impl std::fmt::Display) -> MeshError {
    MeshError::Config(format!("host {host}: {what}"))
}

impl HostSpec {
    /// Validates a host's configuration; the error names the host and the setting.
    pub fn from_config(c: &HostConfig) -> Result<Self, MeshError> {
        let fail = |what: String| config_error(&c.name, what);
        let profile = match c.profile.as_str() {
            "ascii_1987" => Profile::ascii_1987(),
            "binary_bcd" => Profile::binary_bcd(),
            "pyiso_default" => Profile::pyiso_default(),
            other => return Err(fail(format!("unknown profile {other:?}"))),
        };
        let header = match c.length_header.as_str() {
            "binary2" => LengthHeader::Binary2,
            "ascii4" => LengthHeader::Ascii4,
            "bcd2" => LengthHeader::Bcd2,
            other => {
                return Err(fail(format!(
                    "unknown length header {other:?} (a stream needs one: binary2, ascii4 or bcd2)"
                )));
            }
        };
        check_numbers(c)?;
        if c.terminal_id.len() != 8 || !c.terminal_id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(fail("terminal_id must be 8 printable characters".into()));
        }
        if c.acquirer_id.is_empty()
            || c.acquirer_id.len() > 11
            || !c.acquirer_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(fail("acquirer_id must be 1..11 digits".into()));
        }
        let dialect = dialect(c, profile)?;
        let terminal_ids = terminal_ids(c, profile, &dialect)?;
        let links = c.links;
        let inflight_per_link_max = c.inflight_per_link_max;
        let inflight_max = match c.inflight_max {
            0 => links.saturating_mul(inflight_per_link_max),
            n => n,
        };
        Ok(Self {
            name: c.name.clone(),
            profile,
            header,
            timeout_ms: c.timeout_ms,
            inflight_per_link_max,
            inflight_max,
            rate_per_sec: c.rate_per_sec,
            terminal_id: Bytes::copy_from_slice(c.terminal_id.as_bytes()),
            acquirer_id: Bytes::copy_from_slice(c.acquirer_id.as_bytes()),
            links,
            reconnect: BackoffSpec {
                base_ms: c.reconnect_ms,
                max_ms: c.reconnect_max_ms,
                jitter: c.reconnect_jitter,
            },
            sign_on: c.sign_on,
            echo_idle_ms: c.echo_idle_ms,
            echo_misses_max: c.echo_misses_max,
            terminal_ids,
            network_stan_first: STAN_MAX - c.network_stans + 1,
            local_offset_minutes: c.local_time_offset_minutes.unwrap_or(0),
            breaker_failures: c.breaker_failures,
            breaker_open_ms: c.breaker_open_ms,
            dialect,
        })
    }
}

/// Counts, times and limits.
fn check_numbers(c: &HostConfig) -> Result<(), MeshError> {
    let fail = |what: &str| Err(config_error(&c.name, what));
    if !(1..=LINKS_MAX).contains(&c.links) {
        return fail(&format!("links must be 1..={LINKS_MAX}"));
    }
    if !(1..=TIMEOUT_MS_MAX).contains(&c.timeout_ms) {
        return fail(&format!("timeout_ms must be 1..={TIMEOUT_MS_MAX}"));
    }
    if c.inflight_per_link_max == 0 {
        return fail("inflight_per_link_max must be at least 1");
    }
    if !(1..=RECONNECT_MS_MAX).contains(&c.reconnect_ms)
        || !(c.reconnect_ms..=RECONNECT_MS_MAX).contains(&c.reconnect_max_ms)
    {
        return fail(&format!(
            "reconnect_ms must be 1..={RECONNECT_MS_MAX} and reconnect_max_ms reconnect_ms..={RECONNECT_MS_MAX}"
        ));
    }
    if c.echo_idle_ms > 0 && c.echo_misses_max == 0 {
        return fail("echo_misses_max must be at least 1 when echo_idle_ms is set");
    }
    if c.breaker_failures > 0 && c.breaker_open_ms == 0 {
        return fail("breaker_open_ms must be at least 1 when breaker_failures is set");
    }
    if c.host_currency.is_some_and(|h| h == 0 || h > 999) {
        return fail("host_currency must be an ISO 4217 numeric code, 1..=999");
    }
    if !(1..=NETWORK_STANS_MAX).contains(&c.network_stans) {
        return fail(&format!("network_stans must be 1..={NETWORK_STANS_MAX}"));
    }
    if c.local_time_offset_minutes
        .is_some_and(|m| m.abs() > LOCAL_OFFSET_MINUTES_MAX)
    {
        return fail(&format!(
            "local_time_offset_minutes must be -{LOCAL_OFFSET_MINUTES_MAX}..={LOCAL_OFFSET_MINUTES_MAX}"
        ));
    }
    if c.currency == CurrencyMode::Omit && c.host_currency.is_none() {
        return fail("currency = \"omit\" needs host_currency (the one currency the host implies)");
    }
    Ok(())
}

/// A dialect's field choices, MTIs, processing codes and required fields, checked against the
/// profile.
fn dialect(c: &HostConfig, profile: &'static Profile) -> Result<Dialect, MeshError> {
    let [merchant_id_field, terminal_id_field, acquirer_id_field] = id_fields(c, profile)?;
    let chosen: Vec<u8> = [merchant_id_field, terminal_id_field, acquirer_id_field]
        .into_iter()
        .flatten()
        .collect();
    let processing_code = c.processing_code_table().try_map(|op, text| {
        if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(config_error(
                &c.name,
                format!("processing_code.{op} {text:?} is not 6 digits"),
            ));
        }
        Ok(Bytes::copy_from_slice(text.as_bytes()))
    })?;
    Ok(Dialect {
        merchant_id_field,
        merchant_id_width: merchant_id_field.and_then(|f| text_width(profile, f)),
        terminal_id_field,
        terminal_id_width: terminal_id_field.and_then(|f| text_width(profile, f)),
        acquirer_id_field,
        terminal_id_source: c.terminal_id_source,
        mti: operation_mtis(c)?,
        processing_code,
        currency: c.currency,
        host_currency: c.host_currency,
        required_fields: required_fields(c, profile, &chosen)?,
        original_data: original_data(c)?,
        installment_field: installment_field(c, profile, &chosen)?,
    })
}

/// The terminal ids of transactions: 8 printable characters each, none twice, fitting the
/// terminal field.
fn terminal_ids(
    c: &HostConfig,
    profile: &'static Profile,
    d: &Dialect,
) -> Result<Vec<Bytes>, MeshError> {
    let fail = |what: String| config_error(&c.name, what);
    let ids: Vec<&String> = match c.terminal_ids.is_empty() {
        true => vec![&c.terminal_id],
        false => c.terminal_ids.iter().collect(),
    };
    if ids.len() > TERMINAL_IDS_MAX {
        return Err(fail(format!("terminal_ids: at most {TERMINAL_IDS_MAX}")));
    }
    let mut out: Vec<Bytes> = Vec::with_capacity(ids.len());
    for id in ids {
        if id.len() != 8 || !id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(fail(format!(
                "terminal id {id:?} must be 8 printable characters"
            )));
        }
        let id = Bytes::copy_from_slice(id.as_bytes());
        if out.contains(&id) {
            return Err(fail(format!(
                "terminal id {id:?} listed twice in terminal_ids"
            )));
        }
        if let Some(f) = d.terminal_id_field {
            let mut probe = IsoMessage::new(profile, Mti::NETWORK_REQUEST);
            probe
                .set(f, id.clone())
                .map_err(|e| fail(format!("terminal id does not fit field {f}: {e}")))?;
        }
        out.push(id);
    }
    Ok(out)
}

/// `[hosts.original_data]`: fields among 37, 38 and 90, per follow-up.
fn original_data(c: &HostConfig) -> Result<PerOperation<OriginalFields>, MeshError> {
    let parse = |op: &str, fields: &[u8]| -> Result<OriginalFields, MeshError> {
        if let Some(f) = fields.iter().find(|f| !ORIGINAL_DATA_FIELDS.contains(f)) {
            return Err(config_error(
                &c.name,
                format!("original_data.{op}: field {f} is not one of {ORIGINAL_DATA_FIELDS:?}"),
            ));
        }
        Ok(OriginalFields {
            rrn: fields.contains(&37),
            approval: fields.contains(&38),
            data: fields.contains(&90),
        })
    };
    let o = &c.original_data;
    Ok(PerOperation {
        authorize: OriginalFields::default(),
        sale: OriginalFields::default(),
        refund: parse("refund", &o.refund)?,
        reversal: parse("reversal", &o.reversal)?,
        balance: OriginalFields::default(),
        capture: parse("capture", &o.capture)?,
    })
}

/// The merchant, terminal and acquirer id fields: each absent (0) or a field of the profile that
/// the pool does not fill itself, all different, the fixed ids fitting theirs.
fn id_fields(c: &HostConfig, profile: &'static Profile) -> Result<[Option<u8>; 3], MeshError> {
    let fail = |what: String| config_error(&c.name, what);
    let field = |name: &str, number: u8| -> Result<Option<u8>, MeshError> {
        if number == 0 {
            return Ok(None);
        }
        if number == 1 || number > 128 || profile.field(number).is_none() {
            return Err(fail(format!(
                "{name} {number} is not a field of profile {}",
                profile.name
            )));
        }
        if POOL_FIELDS.contains(&number) || number == NETWORK_CODE_FIELD {
            return Err(fail(format!(
                "{name} {number} is a field the pool fills itself ({POOL_FIELDS:?} and 70)"
            )));
        }
        Ok(Some(number))
    };
    let merchant = field("merchant_id_field", c.merchant_id_field)?;
    let terminal = field("terminal_id_field", c.terminal_id_field)?;
    let acquirer = field("acquirer_id_field", c.acquirer_id_field)?;
    let chosen: Vec<u8> = [merchant, terminal, acquirer]
        .into_iter()
        .flatten()
        .collect();
    if chosen
        .iter()
        .enumerate()
        .any(|(i, f)| chosen.iter().skip(i + 1).any(|g| g == f))
    {
        return Err(fail(
            "merchant_id_field, terminal_id_field and acquirer_id_field must differ".into(),
        ));
    }
    // The fixed ids must fit their fields; a merchant id is checked per request.
    let fits = |number: Option<u8>, value: &str, name: &str| -> Result<(), MeshError> {
        let Some(number) = number else { return Ok(()) };
        let mut probe = IsoMessage::new(profile, Mti::NETWORK_REQUEST);
        probe
            .set(number, Bytes::copy_from_slice(value.as_bytes()))
            .map_err(|e| fail(format!("{name} does not fit field {number}: {e}")))
    };
    fits(terminal, &c.terminal_id, "terminal_id")?;
    fits(acquirer, &c.acquirer_id, "acquirer_id")?;
    Ok([merchant, terminal, acquirer])
}

/// The request MTI of each operation: four digits, a request or advice (function 0 or 2, origin
/// even: the pool marks repeats itself), of class 1 or 2 for payments and 4 for reversals.
fn operation_mtis(c: &HostConfig) -> Result<PerOperation<u16>, MeshError> {
    c.mti_table().try_map(|op, text| {
        let fail = |what: &str| config_error(&c.name, format!("mti.{op} {text:?} {what}"));
        let m = parse_mti(text).ok_or_else(|| fail("is not 4 digits"))?;
        let [class, function, origin] = [m / 100 % 10, m / 10 % 10, m % 10];
        let class_ok = match op {
            "reversal" => class == 4,
            _ => class == 1 || class == 2,
        };
        if !class_ok || function % 2 == 1 || origin % 2 == 1 || function > 2 {
            return Err(fail(match op {
                "reversal" => "is not a reversal request (x4x0 or x4x2)",
                _ => "is not a request of class 1 or 2 (x1x0, x1x2, x2x0, x2x2)",
            }));
        }
        Ok(m)
    })
}

/// The installment field: absent (0), or a text field of the profile that nothing else fills.
fn installment_field(
    c: &HostConfig,
    profile: &'static Profile,
    id_fields: &[u8],
) -> Result<Option<u8>, MeshError> {
    let f = c.installment_field;
    if f == 0 {
        return Ok(None);
    }
    // A variable-length text field, so that `IM` and two digits are its whole value.
    let text = profile.field(f).is_some_and(|spec| {
        matches!(spec.class, ContentClass::An | ContentClass::Ans)
            && !matches!(spec.length, LengthKind::Fixed(_))
            && spec.length.bounds().1 >= INSTALLMENT_VALUE_BYTES
    });
    if f == 1
        || !text
        || POOL_FIELDS.contains(&f)
        || f == NETWORK_CODE_FIELD
        || id_fields.contains(&f)
    {
        return Err(config_error(
            &c.name,
            format!(
                "installment_field {f} must be an ans field of profile {} that no other setting and not the pool fills",
                profile.name
            ),
        ));
    }
    Ok(Some(f))
}

/// Bytes of the installment subelement: `IM` and two digits of months.
pub const INSTALLMENT_VALUE_BYTES: usize = 4;

fn required_fields(
    c: &HostConfig,
    profile: &'static Profile,
    id_fields: &[u8],
) -> Result<Vec<u8>, MeshError> {
    if c.required_fields.len() > REQUIRED_FIELDS_MAX {
        return Err(config_error(
            &c.name,
            format!("required_fields: at most {REQUIRED_FIELDS_MAX}"),
        ));
    }
    let mut out = c.required_fields.clone();
    out.sort_unstable();
    out.dedup();
    for &f in &out {
        let known = (2..=128).contains(&f) && profile.field(f).is_some();
        let produced = POOL_FIELDS.contains(&f) || id_fields.contains(&f);
        if !known || !produced {
            return Err(config_error(
                &c.name,
                format!(
                    "required field {f} is never sent by the pool (it sends {POOL_FIELDS:?} and the configured id fields)"
                ),
            ));
        }
    }
    Ok(out)
}

/// The length a text value is padded to in `field`: its fixed length, for `an`/`ans` fields.
fn text_width(profile: &Profile, field: u8) -> Option<usize> {
    let spec = profile.field(field)?;
    match (spec.class, spec.length) {
        (ContentClass::An | ContentClass::Ans, LengthKind::Fixed(n)) => Some(usize::from(n)),
        _ => None,
    }
}

fn parse_mti(text: &str) -> Option<u16> {
    Mti::from_ascii(text.as_bytes()).ok().map(|m| m.number())
}

impl HostConfig {
    fn mti_table(&self) -> PerOperation<String> {
        let m = &self.mti;
        PerOperation {
            authorize: m.authorize.clone(),
            sale: m.sale.clone(),
            refund: m.refund.clone(),
            reversal: m.reversal.clone(),
            balance: m.balance.clone(),
            capture: m.capture.clone(),
        }
    }

    fn processing_code_table(&self) -> PerOperation<String> {
        let p = &self.processing_code;
        PerOperation {
            authorize: p.authorize.clone(),
            sale: p.sale.clone(),
            refund: p.refund.clone(),
            reversal: p.reversal.clone(),
            balance: p.balance.clone(),
            capture: p.capture.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn config(extra: &str) -> HostConfig {
        toml::from_str(&format!(
            "name = \"van\"\naddress = \"127.0.0.1:1\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn defaults_are_todays_messages() {
        let s = HostSpec::from_config(&config("")).unwrap();
        let d = &s.dialect;
        assert_eq!(
            (
                d.merchant_id_field,
                d.terminal_id_field,
                d.acquirer_id_field
            ),
            (Some(42), Some(41), Some(32))
        );
        assert_eq!(d.merchant_id_width, Some(15));
        assert_eq!(
            (
                d.mti.authorize,
                d.mti.sale,
                d.mti.refund,
                d.mti.reversal,
                d.mti.balance
            ),
            (100, 200, 200, 400, 100)
        );
        assert_eq!(d.request_mti(UpstreamKind::Reversal, true), 401);
        assert_eq!(d.answer_mti(UpstreamKind::Reversal), 410);
        assert_eq!(d.processing_code.refund.as_ref(), b"200000");
        assert_eq!(d.processing_code.balance.as_ref(), b"310000");
        assert_eq!(s.inflight_max, 2 * 1_024);
        assert!(s.sign_on && s.echo_idle_ms > 0 && s.breaker_failures > 0);
    }

    #[test]
    fn dialects_parse() {
        let s = HostSpec::from_config(&config(
            "acquirer_id_field = 0\nmerchant_id_field = 43\nterminal_id_source = \"merchant\"\n\
             currency = \"omit\"\nhost_currency = 410\nrequired_fields = [14, 22, 14]\n\
             [mti]\nrefund = \"0220\"\nreversal = \"0420\"\n[processing_code]\nrefund = \"220000\"\n",
        ))
        .unwrap();
        let d = &s.dialect;
        assert_eq!(d.acquirer_id_field, None);
        assert_eq!(d.merchant_id_field, Some(43));
        assert_eq!((d.mti.refund, d.mti.reversal), (220, 420));
        assert_eq!(d.answer_mti(UpstreamKind::Refund), 230);
        assert_eq!(d.required_fields, vec![14, 22]);
        assert_eq!(d.host_currency, Some(410));
    }

    #[test]
    fn mistakes_are_refused_with_the_host_and_setting_named() {
        for (extra, words) in [
            ("profile = \"ebcdic\"", "unknown profile"),
            ("length_header = \"none\"", "length header"),
            ("links = 0", "links"),
            ("timeout_ms = 0", "timeout_ms"),
            ("reconnect_max_ms = 10", "reconnect"),
            ("terminal_id = \"SHORT\"", "terminal_id"),
            ("acquirer_id = \"12ab\"", "acquirer_id"),
            ("merchant_id_field = 4", "fills itself"),
            ("terminal_id_field = 42", "must differ"),
            ("acquirer_id_field = 200", "not a field"),
            ("currency = \"omit\"", "host_currency"),
            ("host_currency = 1000", "host_currency"),
            ("required_fields = [70]", "never sent"),
            ("required_fields = [55]", "never sent"),
            ("echo_misses_max = 0", "echo_misses_max"),
            ("breaker_open_ms = 0", "breaker_open_ms"),
            ("[mti]\nrefund = \"0210\"", "mti.refund"),
            ("[mti]\nreversal = \"0200\"", "mti.reversal"),
            ("[mti]\nsale = \"0201\"", "mti.sale"),
            ("[mti]\nauthorize = \"100\"", "mti.authorize"),
            (
                "[processing_code]\nsale = \"00000X\"",
                "processing_code.sale",
            ),
        ] {
            let err = HostSpec::from_config(&config(extra))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("host van") && err.contains(words),
                "{extra}: {err}"
            );
        }
        // A terminal id too long for the chosen field.
        let err = HostSpec::from_config(&config("terminal_id_field = 27"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not fit"), "{err}");
        // Hosts without network management (no echo tests either, whatever echo_idle_ms says).
        assert!(HostSpec::from_config(&config("sign_on = false")).is_ok());
    }
}
