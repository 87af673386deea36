//! What a shard writes to the journal, and reads back at recovery: its inputs. The shard core is
//! deterministic given its inputs and their times, so replaying the journaled requests and upstream
//! outcomes in order rebuilds every order, amount and idempotency record, and reproduces every
//! answer given. Inquiries change nothing and are not journaled.
//!
//! Record payloads (all integers big-endian):
//! - [`RECORD_REQUEST_NETWORK`]: `key_id u32 | nonce [12] | ChaCha20-Poly1305(now_ms u64 | msg_type
//!   u8 | network length u8 | network id | PayMesh body of the request, CVV removed)`. Requests
//!   carry card numbers, so they are encrypted at rest; the key id lets keys rotate. The CVV is
//!   never written anywhere. The network is the one that sent the request: replay records it as
//!   the creator of the orders the request makes.
//! - [`RECORD_REQUEST`]: the same without the network, as builds before networks owned orders
//!   wrote it; still read (the orders it makes have no recorded creator).
//! - [`RECORD_UPSTREAM`]: `now_ms u64 | op_id u64 | outcome` (no card data, written in clear).
//! - [`RECORD_META`]: `format u8 | shards u16`, written once when a journal is created: replay
//!   routes by merchant hash, so the shard count of a journal is fixed. `format` is the version of
//!   the record payloads after it ([`META_FORMAT`]). A build that writes records differently
//!   bumps it, reads the older formats too, and journals a META record with its own format
//!   before its first record; records after a checkpoint with no META after it are in the
//!   format that checkpoint's version implies (`PMCKPT01`: format 1, `PMCKPT02`: format 2,
//!   `PMCKPT03`: format 3). A format newer than this build knows is refused
//!   ([`MeshError::NewerFormat`]), never guessed at. Format 2 writes its request records as
//!   format 1 did, with two more optional body fields (`installment_months`, `final_capture`),
//!   but its records mean something else: the shard handles them by other rules (several
//!   partial captures, failed attempts kept and attempted again), so format 1's records are
//!   replayed by format 1's rules ([`crate::core::shard::ShardCore::set_record_format`]) and a
//!   format-1 build refuses a format-2 journal rather than misread it. Format 3 has format 2's
//!   payloads and rules, but the upstream messages a replayed request or outcome makes get the
//!   STANs and terminal ids of the shards' per-terminal books (`core::shard::stans`); records of
//!   formats 1 and 2 replay with the STANs their builds sent (`upstream::stan_for`, the host's
//!   terminal), so that a reversal still names what was sent.
//! - [`RECORD_MARK`]: `shard u16 | round u64`, where a shard took its checkpoint snapshot.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use paymesh_codecs::body::{FieldWriter, Fields};
use paymesh_codecs::message::{PaymentMethod, TxnKind, TxnRequest};
use paymesh_codecs::types::ResultCode;

use super::upstream::{OriginalRef, UpstreamOutcome, UpstreamResult};
use crate::error::MeshError;

/// A client request that reached a shard.
pub const RECORD_REQUEST: u8 = 1;
/// An upstream outcome that reached a shard.
pub const RECORD_UPSTREAM: u8 = 2;
/// The journal's shape (shard count).
pub const RECORD_META: u8 = 3;
/// A shard took its snapshot here (see [`crate::core::recovery`]).
pub const RECORD_MARK: u8 = 4;
/// A client request that reached a shard, with the network that sent it (written now).
pub const RECORD_REQUEST_NETWORK: u8 = 5;
/// A shard switched to a version of the business settings here ([`crate::core::versions`]).
pub const RECORD_SETTINGS: u8 = 6;

/// Longest network id a request record holds (PROTOCOL.md's `network_id` is 1..32 bytes).
pub const NETWORK_ID_BYTES_MAX: usize = 32;

/// The record format this build writes and the newest it reads (it reads every older one; see
/// the module documentation for what each format means).
pub const META_FORMAT: u8 = 3;
const NONCE_BYTES: usize = 12;

/// The journal encryption key (32 bytes) and its id. `Debug` never shows the key.
#[derive(Clone)]
pub struct JournalKey {
    id: u32,
    cipher: ChaCha20Poly1305,
    nonce_prefix: [u8; 4],
}

impl std::fmt::Debug for JournalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JournalKey(id {}, ***)", self.id)
    }
}

impl JournalKey {
    /// A key with its id. `nonce_prefix` must differ between processes using the same key (take it
    /// from the OS random source); with a per-record counter it makes every nonce unique.
    pub fn new(id: u32, key: &[u8; 32], nonce_prefix: [u8; 4]) -> Self {
        Self {
            id,
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
            nonce_prefix,
        }
    }

    /// The key's id, stored with every ciphertext.
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// Encodes the META record.
pub fn encode_meta(shards: u16) -> Bytes {
    let mut b = BytesMut::with_capacity(3);
    b.put_u8(META_FORMAT);
    b.put_u16(shards);
    b.freeze()
}

/// Decodes the META record: (record format, shard count).
pub fn decode_meta(mut p: &[u8]) -> Result<(u8, u16), MeshError> {
    // The format comes first so that a newer one is named as such, whatever its length.
    match p.first() {
        Some(&format) if format > META_FORMAT => {
            return Err(MeshError::NewerFormat {
                what: "journal record",
                found: u16::from(format),
                known: u16::from(META_FORMAT),
            });
        }
        _ => {}
    }
    if p.len() != 3 {
        return Err(MeshError::Journal("malformed journal meta record".into()));
    }
    let format = p.get_u8();
    if !(1..=META_FORMAT).contains(&format) {
        return Err(MeshError::Journal("malformed journal meta record".into()));
    }
    Ok((format, p.get_u16()))
}

/// Encodes a MARK record: the shard and the checkpoint round.
pub fn encode_mark(shard: u16, round: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(10);
    b.put_u16(shard);
    b.put_u64(round);
    b.freeze()
}

/// Decodes a MARK record: (shard, round).
pub fn decode_mark(mut p: &[u8]) -> Result<(u16, u64), MeshError> {
    if p.len() != 10 {
        return Err(MeshError::Journal("malformed mark record".into()));
    }
    Ok((p.get_u16(), p.get_u64()))
}

/// Encodes a [`RECORD_REQUEST_NETWORK`] record of `req` from `network`. `counter` must be unique
/// per record for this key and prefix.
pub fn encode_request(
    key: &JournalKey,
    counter: u64,
    now_ms: u64,
    network: &[u8],
    req: &TxnRequest,
) -> Result<Bytes, MeshError> {
    let network_len = u8::try_from(network.len())
        .ok()
        .filter(|n| usize::from(*n) <= NETWORK_ID_BYTES_MAX)
        .ok_or_else(|| MeshError::Journal("network id too long for a request record".into()))?;
    let mut clear = BytesMut::with_capacity(256);
    clear.put_u64(now_ms);
    clear.put_u8(req.kind.request_type());
    clear.put_u8(network_len);
    clear.put_slice(network);
    // The CVV was needed for this one authorization only: it is never written anywhere.
    let stripped;
    let req = match &req.payment {
        Some(PaymentMethod::Card {
            cvv: Some(_),
            pan,
            expiry,
        }) => {
            let mut r = req.clone();
            r.payment = Some(PaymentMethod::Card {
                pan: pan.clone(),
                expiry: expiry.clone(),
                cvv: None,
            });
            stripped = r;
            &stripped
        }
        _ => req,
    };
    req.encode_body(&mut FieldWriter::new(&mut clear));
    seal(key, counter, &clear)
}

/// Bytes of the Poly1305 tag after the ciphertext.
const TAG_BYTES: usize = 16;

/// Length of [`seal`]'s output for `clear_len` bytes.
pub fn sealed_len(clear_len: usize) -> usize {
    4 + NONCE_BYTES + clear_len + TAG_BYTES
}

/// Encrypts `clear` as `key_id u32 | nonce [12] | ChaCha20-Poly1305 ciphertext and tag`.
/// `counter` must be unique per call for this key and prefix.
pub fn seal(key: &JournalKey, counter: u64, clear: &[u8]) -> Result<Bytes, MeshError> {
    let mut out = BytesMut::with_capacity(sealed_len(clear.len()));
    seal_into(key, counter, clear, &mut out)?;
    Ok(out.freeze())
}

/// [`seal`], appended to `out` and encrypted where it lies (no copy of the data besides the
/// one into `out`).
pub fn seal_into(
    key: &JournalKey,
    counter: u64,
    clear: &[u8],
    out: &mut BytesMut,
) -> Result<(), MeshError> {
    let mut nonce = [0u8; NONCE_BYTES];
    nonce[..4].copy_from_slice(&key.nonce_prefix);
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    out.reserve(sealed_len(clear.len()));
    out.put_u32(key.id);
    out.put_slice(&nonce);
    let start = out.len();
    out.put_slice(clear);
    let data = out
        .get_mut(start..)
        .ok_or_else(|| MeshError::Journal("encryption failed".into()))?;
    let tag = key
        .cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), b"", data)
        .map_err(|_| MeshError::Journal("encryption failed".into()))?;
    out.put_slice(tag.as_slice());
    Ok(())
}

/// Decrypts what [`seal`] produced, with the key its id names.
pub fn unseal(keys: &[JournalKey], mut p: &[u8]) -> Result<Vec<u8>, MeshError> {
    let bad = |why: &str| MeshError::Journal(format!("sealed data: {why}"));
    if p.len() < 4 + NONCE_BYTES {
        return Err(bad("too short"));
    }
    let key_id = p.get_u32();
    let key = keys
        .iter()
        .find(|k| k.id == key_id)
        .ok_or_else(|| bad(&format!("no key with id {key_id}")))?;
    let (nonce, sealed) = p.split_at(NONCE_BYTES);
    key.cipher
        .decrypt(Nonce::from_slice(nonce), sealed)
        .map_err(|_| bad("authentication failed (wrong key or damaged data)"))
}

/// A request read back from the journal.
#[derive(Debug)]
pub struct JournaledRequest {
    /// When the shard took it, unix ms.
    pub now_ms: u64,
    /// The network that sent it; `None` in a [`RECORD_REQUEST`] record (not recorded).
    pub network: Option<Bytes>,
    /// The request, CVV removed.
    pub request: TxnRequest,
}

/// Decodes a request record of type `kind` ([`RECORD_REQUEST_NETWORK`] or [`RECORD_REQUEST`]).
pub fn decode_request(
    keys: &[JournalKey],
    kind: u8,
    p: &[u8],
) -> Result<JournaledRequest, MeshError> {
    let bad = |why: &str| MeshError::Journal(format!("request record: {why}"));
    let clear = unseal(keys, p)?;
    let mut c = clear.as_slice();
    if c.len() < 9 {
        return Err(bad("too short"));
    }
    let now_ms = c.get_u64();
    let msg_type = c.get_u8();
    let network = match kind {
        RECORD_REQUEST_NETWORK => Some(get_short(&mut c).ok_or_else(|| bad("truncated network"))?),
        RECORD_REQUEST => None,
        _ => return Err(bad("not a request record")),
    };
    let kind = TxnKind::from_request_type(msg_type).ok_or_else(|| bad("not a request"))?;
    let body = Bytes::copy_from_slice(c);
    // Read under the rules the request was accepted by (a journal holds what an earlier build
    // took): today's stricter checks would refuse to replay what was acknowledged.
    let request = Fields::scan(&body)
        .and_then(|f| TxnRequest::decode_recorded(kind, &f))
        .map_err(|e| bad(&e.to_string()))?;
    Ok(JournaledRequest {
        now_ms,
        network,
        request,
    })
}

const OUTCOME_ANSWERED: u8 = 1;
const OUTCOME_TIMEOUT: u8 = 2;
const OUTCOME_NOT_SENT: u8 = 3;
const OUTCOME_UNKNOWN: u8 = 4;

fn put_short(b: &mut BytesMut, v: &[u8]) {
    let len = v.len().min(255);
    b.put_u8(len as u8);
    b.put_slice(v.get(..len).unwrap_or_default());
}

fn get_short(p: &mut &[u8]) -> Option<Bytes> {
    let len = usize::from(*p.first()?);
    let v = p.get(1..1 + len)?;
    let out = Bytes::copy_from_slice(v);
    p.advance(1 + len);
    Some(out)
}

fn put_sent(b: &mut BytesMut, s: &OriginalRef) {
    b.put_u16(s.mti);
    b.put_u32(s.stan);
    put_short(b, &s.transmitted);
    put_short(b, &s.rrn);
}

fn get_sent(p: &mut &[u8]) -> Option<OriginalRef> {
    if p.len() < 6 {
        return None;
    }
    let mti = p.get_u16();
    let stan = p.get_u32();
    Some(OriginalRef {
        mti,
        stan,
        transmitted: get_short(p)?,
        rrn: get_short(p)?,
        terminal: Bytes::new(),
    })
}

/// Encodes an upstream outcome record.
pub fn encode_upstream(now_ms: u64, r: &UpstreamResult) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_u64(now_ms);
    b.put_u64(r.op_id);
    match &r.outcome {
        UpstreamOutcome::Answered {
            result,
            response_code,
            approval_code,
            sent,
            balance,
        } => {
            b.put_u8(OUTCOME_ANSWERED);
            b.put_u16(result.as_u16());
            put_short(&mut b, response_code);
            put_short(&mut b, approval_code);
            put_sent(&mut b, sent);
            match balance {
                Some(v) => {
                    b.put_u8(1);
                    b.put_u64(*v);
                }
                None => b.put_u8(0),
            }
        }
        UpstreamOutcome::Timeout { sent } => {
            b.put_u8(OUTCOME_TIMEOUT);
            put_sent(&mut b, sent);
        }
        UpstreamOutcome::NotSent { result } => {
            b.put_u8(OUTCOME_NOT_SENT);
            b.put_u16(result.as_u16());
        }
        UpstreamOutcome::Unknown => b.put_u8(OUTCOME_UNKNOWN),
    }
    b.freeze()
}

/// Decodes an upstream outcome record: (now_ms, result).
pub fn decode_upstream(p: &[u8]) -> Result<(u64, UpstreamResult), MeshError> {
    decode_upstream_inner(p).ok_or_else(|| MeshError::Journal("malformed upstream record".into()))
}

fn decode_upstream_inner(mut p: &[u8]) -> Option<(u64, UpstreamResult)> {
    if p.len() < 17 {
        return None;
    }
    let now_ms = p.get_u64();
    let op_id = p.get_u64();
    let outcome = match p.get_u8() {
        OUTCOME_ANSWERED => {
            if p.len() < 2 {
                return None;
            }
            let result = ResultCode::from_u16(p.get_u16());
            let response_code = get_short(&mut p)?;
            let approval_code = get_short(&mut p)?;
            let sent = get_sent(&mut p)?;
            let balance = match *p.first()? {
                0 => None,
                _ => {
                    p.advance(1);
                    if p.len() < 8 {
                        return None;
                    }
                    Some(p.get_u64())
                }
            };
            UpstreamOutcome::Answered {
                result,
                response_code,
                approval_code,
                sent,
                balance,
            }
        }
        OUTCOME_TIMEOUT => UpstreamOutcome::Timeout {
            sent: get_sent(&mut p)?,
        },
        OUTCOME_NOT_SENT => {
            if p.len() < 2 {
                return None;
            }
            UpstreamOutcome::NotSent {
                result: ResultCode::from_u16(p.get_u16()),
            }
        }
        OUTCOME_UNKNOWN => UpstreamOutcome::Unknown,
        _ => return None,
    };
    Some((now_ms, UpstreamResult { op_id, outcome }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use paymesh_codecs::message::TxnKind;
    use paymesh_codecs::types::{Pan, Secret};

    fn key(id: u32) -> JournalKey {
        JournalKey::new(id, &[7u8; 32], [1, 2, 3, 4])
    }

    #[test]
    fn requests_round_trip_encrypted_without_cvv() {
        let mut r = TxnRequest::new(
            TxnKind::Authorize,
            Bytes::from_static(b"M1"),
            Bytes::from_static(b"O1"),
        );
        r.amount = Some(1234);
        r.currency = Some(410);
        r.payment = Some(PaymentMethod::Card {
            pan: Pan::new(Bytes::from_static(b"4111111111111111")).unwrap(),
            expiry: Bytes::from_static(b"3012"),
            cvv: Some(Secret::new(Bytes::from_static(b"987"))),
        });
        let rec = encode_request(&key(9), 1, 42, b"VAN-A", &r).unwrap();
        let window = |needle: &[u8]| rec.windows(needle.len()).any(|w| w == needle);
        assert!(
            !window(b"4111111111111111") && !window(b"987"),
            "card data in clear"
        );
        let got = decode_request(&[key(1), key(9)], RECORD_REQUEST_NETWORK, &rec).unwrap();
        assert_eq!(got.now_ms, 42);
        assert_eq!(got.network.as_deref(), Some(&b"VAN-A"[..]));
        let back = got.request;
        assert_eq!(back.amount, Some(1234));
        match back.payment {
            Some(PaymentMethod::Card { pan, cvv, .. }) => {
                assert_eq!(pan.digits(), b"4111111111111111");
                assert!(cvv.is_none(), "the CVV must never be journaled");
            }
            other => panic!("{other:?}"),
        }
        let too_long = [b'N'; NETWORK_ID_BYTES_MAX + 1];
        assert!(encode_request(&key(9), 2, 42, &too_long, &r).is_err());
        assert!(
            decode_request(&[key(1)], RECORD_REQUEST_NETWORK, &rec).is_err(),
            "unknown key id"
        );
        let mut damaged = rec.to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(
            decode_request(&[key(9)], RECORD_REQUEST_NETWORK, &damaged).is_err(),
            "tampering is detected"
        );
    }

    #[test]
    fn what_an_older_build_journaled_is_read_under_its_rules() {
        // That build took an amount and a currency of 0 and recorded no network.
        let mut r = TxnRequest::new(
            TxnKind::Authorize,
            Bytes::from_static(b"M1"),
            Bytes::from_static(b"O0"),
        );
        r.amount = Some(0);
        r.currency = Some(0);
        r.payment = Some(PaymentMethod::WalletToken(Bytes::from_static(b"tok0")));
        let mut clear = BytesMut::new();
        clear.put_u64(42);
        clear.put_u8(r.kind.request_type());
        r.encode_body(&mut FieldWriter::new(&mut clear));
        let rec = seal(&key(9), 7, &clear).unwrap();
        let got = decode_request(&[key(9)], RECORD_REQUEST, &rec).unwrap();
        assert_eq!(got.network, None);
        assert_eq!(
            (got.request.amount, got.request.currency),
            (Some(0), Some(0))
        );
    }

    #[test]
    fn upstream_outcomes_round_trip() {
        let sent = OriginalRef {
            mti: 100,
            stan: 42,
            transmitted: Bytes::from_static(b"1126213956"),
            rrn: Bytes::from_static(b"633021000042"),
            terminal: bytes::Bytes::new(),
        };
        for outcome in [
            UpstreamOutcome::Answered {
                result: ResultCode::Approved,
                response_code: Bytes::from_static(b"00"),
                approval_code: Bytes::from_static(b"A1B2C3"),
                sent: sent.clone(),
                balance: Some(77),
            },
            UpstreamOutcome::Answered {
                result: ResultCode::InsufficientFunds,
                response_code: Bytes::from_static(b"51"),
                approval_code: Bytes::new(),
                sent: sent.clone(),
                balance: None,
            },
            UpstreamOutcome::Timeout { sent },
            UpstreamOutcome::NotSent {
                result: ResultCode::Busy,
            },
            UpstreamOutcome::Unknown,
        ] {
            let r = UpstreamResult { op_id: 99, outcome };
            let (now, back) = decode_upstream(&encode_upstream(5, &r)).unwrap();
            assert_eq!(now, 5);
            assert_eq!(format!("{:?}", back), format!("{:?}", r));
        }
        assert!(decode_upstream(b"short").is_err());
        assert_eq!(decode_meta(&encode_meta(3)).unwrap(), (META_FORMAT, 3));
        // The older formats are still read, and said.
        assert_eq!(decode_meta(&[1, 0, 3]).unwrap(), (1, 3));
        assert_eq!(decode_meta(&[2, 0, 2]).unwrap(), (2, 2));
        assert!(decode_meta(&[0, 0, 2]).is_err(), "there is no format 0");
    }

    #[test]
    fn a_newer_record_format_is_refused_by_name() {
        let mut meta = encode_meta(2).to_vec();
        meta[0] = META_FORMAT + 1;
        let error = decode_meta(&meta).unwrap_err();
        assert!(
            matches!(
                error,
                MeshError::NewerFormat { what: "journal record", found, known }
                    if found == u16::from(META_FORMAT) + 1 && known == u16::from(META_FORMAT)
            ),
            "{error}"
        );
        assert!(error.to_string().contains("newer PayMesh build"), "{error}");
        // A newer format may also have another length: still named as newer.
        meta.push(0);
        assert!(matches!(
            decode_meta(&meta),
            Err(MeshError::NewerFormat { .. })
        ));
        assert!(matches!(
            decode_meta(&[0, 0, 2]),
            Err(MeshError::Journal(_))
        ));
    }
}
