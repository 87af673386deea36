//! Device signatures on transaction requests (docs/PROTOCOL.md, "Device signatures"), sans-IO.
//!
//! A request may carry `device_id`, `device_counter` and `signature`: an Ed25519 signature (RFC
//! 8032) by a device registered to the request's merchant over the request's signed bytes
//! ([`TxnRequest::device_signed_bytes`]), with a counter the device never uses twice.
//!
//! - [`DeviceRegistry`]: every merchant's devices and signature policy, from the config; keys are
//!   parsed and checked once, at start.
//! - [`DeviceCounters`]: a shard's anti-replay windows, one per (merchant, device) that has signed
//!   an accepted request: the highest counter seen and a bitmap of the [`DEVICE_COUNTER_WINDOW`]
//!   below it (the IPsec anti-replay window, RFC 4303 section 3.4.3), so requests a client
//!   pipelines may arrive out of order and each is still accepted once.
//! - [`DeviceCounters::refuse`]: the one call the shard makes before it looks at a request that
//!   could change anything. Unknown device, bad signature, a signature missing where one is
//!   required, a counter already used or below the window: INVALID_SIGNATURE, before idempotency,
//!   limits or routing, so nothing is allocated or sent upstream.
//!
//! The windows are shard state like the orders: journal replay rebuilds them by verifying the
//! same requests again in the same order (the signed bytes leave out the CVV, which the journal
//! never holds), and the shard's snapshot carries them ([`DeviceCounters::encode`]).
//!
//! Napkin math: an Ed25519 verification is one double scalar multiplication, ~40-50 µs of a
//! modern x86 core with curve25519-dalek's AVX2 backend, against a few µs for the rest of an
//! authorization in the shard: signed requests cost a shard core ~20 000 a second at best.
//! Measured (`benches/benches/device_signature.rs`, the shared 2-core EPYC with other builds
//! running, so pessimistic): ~110 µs per signed request verified (~9 000/s), ~80 ns for a
//! replayed counter (the window check comes first: no curve arithmetic), ~17 ns for an unsigned
//! request of a merchant with an optional policy.

use bytes::{BufMut, Bytes, BytesMut};
use ed25519_dalek::{Signature, VerifyingKey};
use paymesh_codecs::message::{PaymentMethod, TxnAnswer, TxnRequest};
use paymesh_codecs::types::ResultCode;

use super::config::{DeviceSignaturePolicy, MerchantConfig};
use crate::error::MeshError;

/// Keyed by what clients send, so seeded per process (as the shard's maps).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Devices registered in the whole configuration, and so the most replay windows a shard can
/// be asked to track (a window is only made for a registered device's verified request). About
/// 200 bytes each: 20 MiB a shard at most.
pub const DEVICES_MAX: usize = 100_000;

/// Counters below a device's highest that are still accepted (once each), in counters: the bits
/// of the window's bitmap. Wider than any client's pipeline of signed requests needs to be.
pub const DEVICE_COUNTER_WINDOW: u64 = 64;
// The window is the bits of one u64: a wider one would shift past them on a peer's counter.
const _: () = assert!(DEVICE_COUNTER_WINDOW >= 1 && DEVICE_COUNTER_WINDOW <= u64::BITS as u64);

/// Longest device id, in bytes: the `device_id` field's limit.
pub const DEVICE_ID_BYTES_MAX: usize = 64;

/// Why a request was refused INVALID_SIGNATURE; its answer's `message` says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No signature, where the merchant's policy or a wallet-token payment requires one.
    Missing,
    /// The merchant has no device with this id.
    UnknownDevice,
    /// The signature is not a valid Ed25519 signature of the request by the device's key.
    BadSignature,
    /// The device's counter was already used by an accepted request.
    Replayed,
    /// The counter is 0 (counters start at 1), or at or below the device's highest minus
    /// [`DEVICE_COUNTER_WINDOW`]: too old to tell whether it was used.
    CounterTooOld,
    /// The shard tracks [`DEVICES_MAX`] devices already (only after configurations over time
    /// registered more than that in total): refusing is safe, forgetting a window is not.
    TooManyDevices,
}

impl Refusal {
    /// The answer's `message` (names the problem, never a field's value).
    pub const fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "device signature required",
            Refusal::UnknownDevice => "device not registered to the merchant",
            Refusal::BadSignature => "device signature does not verify",
            Refusal::Replayed => "device counter already used",
            Refusal::CounterTooOld => "device counter too old",
            Refusal::TooManyDevices => "too many devices tracked",
        }
    }
}

/// One merchant's devices.
#[derive(Debug, Default, Clone)]
struct MerchantDevices {
    required: bool,
    keys: HashMap<Bytes, VerifyingKey>,
}

/// Every merchant's devices and signature policy, validated: read-only, shared by the shards.
#[derive(Debug, Default, Clone)]
pub struct DeviceRegistry {
    merchants: HashMap<Bytes, MerchantDevices>,
    devices: usize,
}

impl DeviceRegistry {
    /// Parses every merchant's devices: a device id that is not 1..64 printable ASCII or is
    /// repeated within its merchant, a public key that is not 64 hex digits of a valid Ed25519
    /// point of full order, or more than [`DEVICES_MAX`] devices in all refuse the
    /// configuration.
    pub fn new(merchants: &[MerchantConfig]) -> Result<Self, MeshError> {
        let mut registry = DeviceRegistry::default();
        for m in merchants {
            let mut devices = MerchantDevices {
                required: m.device_signature == DeviceSignaturePolicy::Required,
                keys: HashMap::default(),
            };
            for d in &m.devices {
                let bad = |why: &str| {
                    MeshError::Config(format!("merchant {:?}, device {:?}: {why}", m.id, d.id))
                };
                if d.id.is_empty()
                    || d.id.len() > DEVICE_ID_BYTES_MAX
                    || !d.id.bytes().all(|b| (0x20..0x7f).contains(&b))
                {
                    return Err(bad("the id is not 1..64 printable ASCII"));
                }
                let key = parse_public_key(&d.public_key).map_err(bad)?;
                if devices
                    .keys
                    .insert(Bytes::copy_from_slice(d.id.as_bytes()), key)
                    .is_some()
                {
                    return Err(bad("registered twice"));
                }
                registry.devices += 1;
            }
            if registry.devices > DEVICES_MAX {
                return Err(MeshError::Config(format!(
                    "more than {DEVICES_MAX} devices registered"
                )));
            }
            if devices.required || !devices.keys.is_empty() {
                registry
                    .merchants
                    .insert(Bytes::copy_from_slice(m.id.as_bytes()), devices);
            }
        }
        Ok(registry)
    }

    /// Devices registered, over all merchants.
    pub fn len(&self) -> usize {
        self.devices
    }

    /// Whether no device is registered.
    pub fn is_empty(&self) -> bool {
        self.devices == 0
    }
}

/// An Ed25519 public key from 64 hex digits. Small-order ("weak") keys are refused: a signature
/// under one can be forged without the private key.
fn parse_public_key(text: &str) -> Result<VerifyingKey, &'static str> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|_| "public_key is not 64 hex digits (32 bytes)")?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "public_key is not a valid Ed25519 public key")?;
    if key.is_weak() {
        return Err("public_key is a weak (small-order) Ed25519 key");
    }
    Ok(key)
}

/// A device's anti-replay window: `highest` is the highest counter accepted (0: none yet), and
/// bit `i` of `seen` says whether counter `highest - i` was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ReplayWindow {
    highest: u64,
    seen: u64,
}

impl ReplayWindow {
    /// Whether `counter` may be accepted; changes nothing (the signature is checked after this,
    /// and only a verified request may move the window).
    fn check(self, counter: u64) -> Result<(), Refusal> {
        if counter == 0 {
            return Err(Refusal::CounterTooOld);
        }
        let Some(behind) = self.highest.checked_sub(counter) else {
            return Ok(());
        };
        if behind >= DEVICE_COUNTER_WINDOW {
            return Err(Refusal::CounterTooOld);
        }
        if self.seen >> behind & 1 == 1 {
            return Err(Refusal::Replayed);
        }
        Ok(())
    }

    /// Records `counter` as used (after [`ReplayWindow::check`] allowed it).
    fn accept(&mut self, counter: u64) {
        match counter.checked_sub(self.highest) {
            Some(ahead @ 1..) => {
                self.seen = match u32::try_from(ahead) {
                    Ok(shift) if u64::from(shift) < DEVICE_COUNTER_WINDOW => self.seen << shift | 1,
                    _ => 1,
                };
                self.highest = counter;
            }
            _ => {
                let behind = self.highest.saturating_sub(counter);
                let bit = u32::try_from(behind).ok().and_then(|b| 1u64.checked_shl(b));
                self.seen |= bit.unwrap_or(0);
            }
        }
    }
}

/// A shard's anti-replay windows, by merchant then device (see the module docs).
#[derive(Debug, Default)]
pub struct DeviceCounters {
    windows: HashMap<Bytes, HashMap<Bytes, ReplayWindow>>,
    /// Windows held, over all merchants (at most [`DEVICES_MAX`]).
    len: usize,
    /// The signed bytes of the request being checked, kept to reuse its allocation.
    signed: BytesMut,
}

impl DeviceCounters {
    /// Checks `req`'s device signature: `None` when it may proceed (and its counter is now
    /// used), else the INVALID_SIGNATURE answer to send. INQUIRY is not checked: it changes
    /// nothing, and a network relaying a device's requests asks with it after a lost answer.
    pub fn refuse(
        &mut self,
        registry: &DeviceRegistry,
        req: &TxnRequest,
        now_ms: u64,
    ) -> Option<Box<TxnAnswer>> {
        let refusal = self.check(registry, req).err()?;
        let mut answer = TxnAnswer::echo(req, ResultCode::InvalidSignature);
        answer.received_at_ms = Some(now_ms);
        answer.answered_at_ms = Some(now_ms);
        answer.message = Some(Bytes::from_static(refusal.message().as_bytes()));
        Some(Box::new(answer))
    }

    /// Marks the counter of a replayed request used: it passed [`DeviceCounters::check`] when it
    /// was journaled (the registry may have changed since; replay must not refuse it now).
    pub fn replayed(&mut self, req: &TxnRequest) {
        if let Some(device) = &req.device_signature {
            self.accept(&req.merchant_id, &device.device_id, device.counter);
        }
    }

    /// The rules of the module docs, in order: signature present or not needed, device known,
    /// counter in the window and unused, signature valid; then the counter is used.
    pub fn check(&mut self, registry: &DeviceRegistry, req: &TxnRequest) -> Result<(), Refusal> {
        let merchant = registry.merchants.get(&req.merchant_id[..]);
        let Some(device) = &req.device_signature else {
            // Stripping the signature must not bypass it where it is required.
            let token = matches!(req.payment, Some(PaymentMethod::WalletToken(_)));
            return match token || merchant.is_some_and(|m| m.required) {
                true => Err(Refusal::Missing),
                false => Ok(()),
            };
        };
        let key = merchant
            .and_then(|m| m.keys.get(&device.device_id[..]))
            .ok_or(Refusal::UnknownDevice)?;
        let window = self
            .windows
            .get(&req.merchant_id[..])
            .and_then(|devices| devices.get(&device.device_id[..]))
            .copied();
        window.unwrap_or_default().check(device.counter)?;
        if window.is_none() && self.len >= DEVICES_MAX {
            return Err(Refusal::TooManyDevices);
        }
        let signature =
            Signature::from_slice(&device.signature).map_err(|_| Refusal::BadSignature)?;
        self.signed.clear();
        req.device_signed_bytes(&mut self.signed);
        // Strict: no non-canonical encodings or small-order points (RFC 8032 section 5.1.7
        // plus the checks that make a signature unmalleable).
        key.verify_strict(&self.signed, &signature)
            .map_err(|_| Refusal::BadSignature)?;
        self.accept(&req.merchant_id, &device.device_id, device.counter);
        Ok(())
    }

    fn accept(&mut self, merchant_id: &[u8], device_id: &[u8], counter: u64) {
        // Copies: the ids are slices of the client's read buffer.
        let devices = match self.windows.get_mut(merchant_id) {
            Some(devices) => devices,
            None => self
                .windows
                .entry(Bytes::copy_from_slice(merchant_id))
                .or_default(),
        };
        let window = match devices.get_mut(device_id) {
            Some(window) => window,
            None => {
                self.len += 1;
                devices
                    .entry(Bytes::copy_from_slice(device_id))
                    .or_default()
            }
        };
        window.accept(counter);
    }

    /// Windows held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no device has signed an accepted request.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes [`DeviceCounters::encode`] writes, about.
    pub(crate) fn encoded_len_estimate(&self) -> usize {
        4 + self.len * (4 + 16 + 4 + DEVICE_ID_BYTES_MAX + 16)
    }

    /// Appends the windows for the shard snapshot: `count u32 × (merchant bytes, device bytes,
    /// highest u64, seen u64)`, `bytes` = `u32 length | data`.
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.len as u32);
        for (merchant, devices) in &self.windows {
            for (device, window) in devices {
                for id in [merchant, device] {
                    out.put_u32(id.len() as u32);
                    out.put_slice(id);
                }
                out.put_u64(window.highest);
                out.put_u64(window.seen);
            }
        }
    }

    /// Reads what [`DeviceCounters::encode`] wrote from the front of `p`, advancing it. `None`:
    /// truncated, more than [`DEVICES_MAX`] windows, or a device twice.
    pub(crate) fn decode(p: &mut &[u8]) -> Option<DeviceCounters> {
        let mut counters = DeviceCounters::default();
        let count = usize::try_from(take_u32(p)?).ok()?;
        if count > DEVICES_MAX {
            return None;
        }
        for _ in 0..count {
            let merchant = take_bytes(p)?;
            let device = take_bytes(p)?;
            let window = ReplayWindow {
                highest: take_u64(p)?,
                seen: take_u64(p)?,
            };
            let devices = counters.windows.entry(merchant).or_default();
            if devices.insert(device, window).is_some() {
                return None;
            }
            counters.len += 1;
        }
        Some(counters)
    }
}

fn take_u32(p: &mut &[u8]) -> Option<u32> {
    let (head, rest) = p.split_first_chunk::<4>()?;
    *p = rest;
    Some(u32::from_be_bytes(*head))
}

fn take_u64(p: &mut &[u8]) -> Option<u64> {
    let (head, rest) = p.split_first_chunk::<8>()?;
    *p = rest;
    Some(u64::from_be_bytes(*head))
}

fn take_bytes(p: &mut &[u8]) -> Option<Bytes> {
    let len = usize::try_from(take_u32(p)?).ok()?;
    let (head, rest) = (p.get(..len)?, p.get(len..)?);
    *p = rest;
    Some(Bytes::copy_from_slice(head))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn window_after(counters: &[u64]) -> ReplayWindow {
        let mut w = ReplayWindow::default();
        for &c in counters {
            w.check(c).unwrap();
            w.accept(c);
        }
        w
    }

    #[test]
    fn the_window_accepts_each_counter_once_in_any_order_within_it() {
        let w = window_after(&[10, 8, 9, 3]);
        assert_eq!(w.highest, 10);
        for used in [10, 9, 8, 3] {
            assert_eq!(w.check(used), Err(Refusal::Replayed), "{used}");
        }
        for fresh in [4, 5, 6, 7, 11, u64::MAX] {
            assert_eq!(w.check(fresh), Ok(()), "{fresh}");
        }
        assert_eq!(w.check(0), Err(Refusal::CounterTooOld));
    }

    #[test]
    fn the_window_slides_and_forgets_nothing_it_can_still_accept() {
        let w = window_after(&[1, 100]);
        // 100 - 64 = 36 and below are out of the window; 37..99 were never used.
        assert_eq!(w.check(36), Err(Refusal::CounterTooOld));
        assert_eq!(w.check(1), Err(Refusal::CounterTooOld));
        assert_eq!(w.check(37), Ok(()));
        let w = window_after(&[37, 100]);
        assert_eq!(
            w.check(37),
            Err(Refusal::Replayed),
            "the edge of the window"
        );
        // A jump by exactly the window's width, and by more, keeps only the new counter.
        let w = window_after(&[5, 5 + DEVICE_COUNTER_WINDOW]);
        assert_eq!(w.seen, 1);
        let w = window_after(&[5, 6, u64::MAX]);
        assert_eq!((w.highest, w.seen), (u64::MAX, 1));
        assert_eq!(w.check(u64::MAX), Err(Refusal::Replayed));
    }

    #[test]
    fn the_window_matches_a_set_of_used_counters() {
        // A model: the used counters as a set; a counter is acceptable when it is unused and
        // above highest - window.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut w = ReplayWindow::default();
        let mut used = std::collections::BTreeSet::new();
        let mut highest = 0u64;
        for _ in 0..20_000 {
            let c = (highest + 8).saturating_sub(next() % 80);
            let expected = if c == 0
                || (highest >= DEVICE_COUNTER_WINDOW && c <= highest - DEVICE_COUNTER_WINDOW)
            {
                Err(Refusal::CounterTooOld)
            } else if used.contains(&c) {
                Err(Refusal::Replayed)
            } else {
                Ok(())
            };
            assert_eq!(w.check(c), expected, "counter {c}, highest {highest}");
            if expected.is_ok() {
                w.accept(c);
                used.insert(c);
                highest = highest.max(c);
            }
        }
    }

    #[test]
    fn windows_round_trip_through_their_encoding() {
        let mut counters = DeviceCounters::default();
        counters.accept(b"M1", b"phone-1", 5);
        counters.accept(b"M1", b"phone-1", 3);
        counters.accept(b"M1", b"phone-2", 1);
        counters.accept(b"M2", b"phone-1", 9);
        let mut out = BytesMut::new();
        counters.encode(&mut out);
        out.put_u8(0xEE);
        let mut p = &out[..];
        let back = DeviceCounters::decode(&mut p).unwrap();
        assert_eq!(p, [0xEE], "reads its own section only");
        assert_eq!(back.len(), 3);
        assert_eq!(back.windows, counters.windows);
        for cut in 0..out.len() - 1 {
            assert!(DeviceCounters::decode(&mut &out[..cut]).is_none(), "{cut}");
        }
    }
}
