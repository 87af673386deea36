//! The requests a connection sends: Luhn-valid card numbers, carrier and bank instruments, unique
//! order ids, and the pool of approved orders that captures, cancels, refunds and inquiries refer to.
//!
//! Sans-IO and seeded: the same seed and the same answers give the same requests.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use paymesh_codecs::message::{PaymentMethod, TxnKind, TxnRequest};
use paymesh_codecs::types::{Pan, Secret};
use rand::Rng;
use rand::rngs::SmallRng;

use crate::config::{APPROVED_POOL_PER_CONNECTION_MAX, LoadConfig};
use crate::mix::{Method, Mix, TxnType};

/// Digits of the card numbers the harness makes.
pub const PAN_DIGITS: usize = 16;
/// Carriers of carrier billing, picked uniformly.
pub const CARRIERS: [&str; 3] = ["SKT", "KT", "LGU"];
/// Bank code of bank transfers.
pub const BANK_CODE: &str = "004";
/// Years ahead of the current one that card expiry dates lie.
const EXPIRY_YEARS_AHEAD: u64 = 3;
/// Size of one scratch allocation for request text fields, bytes.
const SCRATCH_CHUNK_BYTES: usize = 16 * 1024;
/// Longest text field written to the scratch buffer, bytes (order ids are at most 40).
const SCRATCH_FIELD_BYTES_MAX: usize = 64;
/// Seconds in a mean Gregorian year (365.2425 days).
const SECONDS_PER_YEAR: u64 = 31_556_952;

/// The Luhn check digit (0..=9) that makes `digits` followed by it pass the Luhn check.
/// `digits` are ASCII digits; anything else counts as 0.
pub fn luhn_check_digit(digits: &[u8]) -> u8 {
    // Counting from the right of the final number, the check digit is position 0, so the last
    // digit given is position 1 and gets doubled.
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &ascii)| {
            let d = u32::from(ascii.wrapping_sub(b'0')).min(9);
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Whether `digits` (ASCII) pass the Luhn check.
pub fn luhn_valid(digits: &[u8]) -> bool {
    match digits.split_last() {
        Some((&last, rest)) if digits.iter().all(u8::is_ascii_digit) => {
            luhn_check_digit(rest) == last - b'0'
        }
        _ => false,
    }
}

/// A Luhn-valid card number of [`PAN_DIGITS`] digits starting with `bin` (six ASCII digits;
/// other bytes of `bin` count as `0`).
pub fn pan_digits(bin: &str, rng: &mut impl Rng) -> [u8; PAN_DIGITS] {
    let mut pan = [b'0'; PAN_DIGITS];
    let (body, check) = pan.split_at_mut(PAN_DIGITS - 1);
    for (i, digit) in body.iter_mut().enumerate() {
        *digit = match bin.as_bytes().get(i) {
            Some(b) if b.is_ascii_digit() => *b,
            Some(_) => b'0',
            None => b'0' + rng.gen_range(0..10u8),
        };
    }
    if let Some(last) = check.first_mut() {
        *last = b'0' + luhn_check_digit(body);
    }
    pan
}

/// [`pan_digits`] as a string.
pub fn generate_pan(bin: &str, rng: &mut impl Rng) -> String {
    pan_digits(bin, rng)
        .iter()
        .map(|&d| char::from(d))
        .collect()
}

/// `YYMM` of December some years after `now_unix_s`: always in the future.
pub fn future_expiry(now_unix_s: u64) -> String {
    // 365.2425 days a year: off by a day at most around new year, harmless three years ahead.
    let year = 1970 + now_unix_s / SECONDS_PER_YEAR;
    format!("{:02}12", (year + EXPIRY_YEARS_AHEAD) % 100)
}

/// What names an order of this connection: its merchant's number (`M000042` is 42) and the
/// counter its order id was made from. Sixteen bytes instead of two strings, so that the pool of
/// approved orders costs no allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct OrderKey {
    /// Merchant number.
    pub merchant: u32,
    /// Order counter of the connection.
    pub number: u64,
}

/// An order the server approved, which later requests may refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovedOrder {
    /// Which order.
    pub key: OrderKey,
    /// The amount approved, minor units.
    pub amount: u64,
}

/// Approved orders of one connection: authorized ones (for capture and cancel) and sold or
/// captured ones (for refund). Each pool keeps at most [`APPROVED_POOL_PER_CONNECTION_MAX`].
#[derive(Debug, Default)]
pub struct OrderPool {
    authorized: VecDeque<ApprovedOrder>,
    settled: VecDeque<ApprovedOrder>,
}

impl OrderPool {
    /// Records the approval of a request of type `txn_type` for `order`.
    pub fn approved(&mut self, txn_type: TxnType, order: ApprovedOrder) {
        let pool = match txn_type {
            TxnType::Authorize => &mut self.authorized,
            TxnType::Sale | TxnType::Capture => &mut self.settled,
            TxnType::Cancel | TxnType::Refund | TxnType::Inquiry => return,
        };
        if pool.len() >= APPROVED_POOL_PER_CONNECTION_MAX {
            pool.pop_front();
        }
        pool.push_back(order);
    }

    /// Takes the oldest order a request of type `txn_type` can refer to (inquiries only look).
    fn take(&mut self, txn_type: TxnType, rng: &mut SmallRng) -> Option<ApprovedOrder> {
        match txn_type {
            TxnType::Capture | TxnType::Cancel => self.authorized.pop_front(),
            TxnType::Refund => self.settled.pop_front(),
            TxnType::Inquiry => {
                let pool = if rng.gen_bool(0.5) && !self.settled.is_empty() {
                    &self.settled
                } else {
                    &self.authorized
                };
                pool.back().or(self.settled.back()).copied()
            }
            TxnType::Authorize | TxnType::Sale => None,
        }
    }

    /// Orders held (both pools).
    pub fn len(&self) -> usize {
        self.authorized.len() + self.settled.len()
    }

    /// Whether both pools are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One request to send, with what its answer must echo.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The type drawn from the mix, or [`TxnType::Authorize`] when the pool had nothing to refer to.
    pub txn_type: TxnType,
    /// Whether the mix asked for another type that the pool could not serve yet.
    pub substituted: bool,
    /// The order it creates or refers to.
    pub order: OrderKey,
    /// The request itself.
    pub request: TxnRequest,
}

/// Makes the requests of one connection.
#[derive(Debug)]
pub struct Workload {
    rng: SmallRng,
    mix: Mix<TxnType>,
    methods: Mix<Method>,
    merchants: u32,
    bins: Vec<String>,
    currency: u16,
    amount_minor: (u64, u64),
    expiry: Bytes,
    /// `<run id>-<connection>-`: the prefix that makes order ids unique per run.
    order_prefix: String,
    /// Where the text fields of requests are written: one allocation serves many requests, whose
    /// fields are reference-counted slices of it.
    scratch: BytesMut,
    counter: u64,
    /// The approved orders later requests refer to.
    pub pool: OrderPool,
}

impl Workload {
    /// The workload of connection `connection` in run `run_id`, seeded from the config's seed.
    pub fn new(config: &LoadConfig, run_id: &str, connection: usize, now_unix_s: u64) -> Workload {
        let seed = config.seed ^ (connection as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Workload {
            rng: rand::SeedableRng::seed_from_u64(seed),
            mix: config.mix.clone(),
            methods: config.methods.clone(),
            merchants: config.merchants.max(1),
            bins: config.bins.clone(),
            currency: config.currency,
            amount_minor: config.amount_minor,
            expiry: Bytes::from(future_expiry(now_unix_s)),
            order_prefix: format!("{run_id}-{connection:04x}-"),
            scratch: BytesMut::new(),
            counter: 0,
            pool: OrderPool::default(),
        }
    }

    /// The next request: a type from the mix; captures, cancels, refunds and inquiries take an
    /// approved order from the pool, or become an authorization when it has none.
    pub fn next_request(&mut self) -> Planned {
        let wanted = self.mix.pick(&mut self.rng);
        self.counter += 1;
        let referred = self.pool.take(wanted, &mut self.rng);
        let (txn_type, substituted) = match (&referred, wanted) {
            (_, TxnType::Authorize | TxnType::Sale) => (wanted, false),
            (Some(_), _) => (wanted, false),
            (None, _) => (TxnType::Authorize, true),
        };
        let (order, request) = match referred {
            Some(order) => (order.key, self.refer(txn_type, order)),
            None => self.create(txn_type),
        };
        Planned {
            txn_type,
            substituted,
            order,
            request,
        }
    }

    /// The merchant id and order id of `key`, written into the scratch buffer.
    fn ids(&mut self, key: OrderKey) -> (Bytes, Bytes) {
        let merchant_id = self.text(format_args!("M{:06}", key.merchant));
        self.make_room();
        self.scratch.extend_from_slice(self.order_prefix.as_bytes());
        let order_id = self.text(format_args!("{:x}", key.number));
        (merchant_id, order_id)
    }

    /// A new order: AUTHORIZE or SALE with a fresh order id, merchant, amount and instrument.
    fn create(&mut self, txn_type: TxnType) -> (OrderKey, TxnRequest) {
        let kind = if txn_type == TxnType::Sale {
            TxnKind::Sale
        } else {
            TxnKind::Authorize
        };
        let key = OrderKey {
            merchant: self.rng.gen_range(1..=self.merchants),
            number: self.counter,
        };
        let (merchant_id, order_id) = self.ids(key);
        let mut request = TxnRequest::new(kind, merchant_id, order_id);
        let (low, high) = self.amount_minor;
        request.amount = Some(self.rng.gen_range(low..=high));
        request.currency = Some(self.currency);
        request.payment = Some(self.instrument());
        (key, request)
    }

    /// A request about an approved order: the full amount, and a request id for the operation.
    fn refer(&mut self, txn_type: TxnType, order: ApprovedOrder) -> TxnRequest {
        let kind = match txn_type {
            TxnType::Capture => TxnKind::Capture,
            TxnType::Cancel => TxnKind::Cancel,
            TxnType::Refund => TxnKind::Refund,
            TxnType::Inquiry => TxnKind::Inquiry,
            TxnType::Authorize => TxnKind::Authorize,
            TxnType::Sale => TxnKind::Sale,
        };
        let (merchant_id, order_id) = self.ids(order.key);
        let mut request = TxnRequest::new(kind, merchant_id, order_id);
        if matches!(txn_type, TxnType::Capture | TxnType::Refund) {
            request.amount = Some(order.amount);
            request.currency = Some(self.currency);
        }
        if matches!(
            txn_type,
            TxnType::Capture | TxnType::Cancel | TxnType::Refund
        ) {
            let counter = self.counter;
            request.request_id = Some(self.text(format_args!("r{counter:x}")));
        }
        request
    }

    /// A payment instrument drawn from the method mix.
    fn instrument(&mut self) -> PaymentMethod {
        match self.methods.pick(&mut self.rng) {
            Method::Card => {
                let index = self.rng.gen_range(0..self.bins.len().max(1));
                let bin = self.bins.get(index).map_or("411111", String::as_str);
                let digits = pan_digits(bin, &mut self.rng);
                let digits = self.bytes(&digits);
                let cvv = self.rng.gen_range(0..1000u16);
                let cvv = self.text(format_args!("{cvv:03}"));
                match Pan::new(digits) {
                    Some(pan) => PaymentMethod::Card {
                        pan,
                        expiry: self.expiry.clone(),
                        cvv: Some(Secret::new(cvv)),
                    },
                    // A configured BIN is six digits, so the PAN always has 16 digits.
                    None => self.carrier(),
                }
            }
            Method::Carrier => self.carrier(),
            Method::Bank => PaymentMethod::BankTransfer {
                bank_code: Bytes::from_static(BANK_CODE.as_bytes()),
                account: {
                    let account = self.rng.gen_range(0..1_000_000_000u32);
                    self.text(format_args!("110{account:09}"))
                },
            },
        }
    }

    /// Room kept free in the scratch buffer for one text field.
    fn make_room(&mut self) {
        if self.scratch.capacity() - self.scratch.len() < SCRATCH_FIELD_BYTES_MAX {
            self.scratch.reserve(SCRATCH_CHUNK_BYTES);
        }
    }

    /// Formats a text field into the scratch buffer.
    fn text(&mut self, args: std::fmt::Arguments<'_>) -> Bytes {
        self.make_room();
        // Writing to a BytesMut grows it and cannot fail.
        let _ = std::fmt::Write::write_fmt(&mut self.scratch, args);
        self.scratch.split().freeze()
    }

    /// Copies a field into the scratch buffer.
    fn bytes(&mut self, value: &[u8]) -> Bytes {
        self.make_room();
        self.scratch.extend_from_slice(value);
        self.scratch.split().freeze()
    }

    fn carrier(&mut self) -> PaymentMethod {
        let carrier = CARRIERS
            .get(self.rng.gen_range(0..CARRIERS.len()))
            .unwrap_or(&"SKT");
        PaymentMethod::CarrierBilling {
            phone: {
                let line = self.rng.gen_range(0..10_000u16);
                self.text(format_args!("0101234{line:04}"))
            },
            carrier: Bytes::from_static(carrier.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn luhn_known_numbers() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(luhn_valid(b"5500000000000004"));
        assert!(luhn_valid(b"79927398713"));
        assert!(!luhn_valid(b"4111111111111112"));
        assert!(!luhn_valid(b""));
        assert!(!luhn_valid(b"41111111111x1111"));
        assert_eq!(luhn_check_digit(b"7992739871"), 3);
        assert_eq!(luhn_check_digit(b"411111111111111"), 1);
    }

    #[test]
    fn generated_pans_are_luhn_valid_and_keep_their_bin() {
        let mut rng = SmallRng::seed_from_u64(3);
        for bin in ["411111", "540000", "620000"] {
            for _ in 0..1000 {
                let pan = generate_pan(bin, &mut rng);
                assert_eq!(pan.len(), PAN_DIGITS);
                assert!(pan.starts_with(bin));
                assert!(luhn_valid(pan.as_bytes()), "{pan}");
                let codec_pan = Pan::new(Bytes::from(pan)).unwrap();
                assert!(codec_pan.luhn_valid());
            }
        }
    }

    #[test]
    fn expiry_is_in_the_future() {
        // 2026-11-15 is 1_794_700_800 s after the epoch.
        assert_eq!(future_expiry(1_794_700_800), "2912");
        assert_eq!(future_expiry(0), "7312");
    }

    fn approve_all(workload: &mut Workload, planned: &Planned) {
        let amount = planned.request.amount.unwrap_or(0);
        let order = ApprovedOrder {
            key: planned.order,
            amount,
        };
        workload.pool.approved(planned.txn_type, order);
    }

    #[test]
    fn references_point_at_approved_orders_and_ids_are_unique() {
        let config = LoadConfig {
            merchants: 50,
            ..LoadConfig::default()
        };
        let mut workload = Workload::new(&config, "t1", 2, 1_794_700_800);
        let mut created = std::collections::HashMap::new();
        let mut order_ids = std::collections::HashSet::new();
        let mut referring = 0;
        for _ in 0..5000 {
            let planned = workload.next_request();
            let request = &planned.request;
            match planned.txn_type {
                TxnType::Authorize | TxnType::Sale => {
                    assert!(
                        order_ids.insert(request.order_id.clone()),
                        "order id reused"
                    );
                    assert!(request.order_id.starts_with(b"t1-0002-"));
                    assert!(request.order_id.len() <= 40);
                    created.insert(request.order_id.clone(), request.amount.unwrap());
                    let merchant = std::str::from_utf8(&request.merchant_id).unwrap();
                    let number: u32 = merchant[1..].parse().unwrap();
                    assert!(merchant.len() == 7 && (1..=50).contains(&number));
                }
                _ => {
                    referring += 1;
                    let amount = created
                        .get(&request.order_id)
                        .expect("refers to a created order");
                    if let Some(sent) = request.amount {
                        assert_eq!(sent, *amount);
                    }
                }
            }
            approve_all(&mut workload, &planned);
            assert!(workload.pool.len() <= 2 * APPROVED_POOL_PER_CONNECTION_MAX);
        }
        assert!(referring > 500, "{referring}");
    }

    #[test]
    fn empty_pool_substitutes_an_authorization() {
        let config = LoadConfig {
            mix: Mix::parse("refund=1").unwrap(),
            ..LoadConfig::default()
        };
        let mut workload = Workload::new(&config, "t", 0, 0);
        let first = workload.next_request();
        assert!(first.substituted);
        assert_eq!(first.txn_type, TxnType::Authorize);
        assert_eq!(first.request.kind, TxnKind::Authorize);
    }
}
