//! One request in, one answer out, sans-IO: what a host does with a decoded message, shared by the
//! TCP server and by simulations that carry bytes themselves.

use bytes::{BufMut, Bytes, BytesMut};
use paymesh_codecs::iso8583::{IsoMessage, Mti, field};
use rand::Rng;

use crate::rules::{Book, Decision, HostRules, ResponseCode, SimRequest, balance_field};

/// Fields a host copies from the request into its answer: processing code, amount, transmission
/// time, STAN, local time and date, acquirer id, RRN, terminal id, merchant id, currency, network
/// management code, original data elements. Not the PAN: hosts need not send it back.
pub const ECHOED_FIELDS: [u8; 13] = [3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70, 90];
/// Field 54, additional amounts (the balance of a balance inquiry).
const ADDITIONAL_AMOUNTS: u8 = 54;
/// Random bytes after the undecodable start of a garbage frame.
const GARBAGE_TAIL_BYTES_MAX: usize = 32;

/// A processed request.
#[derive(Debug, Clone)]
pub struct Processed {
    /// The request as the rules saw it.
    pub request: SimRequest,
    /// What the rules decided.
    pub decision: Decision,
    /// The answer, in the request's profile.
    pub answer: IsoMessage,
}

/// Decides `msg` with `rules` and `book` and builds its answer. `None` for a message that is itself
/// an answer (an odd function digit, e.g. `0810`): hosts do not answer answers. A request whose
/// fields the rules cannot read is answered "30" (format error) without touching the book.
pub fn process(
    rules: &HostRules,
    book: &mut Book,
    today_yymm: u16,
    msg: &IsoMessage,
) -> Option<Processed> {
    let response_mti = msg.mti().response_mti()?;
    let (request, decision) = match SimRequest::from_iso(msg) {
        Ok(request) => {
            let decision = rules.decide(book, today_yymm, &request);
            (request, decision)
        }
        Err(_) => (
            SimRequest {
                mti: msg.mti().number(),
                ..SimRequest::default()
            },
            Decision::code(ResponseCode::FORMAT_ERROR),
        ),
    };
    let answer = answer(msg, response_mti, &decision, request.currency);
    Some(Processed {
        request,
        decision,
        answer,
    })
}

/// The answer to `request`: type `mti`, the [`ECHOED_FIELDS`] present in the request, field 38
/// when approved, 39 always, 54 with a balance.
pub fn answer(request: &IsoMessage, mti: Mti, decision: &Decision, currency: u16) -> IsoMessage {
    let mut answer = IsoMessage::new(request.profile(), mti);
    // The values below were checked against this same profile when the request was decoded, or
    // are digits and letters that every profile accepts in these fields: `set` cannot fail, and
    // a field it refused would only be missing from the answer.
    for (number, value) in request
        .fields()
        .filter(|(number, _)| ECHOED_FIELDS.contains(number))
    {
        let _ = answer.set(number, value.clone());
    }
    if let Some(code) = decision.approval_code {
        let _ = answer.set(field::APPROVAL_CODE, Bytes::copy_from_slice(&code));
    }
    let _ = answer.set(
        field::RESPONSE_CODE,
        Bytes::copy_from_slice(&decision.response_code),
    );
    if let Some(balance) = decision.balance {
        let _ = answer.set(ADDITIONAL_AMOUNTS, balance_field(balance, currency));
    }
    answer
}

/// A message body that no profile decodes: `0xFF 0xFF` is neither ASCII digits nor BCD, so the MTI
/// is invalid, followed by up to [`GARBAGE_TAIL_BYTES_MAX`] random bytes.
pub fn garbage<R: Rng + ?Sized>(rng: &mut R) -> Bytes {
    let tail = rng.gen_range(0..=GARBAGE_TAIL_BYTES_MAX);
    let mut body = BytesMut::with_capacity(2 + tail);
    body.put_slice(&[0xff, 0xff]);
    for _ in 0..tail {
        body.put_u8(rng.r#gen());
    }
    body.freeze()
}

#[cfg(test)]
mod tests {
    use paymesh_codecs::iso8583::Profile;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    fn request(profile: &'static Profile, mti: &[u8; 4]) -> IsoMessage {
        let mut m = IsoMessage::new(profile, Mti::from_ascii(mti).unwrap());
        for (f, v) in [
            (2, &b"4111111111111111"[..]),
            (3, b"310000"),
            (4, b"000000000000"),
            (11, b"000042"),
            (14, b"3012"),
            (37, b"612345000042"),
            (41, b"TERM0001"),
            (48, b"ORDER-1"),
            (49, b"410"),
        ] {
            m.set(f, Bytes::copy_from_slice(v)).unwrap();
        }
        m
    }

    #[test]
    fn balance_inquiry_answer() {
        for profile in [Profile::ascii_1987(), Profile::binary_bcd()] {
            let mut book = Book::default();
            let p = process(
                &HostRules::default(),
                &mut book,
                2611,
                &request(profile, b"0100"),
            )
            .unwrap();
            let a = IsoMessage::decode(profile, p.answer.to_bytes()).unwrap();
            assert_eq!(a.mti(), Mti::AUTHORIZATION_RESPONSE);
            assert_eq!(a.get_slice(39), Some(&b"00"[..]));
            assert_eq!(a.get_slice(38), Some(&b"000001"[..]));
            assert_eq!(a.get_slice(54), Some(&b"0002410C001000000000"[..]));
            assert_eq!(a.get_slice(11), Some(&b"000042"[..]));
            assert_eq!(a.get_slice(41), Some(&b"TERM0001"[..]));
            assert_eq!(a.match_key(), request(profile, b"0100").match_key());
            assert!(!a.contains(2) && !a.contains(14) && !a.contains(48));
        }
    }

    #[test]
    fn answers_are_not_answered() {
        let mut book = Book::default();
        let answer = request(Profile::ascii_1987(), b"0110");
        assert!(process(&HostRules::default(), &mut book, 2611, &answer).is_none());
    }

    #[test]
    fn garbage_never_decodes() {
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..200 {
            let body = garbage(&mut rng);
            for profile in [
                Profile::ascii_1987(),
                Profile::binary_bcd(),
                Profile::pyiso_default(),
            ] {
                assert!(IsoMessage::decode(profile, body.clone()).is_err());
            }
        }
    }

    proptest! {
        /// Whatever digits a peer puts in the fields the rules read, the host answers with a
        /// message that encodes and decodes again.
        #[test]
        fn any_request_gets_a_decodable_answer(
            mti in prop::sample::select(vec![&b"0100"[..], b"0200", b"0220", b"0400", b"0420", b"0800", b"0500", b"0110"]),
            fields in prop::collection::vec(
                (prop::sample::select(vec![2u8, 3, 4, 11, 14, 48, 49, 70, 90, 102]), "[0-9]{0,45}"),
                0..10,
            ),
            bcd in any::<bool>(),
        ) {
            let profile = if bcd { Profile::binary_bcd() } else { Profile::ascii_1987() };
            let mut msg = IsoMessage::new(profile, Mti::from_ascii(mti).unwrap());
            for (f, value) in fields {
                // Values the profile refuses are simply left out, as a decoder would refuse them.
                let _ = msg.set(f, Bytes::from(value));
            }
            let mut book = Book::default();
            match process(&HostRules::default(), &mut book, 2611, &msg) {
                None => prop_assert!(msg.mti().response_mti().is_none()),
                Some(p) => {
                    let again = IsoMessage::decode(profile, p.answer.to_bytes()).unwrap();
                    prop_assert_eq!(again.get_slice(39), Some(&p.decision.response_code[..]));
                }
            }
        }
    }
}
