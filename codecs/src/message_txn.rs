//! Transaction requests and their answers: AUTHORIZE, SALE, CAPTURE, CANCEL, REFUND, INQUIRY,
//! BALANCE_INQUIRY and TOKENIZE (docs/PROTOCOL.md, "Transactions").
//!
//! All eight requests share [`TxnRequest`] and all eight answers [`TxnAnswer`]; [`TxnKind`] says
//! which. Decoding checks the fields each kind requires; a field a kind does not use is carried if
//! present and ignored by the server, except the CVV, which only AUTHORIZE and SALE may carry.

use bytes::{BufMut, Bytes, BytesMut};

use crate::body::{FieldWriter, Fields, tag};
use crate::error::ProtocolError;
use crate::types::{AMOUNT_MINOR_MAX, Currency, Money, Pan, ResultCode, Secret};

/// Bit that turns a request type into its answer type.
pub const ANSWER_BIT: u8 = 0x80;

/// The first bytes of what a device signs (docs/PROTOCOL.md, "Device signatures"): a fixed
/// domain-separation prefix, so that a signature over PayMesh request bytes can never be taken
/// for a signature over anything else the same key signs, and a later version of the scheme can
/// change the covered bytes without old signatures verifying under the new rules.
pub const DEVICE_SIGNATURE_CONTEXT: &[u8; 17] = b"PAYMESH-DEVSIG-v1";

/// The kind of a transaction request or answer; the discriminant is the request's message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TxnKind {
    /// Reserve funds (0x10).
    Authorize = 0x10,
    /// Authorize and capture at once (0x11).
    Sale = 0x11,
    /// Capture an authorization, fully or partly (0x12).
    Capture = 0x12,
    /// Void an authorization (0x13).
    Cancel = 0x13,
    /// Return captured funds, fully or partly (0x14).
    Refund = 0x14,
    /// Ask for a payment's state (0x15).
    Inquiry = 0x15,
    /// Ask for an account's balance (0x16).
    BalanceInquiry = 0x16,
    /// Swap a card for a wallet token (0x17).
    Tokenize = 0x17,
}

impl TxnKind {
    /// All kinds, in message-type order.
    pub const ALL: [TxnKind; 8] = [
        TxnKind::Authorize,
        TxnKind::Sale,
        TxnKind::Capture,
        TxnKind::Cancel,
        TxnKind::Refund,
        TxnKind::Inquiry,
        TxnKind::BalanceInquiry,
        TxnKind::Tokenize,
    ];

    /// The kind of a request message type (0x10..=0x17).
    pub const fn from_request_type(msg_type: u8) -> Option<TxnKind> {
        Some(match msg_type {
            0x10 => TxnKind::Authorize,
            0x11 => TxnKind::Sale,
            0x12 => TxnKind::Capture,
            0x13 => TxnKind::Cancel,
            0x14 => TxnKind::Refund,
            0x15 => TxnKind::Inquiry,
            0x16 => TxnKind::BalanceInquiry,
            0x17 => TxnKind::Tokenize,
            _ => return None,
        })
    }

    /// The kind of an answer message type (0x90..=0x97).
    pub const fn from_answer_type(msg_type: u8) -> Option<TxnKind> {
        if msg_type & ANSWER_BIT == 0 {
            return None;
        }
        TxnKind::from_request_type(msg_type & !ANSWER_BIT)
    }

    /// The request's message type.
    pub const fn request_type(self) -> u8 {
        self as u8
    }

    /// The answer's message type.
    pub const fn answer_type(self) -> u8 {
        self as u8 | ANSWER_BIT
    }

    /// The request's name (`AUTHORIZE`).
    pub const fn name(self) -> &'static str {
        self.names().0
    }

    /// The answer's name (`AUTHORIZE_ANSWER`).
    pub const fn answer_name(self) -> &'static str {
        self.names().1
    }

    const fn names(self) -> (&'static str, &'static str) {
        match self {
            TxnKind::Authorize => ("AUTHORIZE", "AUTHORIZE_ANSWER"),
            TxnKind::Sale => ("SALE", "SALE_ANSWER"),
            TxnKind::Capture => ("CAPTURE", "CAPTURE_ANSWER"),
            TxnKind::Cancel => ("CANCEL", "CANCEL_ANSWER"),
            TxnKind::Refund => ("REFUND", "REFUND_ANSWER"),
            TxnKind::Inquiry => ("INQUIRY", "INQUIRY_ANSWER"),
            TxnKind::BalanceInquiry => ("BALANCE_INQUIRY", "BALANCE_INQUIRY_ANSWER"),
            TxnKind::Tokenize => ("TOKENIZE", "TOKENIZE_ANSWER"),
        }
    }
}

/// A payment's state as carried in an answer's `state` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TxnState {
    /// Authorized, nothing captured.
    Authorized = 1,
    /// Captured in full.
    Captured = 2,
    /// Partly captured.
    PartiallyCaptured = 3,
    /// Cancelled (voided).
    Cancelled = 4,
    /// Refunded in full.
    Refunded = 5,
    /// Partly refunded.
    PartiallyRefunded = 6,
    /// Declined.
    Declined = 7,
    /// Outcome unknown, being resolved.
    InDoubt = 8,
    /// Not authorized and nothing charged: refused before an answer from the issuer (3002, 3007);
    /// the same request again is attempted again.
    Failed = 9,
    /// Was in doubt; the host acknowledged its reversal: nothing is charged.
    Reversed = 10,
}

impl TxnState {
    /// The state of a wire value (`None` for values this version does not know).
    pub const fn from_u8(value: u8) -> Option<TxnState> {
        Some(match value {
            1 => TxnState::Authorized,
            2 => TxnState::Captured,
            3 => TxnState::PartiallyCaptured,
            4 => TxnState::Cancelled,
            5 => TxnState::Refunded,
            6 => TxnState::PartiallyRefunded,
            7 => TxnState::Declined,
            8 => TxnState::InDoubt,
            9 => TxnState::Failed,
            10 => TxnState::Reversed,
            _ => return None,
        })
    }
}

/// How the customer pays, with the method's fields. `Debug` masks the PAN and hides the CVV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentMethod {
    /// Method 1: a card.
    Card {
        /// Card number.
        pan: Pan,
        /// Expiry, YYMM.
        expiry: Bytes,
        /// Card verification value (AUTHORIZE and SALE only); never stored or echoed.
        cvv: Option<Secret<Bytes>>,
    },
    /// Method 2: a wallet token issued by TOKENIZE.
    WalletToken(Bytes),
    /// Method 3: carrier (phone bill) billing.
    CarrierBilling {
        /// E.164 number without `+`.
        phone: Bytes,
        /// Carrier name.
        carrier: Bytes,
    },
    /// Method 4: bank transfer.
    BankTransfer {
        /// Bank code.
        bank_code: Bytes,
        /// Account number.
        account: Bytes,
    },
}

impl PaymentMethod {
    /// The `payment_method` wire value.
    pub const fn code(&self) -> u8 {
        match self {
            PaymentMethod::Card { .. } => 1,
            PaymentMethod::WalletToken(_) => 2,
            PaymentMethod::CarrierBilling { .. } => 3,
            PaymentMethod::BankTransfer { .. } => 4,
        }
    }
}

/// A device's signature over the request (fields `device_id`, `device_counter` and `signature`,
/// always together): over [`TxnRequest::device_signed_bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSignature {
    /// The signing device.
    pub device_id: Bytes,
    /// The device's counter for this request: each value is accepted once (anti-replay).
    pub counter: u64,
    /// The signature bytes.
    pub signature: Bytes,
}

/// A transaction request. Which fields are required depends on `kind` (docs/PROTOCOL.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRequest {
    /// Which request.
    pub kind: TxnKind,
    /// Merchant id; empty only in an INQUIRY by `server_txn_id`.
    pub merchant_id: Bytes,
    /// The payment's id at the merchant; empty only in an INQUIRY by `server_txn_id`.
    pub order_id: Bytes,
    /// Amount in minor units: required by AUTHORIZE and SALE; in CAPTURE and REFUND absent means
    /// "all that is left".
    pub amount: Option<u64>,
    /// ISO 4217 numeric currency: required by AUTHORIZE and SALE.
    pub currency: Option<u16>,
    /// How the customer pays: required by AUTHORIZE, SALE, BALANCE_INQUIRY, TOKENIZE (card only).
    pub payment: Option<PaymentMethod>,
    /// Device signature, optional.
    pub device_signature: Option<DeviceSignature>,
    /// Idempotency key of this operation within its order: required by REFUND.
    pub request_id: Option<Bytes>,
    /// PayMesh's id of the payment (INQUIRY by id).
    pub server_txn_id: Option<u64>,
    /// Free text from the merchant.
    pub description: Option<Bytes>,
    /// Installment months (할부) of a card AUTHORIZE or SALE: 0 (or absent) lump sum, else
    /// [`INSTALLMENT_MONTHS_MIN`]..=[`INSTALLMENT_MONTHS_MAX`].
    pub installment_months: Option<u8>,
    /// CAPTURE: this is the last capture; the uncaptured rest of the authorization is released.
    pub final_capture: bool,
    /// The merchant's reference of its customer (`customer_ref`): on TOKENIZE it binds the token
    /// to that customer; a payment with such a token must name the same customer.
    pub customer_ref: Option<Bytes>,
}

/// Fewest installment months (1 month is not an installment: send 0 or leave the field out).
pub const INSTALLMENT_MONTHS_MIN: u8 = 2;
/// Most installment months (the longest plans Korean card issuers offer).
pub const INSTALLMENT_MONTHS_MAX: u8 = 36;

impl TxnRequest {
    /// A request with the order's key and no other field.
    pub fn new(kind: TxnKind, merchant_id: Bytes, order_id: Bytes) -> TxnRequest {
        TxnRequest {
            kind,
            merchant_id,
            order_id,
            amount: None,
            currency: None,
            payment: None,
            device_signature: None,
            request_id: None,
            server_txn_id: None,
            description: None,
            installment_months: None,
            final_capture: false,
            customer_ref: None,
        }
    }

    /// Installment months as the order keeps them: 0 for a lump sum (absent or 0).
    pub fn installments(&self) -> u8 {
        self.installment_months.unwrap_or(0)
    }

    /// Amount and currency together, when both are present.
    pub fn money(&self) -> Option<Money> {
        Some(Money::new(self.amount?, Currency(self.currency?)))
    }

    /// Appends the body fields, in tag order.
    pub fn encode_body(&self, w: &mut FieldWriter<'_>) {
        self.encode_fields(w, Covered::All);
    }

    /// Appends the bytes a device signs (docs/PROTOCOL.md, "Device signatures"):
    /// [`DEVICE_SIGNATURE_CONTEXT`], the request's message type, then the body's fields in tag
    /// order as [`TxnRequest::encode_body`] writes them, except `cvv` and `signature`. The
    /// signature cannot cover itself; the CVV is left out because it is never journaled, so a
    /// replay of the journal after a crash verifies exactly the bytes the live router did.
    pub fn device_signed_bytes(&self, dst: &mut BytesMut) {
        dst.put_slice(DEVICE_SIGNATURE_CONTEXT);
        dst.put_u8(self.kind.request_type());
        self.encode_fields(&mut FieldWriter::new(dst), Covered::Signed);
    }

    fn encode_fields(&self, w: &mut FieldWriter<'_>, which: Covered) {
        let all = which == Covered::All;
        w.put_str(tag::MERCHANT_ID, &self.merchant_id);
        w.put_str(tag::ORDER_ID, &self.order_id);
        w.opt_u64(tag::AMOUNT, self.amount);
        w.opt_u16(tag::CURRENCY, self.currency);
        if let Some(payment) = &self.payment {
            w.put_u8(tag::PAYMENT_METHOD, payment.code());
            match payment {
                PaymentMethod::Card { pan, expiry, cvv } => {
                    w.put_str(tag::PAN, pan.digits());
                    w.put_str(tag::EXPIRY, expiry);
                    if all {
                        w.opt_str(tag::CVV, cvv.as_ref().map(Secret::expose));
                    }
                }
                PaymentMethod::WalletToken(token) => w.put_str(tag::WALLET_TOKEN, token),
                PaymentMethod::CarrierBilling { phone, carrier } => {
                    w.put_str(tag::PHONE_NUMBER, phone);
                    w.put_str(tag::CARRIER, carrier);
                }
                PaymentMethod::BankTransfer { bank_code, account } => {
                    w.put_str(tag::BANK_CODE, bank_code);
                    w.put_str(tag::ACCOUNT_NUMBER, account);
                }
            }
        }
        if let Some(device) = &self.device_signature {
            w.put_str(tag::DEVICE_ID, &device.device_id);
            if all {
                w.put_bytes(tag::SIGNATURE, &device.signature);
            }
        }
        w.opt_str(tag::REQUEST_ID, self.request_id.as_ref());
        w.opt_u64(tag::SERVER_TXN_ID, self.server_txn_id);
        if let Some(description) = &self.description {
            w.put_text(tag::DESCRIPTION, description);
        }
        if let Some(device) = &self.device_signature {
            w.put_u64(tag::DEVICE_COUNTER, device.counter);
        }
        w.opt_u8(tag::INSTALLMENT_MONTHS, self.installment_months);
        if self.final_capture {
            w.put_u8(tag::FINAL_CAPTURE, 1);
        }
        w.opt_str(tag::CUSTOMER_REF, self.customer_ref.as_ref());
    }

    /// Reads a request of `kind` from a validated body, checking what `kind` requires.
    #[inline]
    pub fn decode(kind: TxnKind, f: &Fields<'_>) -> Result<TxnRequest, ProtocolError> {
        Self::decode_as(kind, f, Rules::Current)
    }

    /// Reads a request an earlier build accepted and recorded (a journal record): the rules of
    /// that build, which took any amount and currency and device fields without a counter (the
    /// device fields of such a request are dropped: that build never checked them).
    pub fn decode_recorded(kind: TxnKind, f: &Fields<'_>) -> Result<TxnRequest, ProtocolError> {
        Self::decode_as(kind, f, Rules::Recorded)
    }

    fn decode_as(kind: TxnKind, f: &Fields<'_>, rules: Rules) -> Result<TxnRequest, ProtocolError> {
        let need = Need {
            f,
            msg_name: kind.name(),
        };
        let by_txn_id = kind == TxnKind::Inquiry
            && f.has(tag::SERVER_TXN_ID)
            && !f.has(tag::MERCHANT_ID)
            && !f.has(tag::ORDER_ID);
        let (merchant_id, order_id) = if by_txn_id {
            (Bytes::new(), Bytes::new())
        } else {
            (need.bytes(tag::MERCHANT_ID)?, need.bytes(tag::ORDER_ID)?)
        };
        let creates = matches!(kind, TxnKind::Authorize | TxnKind::Sale);
        let amount = if creates {
            Some(need.u64(tag::AMOUNT)?)
        } else {
            f.u64(tag::AMOUNT)
        };
        if let Some(a) = amount
            && rules == Rules::Current
        {
            need.check(tag::AMOUNT, check_amount(a))?;
        }
        let currency = if creates {
            Some(need.u16(tag::CURRENCY)?)
        } else {
            f.u16(tag::CURRENCY)
        };
        if let Some(c) = currency
            && rules == Rules::Current
        {
            need.check(tag::CURRENCY, check_currency(c))?;
        }
        let payment = decode_payment(kind, f)?;
        if payment.is_none()
            && matches!(
                kind,
                TxnKind::Authorize | TxnKind::Sale | TxnKind::BalanceInquiry
            )
        {
            return Err(need.missing(tag::PAYMENT_METHOD));
        }
        if f.has(tag::CVV) && !(creates && matches!(payment, Some(PaymentMethod::Card { .. }))) {
            return Err(need.not_allowed(tag::CVV));
        }
        let device_signature = match rules {
            Rules::Recorded if !f.has(tag::DEVICE_COUNTER) => None,
            _ => decode_device(&need)?,
        };
        let request_id = if kind == TxnKind::Refund {
            Some(need.bytes(tag::REQUEST_ID)?)
        } else {
            f.bytes(tag::REQUEST_ID)
        };
        let installment_months = f.u8(tag::INSTALLMENT_MONTHS);
        if let Some(months) = installment_months
            && creates
        {
            need.check(tag::INSTALLMENT_MONTHS, check_installments(months))?;
            let card = matches!(
                payment,
                Some(PaymentMethod::Card { .. } | PaymentMethod::WalletToken(_))
            );
            if months > 0 && !card {
                return Err(need.not_allowed(tag::INSTALLMENT_MONTHS));
            }
        }
        let final_capture = match f.u8(tag::FINAL_CAPTURE) {
            None | Some(0) => false,
            Some(1) => true,
            Some(_) => {
                need.check(tag::FINAL_CAPTURE, Err("must be 0 or 1"))?;
                false
            }
        };
        let customer_ref = f.bytes(tag::CUSTOMER_REF);
        if customer_ref.is_some()
            && !(kind == TxnKind::Tokenize
                || matches!(payment, Some(PaymentMethod::WalletToken(_))))
        {
            return Err(need.not_allowed(tag::CUSTOMER_REF));
        }
        Ok(TxnRequest {
            kind,
            merchant_id,
            order_id,
            amount,
            currency,
            payment,
            device_signature,
            request_id,
            server_txn_id: f.u64(tag::SERVER_TXN_ID),
            description: f.bytes(tag::DESCRIPTION),
            installment_months,
            final_capture,
            customer_ref,
        })
    }
}

/// Installment months a card payment may carry: 0 (a lump sum) or
/// [`INSTALLMENT_MONTHS_MIN`]..=[`INSTALLMENT_MONTHS_MAX`].
fn check_installments(months: u8) -> Result<(), &'static str> {
    match months {
        0 | INSTALLMENT_MONTHS_MIN..=INSTALLMENT_MONTHS_MAX => Ok(()),
        _ => Err("must be 0 (lump sum) or 2..=36 months"),
    }
}

/// Which rules a request is read under.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rules {
    /// This build's, for what a client sends.
    Current,
    /// An earlier build's, for what it recorded (see [`TxnRequest::decode_recorded`]).
    Recorded,
}

/// Reads `device_id`, `device_counter` and `signature`: all three or none.
fn decode_device(need: &Need<'_, '_>) -> Result<Option<DeviceSignature>, ProtocolError> {
    let f = need.f;
    let tags = [tag::DEVICE_ID, tag::DEVICE_COUNTER, tag::SIGNATURE];
    if !tags.iter().any(|t| f.has(*t)) {
        return Ok(None);
    }
    Ok(Some(DeviceSignature {
        device_id: need.bytes(tag::DEVICE_ID)?,
        counter: need.u64(tag::DEVICE_COUNTER)?,
        signature: need.bytes(tag::SIGNATURE)?,
    }))
}

/// Which of a request's fields [`TxnRequest::encode_fields`] writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Covered {
    /// The whole body.
    All,
    /// What a device signs: all but `cvv` and `signature`.
    Signed,
}

/// Reads the payment method and its fields, if `payment_method` is present (TOKENIZE: a card,
/// with or without `payment_method`).
fn decode_payment(kind: TxnKind, f: &Fields<'_>) -> Result<Option<PaymentMethod>, ProtocolError> {
    let need = Need {
        f,
        msg_name: kind.name(),
    };
    let method = match f.u8(tag::PAYMENT_METHOD) {
        Some(method) => method,
        None if kind == TxnKind::Tokenize => 1,
        None => return Ok(None),
    };
    let unsupported = || ProtocolError::UnsupportedPaymentMethod {
        method,
        msg_name: kind.name(),
        offset: f.offset(tag::PAYMENT_METHOD),
    };
    if kind == TxnKind::Tokenize && method != 1 {
        return Err(unsupported());
    }
    let payment = match method {
        1 => PaymentMethod::Card {
            // The scan checked the PAN is 12..=19 digits.
            pan: Pan::from_checked(need.bytes(tag::PAN)?),
            expiry: need.bytes(tag::EXPIRY)?,
            cvv: f.bytes(tag::CVV).map(Secret::new),
        },
        2 => PaymentMethod::WalletToken(need.bytes(tag::WALLET_TOKEN)?),
        3 => PaymentMethod::CarrierBilling {
            phone: need.bytes(tag::PHONE_NUMBER)?,
            carrier: need.bytes(tag::CARRIER)?,
        },
        4 => PaymentMethod::BankTransfer {
            bank_code: need.bytes(tag::BANK_CODE)?,
            account: need.bytes(tag::ACCOUNT_NUMBER)?,
        },
        _ => return Err(unsupported()),
    };
    Ok(Some(payment))
}

/// An amount a request may carry: at least one minor unit (a zero payment, capture or refund is a
/// client error, not an operation) and at most [`AMOUNT_MINOR_MAX`].
fn check_amount(amount: u64) -> Result<(), &'static str> {
    match amount {
        0 => Err("must be at least 1 minor unit"),
        a if a > AMOUNT_MINOR_MAX => Err("exceeds 999999999999 minor units"),
        _ => Ok(()),
    }
}

/// A currency a request may carry: an active ISO 4217 numeric code.
fn check_currency(code: u16) -> Result<(), &'static str> {
    match crate::types::Currency(code).minor_digits() {
        Some(_) => Ok(()),
        None => Err("is not an ISO 4217 numeric currency code"),
    }
}

/// Reads required fields, turning absence into [`ProtocolError::MissingField`].
#[derive(Clone, Copy)]
pub(crate) struct Need<'f, 'a> {
    pub(crate) f: &'f Fields<'a>,
    pub(crate) msg_name: &'static str,
}

impl Need<'_, '_> {
    #[cold]
    pub(crate) fn missing(&self, tag: u16) -> ProtocolError {
        let name = crate::body::field_spec(tag).map_or("?", |spec| spec.name);
        let (msg_name, offset) = (self.msg_name, self.f.end_offset());
        ProtocolError::MissingField {
            tag,
            name,
            msg_name,
            offset,
        }
    }

    #[cold]
    pub(crate) fn not_allowed(&self, tag: u16) -> ProtocolError {
        let name = crate::body::field_spec(tag).map_or("?", |spec| spec.name);
        let (msg_name, offset) = (self.msg_name, self.f.offset(tag));
        ProtocolError::FieldNotAllowed {
            tag,
            name,
            msg_name,
            offset,
        }
    }

    /// Turns a value check's reason into [`ProtocolError::BadFieldValue`] naming the field.
    #[inline]
    pub(crate) fn check(
        &self,
        tag: u16,
        check: Result<(), &'static str>,
    ) -> Result<(), ProtocolError> {
        check.map_err(|reason| ProtocolError::BadFieldValue {
            tag,
            name: crate::body::field_spec(tag).map_or("?", |spec| spec.name),
            offset: self.f.offset(tag),
            reason,
        })
    }

    #[inline]
    pub(crate) fn bytes(&self, tag: u16) -> Result<Bytes, ProtocolError> {
        self.f.bytes(tag).ok_or_else(|| self.missing(tag))
    }

    #[inline]
    pub(crate) fn u16(&self, tag: u16) -> Result<u16, ProtocolError> {
        self.f.u16(tag).ok_or_else(|| self.missing(tag))
    }

    #[inline]
    pub(crate) fn u32(&self, tag: u16) -> Result<u32, ProtocolError> {
        self.f.u32(tag).ok_or_else(|| self.missing(tag))
    }

    #[inline]
    pub(crate) fn u64(&self, tag: u16) -> Result<u64, ProtocolError> {
        self.f.u64(tag).ok_or_else(|| self.missing(tag))
    }
}

/// The answer to a transaction request: `kind` and `result` always, the rest as applicable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnAnswer {
    /// Which request this answers.
    pub kind: TxnKind,
    /// The outcome.
    pub result: ResultCode,
    /// Echo of the request's merchant id.
    pub merchant_id: Option<Bytes>,
    /// Echo of the request's order id.
    pub order_id: Option<Bytes>,
    /// Amount of this operation (echo, or the amount processed).
    pub amount: Option<u64>,
    /// Currency, ISO 4217 numeric.
    pub currency: Option<u16>,
    /// Echo of the request's request id.
    pub request_id: Option<Bytes>,
    /// PayMesh's id of the payment.
    pub server_txn_id: Option<u64>,
    /// Issuer's approval code (6 characters).
    pub approval_code: Option<Bytes>,
    /// Retrieval reference number (12 characters).
    pub rrn: Option<Bytes>,
    /// The upstream's own response code.
    pub upstream_response_code: Option<Bytes>,
    /// When PayMesh received the request, unix ms.
    pub received_at_ms: Option<u64>,
    /// When PayMesh answered, unix ms.
    pub answered_at_ms: Option<u64>,
    /// Payment state (see [`TxnState`]); kept raw so a newer server's states pass through.
    pub state: Option<u8>,
    /// Total authorized.
    pub authorized_amount: Option<u64>,
    /// Total captured.
    pub captured_amount: Option<u64>,
    /// Total refunded.
    pub refunded_amount: Option<u64>,
    /// Balance (BALANCE_INQUIRY).
    pub balance: Option<u64>,
    /// Wallet token (TOKENIZE).
    pub token: Option<Bytes>,
    /// Masked card number.
    pub masked_pan: Option<Bytes>,
    /// Human-readable detail.
    pub message: Option<Bytes>,
    /// Echo of the request's installment months (AUTHORIZE, SALE), or the order's (INQUIRY).
    pub installment_months: Option<u8>,
}

impl TxnAnswer {
    /// An answer with only kind and result.
    pub fn new(kind: TxnKind, result: ResultCode) -> TxnAnswer {
        TxnAnswer {
            kind,
            result,
            merchant_id: None,
            order_id: None,
            amount: None,
            currency: None,
            request_id: None,
            server_txn_id: None,
            approval_code: None,
            rrn: None,
            upstream_response_code: None,
            received_at_ms: None,
            answered_at_ms: None,
            state: None,
            authorized_amount: None,
            captured_amount: None,
            refunded_amount: None,
            balance: None,
            token: None,
            masked_pan: None,
            message: None,
            installment_months: None,
        }
    }

    /// An answer to `request` echoing its merchant id, order id, request id, amount, currency and
    /// server transaction id.
    pub fn echo(request: &TxnRequest, result: ResultCode) -> TxnAnswer {
        let non_empty = |b: &Bytes| (!b.is_empty()).then(|| b.clone());
        TxnAnswer {
            merchant_id: non_empty(&request.merchant_id),
            order_id: non_empty(&request.order_id),
            amount: request.amount,
            currency: request.currency,
            request_id: request.request_id.clone(),
            server_txn_id: request.server_txn_id,
            installment_months: request.installment_months,
            ..TxnAnswer::new(request.kind, result)
        }
    }

    /// An answer of `kind` refusing a request whose body is well formed but was refused
    /// (UNSUPPORTED_PAYMENT_METHOD): it echoes what the body says of the section 5.3 fields,
    /// read leniently, as an answer to a decoded request would. A body that does not even scan
    /// echoes nothing.
    pub fn echo_body(kind: TxnKind, result: ResultCode, body: &Bytes) -> TxnAnswer {
        let mut a = TxnAnswer::new(kind, result);
        if let Ok(f) = Fields::scan(body) {
            a.merchant_id = f.bytes(tag::MERCHANT_ID).filter(|b| !b.is_empty());
            a.order_id = f.bytes(tag::ORDER_ID).filter(|b| !b.is_empty());
            a.amount = f.u64(tag::AMOUNT);
            a.currency = f.u16(tag::CURRENCY);
            a.request_id = f.bytes(tag::REQUEST_ID);
        }
        a
    }

    /// Appends the body fields, in tag order.
    pub fn encode_body(&self, w: &mut FieldWriter<'_>) {
        w.opt_str(tag::MERCHANT_ID, self.merchant_id.as_ref());
        w.opt_str(tag::ORDER_ID, self.order_id.as_ref());
        w.opt_u64(tag::AMOUNT, self.amount);
        w.opt_u16(tag::CURRENCY, self.currency);
        w.opt_str(tag::REQUEST_ID, self.request_id.as_ref());
        w.opt_u64(tag::SERVER_TXN_ID, self.server_txn_id);
        w.put_u16(tag::RESULT_CODE, self.result.as_u16());
        w.opt_str(tag::APPROVAL_CODE, self.approval_code.as_ref());
        w.opt_str(tag::RRN, self.rrn.as_ref());
        w.opt_str(
            tag::UPSTREAM_RESPONSE_CODE,
            self.upstream_response_code.as_ref(),
        );
        w.opt_u64(tag::RECEIVED_AT_MS, self.received_at_ms);
        w.opt_u64(tag::ANSWERED_AT_MS, self.answered_at_ms);
        w.opt_u8(tag::STATE, self.state);
        w.opt_u64(tag::AUTHORIZED_AMOUNT, self.authorized_amount);
        w.opt_u64(tag::CAPTURED_AMOUNT, self.captured_amount);
        w.opt_u64(tag::REFUNDED_AMOUNT, self.refunded_amount);
        w.opt_u64(tag::BALANCE, self.balance);
        w.opt_str(tag::TOKEN, self.token.as_ref());
        w.opt_str(tag::MASKED_PAN, self.masked_pan.as_ref());
        if let Some(message) = &self.message {
            w.put_text(tag::MESSAGE, message);
        }
        w.opt_u8(tag::INSTALLMENT_MONTHS, self.installment_months);
    }

    /// Reads an answer of `kind` from a validated body.
    pub fn decode(kind: TxnKind, f: &Fields<'_>) -> Result<TxnAnswer, ProtocolError> {
        let need = Need {
            f,
            msg_name: kind.answer_name(),
        };
        if f.has(tag::CVV) {
            return Err(need.not_allowed(tag::CVV));
        }
        Ok(TxnAnswer {
            kind,
            result: ResultCode::from_u16(need.u16(tag::RESULT_CODE)?),
            merchant_id: f.bytes(tag::MERCHANT_ID),
            order_id: f.bytes(tag::ORDER_ID),
            amount: f.u64(tag::AMOUNT),
            currency: f.u16(tag::CURRENCY),
            request_id: f.bytes(tag::REQUEST_ID),
            server_txn_id: f.u64(tag::SERVER_TXN_ID),
            approval_code: f.bytes(tag::APPROVAL_CODE),
            rrn: f.bytes(tag::RRN),
            upstream_response_code: f.bytes(tag::UPSTREAM_RESPONSE_CODE),
            received_at_ms: f.u64(tag::RECEIVED_AT_MS),
            answered_at_ms: f.u64(tag::ANSWERED_AT_MS),
            state: f.u8(tag::STATE),
            authorized_amount: f.u64(tag::AUTHORIZED_AMOUNT),
            captured_amount: f.u64(tag::CAPTURED_AMOUNT),
            refunded_amount: f.u64(tag::REFUNDED_AMOUNT),
            balance: f.u64(tag::BALANCE),
            token: f.bytes(tag::TOKEN),
            masked_pan: f.bytes(tag::MASKED_PAN),
            message: f.bytes(tag::MESSAGE),
            installment_months: f.u8(tag::INSTALLMENT_MONTHS),
        })
    }
}
