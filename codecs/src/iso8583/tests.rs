//! Unit tests of the message, the typed fields and the error reports.

use bytes::{Bytes, BytesMut};

use super::*;

fn auth_request(profile: &'static Profile) -> IsoMessage {
    let mut m = IsoMessage::new(profile, Mti::AUTHORIZATION_REQUEST);
    m.set_pan(&b"4761739001010010"[..]).unwrap();
    m.set_processing_code(&b"000000"[..]).unwrap();
    m.set_amount(12_345).unwrap();
    m.set_transmission_date_time(TransmissionDateTime {
        month: 11,
        day: 26,
        hour: 14,
        minute: 30,
        second: 15,
    })
    .unwrap();
    m.set_stan(123).unwrap();
    m.set_local_time(LocalTime {
        hour: 14,
        minute: 30,
        second: 15,
    })
    .unwrap();
    m.set_local_date(MonthDay { month: 11, day: 26 }).unwrap();
    m.set_expiry(Expiry {
        year: 28,
        month: 12,
    })
    .unwrap();
    m.set_pos_entry_mode(&b"051"[..]).unwrap();
    m.set_acquirer_id(&b"123456"[..]).unwrap();
    m.set_rrn(&b"633014000123"[..]).unwrap();
    m.set_terminal_id(&b"TERM0001"[..]).unwrap();
    m.set_merchant_id(&b"MERCHANT0000001"[..]).unwrap();
    m.set_currency(410).unwrap();
    m
}

fn encode(m: &IsoMessage) -> Bytes {
    let mut out = BytesMut::new();
    m.encode(m.profile(), &mut out).unwrap();
    out.freeze()
}

#[test]
fn known_ascii_encoding() {
    let m = IsoMessage::new(Profile::ascii_1987(), Mti::FINANCIAL_RESPONSE)
        .with(3, &b"111111"[..])
        .unwrap()
        .with(39, &b"05"[..])
        .unwrap();
    // The example in pyiso8583's `encode` documentation.
    assert_eq!(&encode(&m)[..], b"0210200000000200000011111105");
}

#[test]
fn typed_fields_round_trip_in_every_profile() {
    for profile in [
        Profile::ascii_1987(),
        Profile::pyiso_default(),
        Profile::binary_bcd(),
    ] {
        let m = auth_request(profile);
        let decoded = IsoMessage::decode(profile, encode(&m)).unwrap();
        assert_eq!(decoded, m);
        assert_eq!(decoded.amount().unwrap(), Some(12_345));
        assert_eq!(decoded.stan().unwrap(), Some(123));
        assert_eq!(decoded.currency().unwrap(), Some(410));
        assert_eq!(
            decoded.expiry().unwrap(),
            Some(Expiry {
                year: 28,
                month: 12
            })
        );
        assert_eq!(decoded.local_date().unwrap().unwrap().day, 26);
        assert_eq!(decoded.local_time().unwrap().unwrap().minute, 30);
        assert_eq!(
            decoded.transmission_date_time().unwrap().unwrap().second,
            15
        );
        assert_eq!(decoded.pan().unwrap(), &b"4761739001010010"[..]);
        assert_eq!(decoded.get(3).unwrap(), &b"000000"[..]);
        assert_eq!(decoded.field_count(), 14);
    }
}

#[test]
fn set_get_remove_keep_field_order() {
    let mut m = IsoMessage::new(Profile::ascii_1987(), Mti::NETWORK_REQUEST);
    m.set(70, &b"001"[..]).unwrap();
    m.set(11, &b"000001"[..]).unwrap();
    m.set(7, &b"1126143000"[..]).unwrap();
    m.set(11, &b"000002"[..]).unwrap();
    let order: Vec<u8> = m.fields().map(|(f, _)| f).collect();
    assert_eq!(order, [7, 11, 70]);
    assert_eq!(m.get(11).unwrap(), &b"000002"[..]);
    assert_eq!(m.remove(11).unwrap(), &b"000002"[..]);
    assert_eq!(m.remove(11), None);
    assert!(!m.contains(11) && m.contains(70));
    assert_eq!(m.network_management_code().unwrap(), Some(1));
    // Field 70 needs the secondary bitmap: bit 1 of the primary bitmap is set.
    assert_eq!(&encode(&m)[4..20], b"8200000000000000");
    assert_eq!(m.get(1), None);
    assert_eq!(m.get(0), None);
    assert_eq!(m.get(200), None);
}

#[test]
fn set_validates_against_the_profile() {
    let mut m = IsoMessage::new(Profile::binary_bcd(), Mti::AUTHORIZATION_REQUEST);
    assert_eq!(
        m.set(1, &b"x"[..]),
        Err(IsoError::InvalidFieldNumber { field: 1 })
    );
    assert_eq!(
        m.set(129, &b"x"[..]),
        Err(IsoError::InvalidFieldNumber { field: 129 })
    );
    assert!(matches!(
        m.set(3, &b"12345"[..]),
        Err(IsoError::InvalidLength {
            field: 3,
            length: 5,
            min: 6,
            max: 6,
            ..
        })
    ));
    assert_eq!(
        m.set(3, &b"12a456"[..]),
        Err(IsoError::InvalidCharacter {
            field: 3,
            offset: 2
        })
    );
    assert!(m.set(2, &b"12345678901234567890"[..]).is_err());
    assert!(m.set(41, &b"TERM\n001"[..]).is_err());
    assert!(m.set(35, &b"4761=2812"[..]).is_ok());
    assert!(m.set(35, &b"4761D2812"[..]).is_err());
    assert_eq!(
        m.set_amount(1_000_000_000_000),
        Err(IsoError::ValueOutOfRange { field: 4 })
    );
    assert!(m.set_stan(1_000_000).is_err());
    assert!(
        m.set_expiry(Expiry {
            year: 28,
            month: 13
        })
        .is_err()
    );
    assert_eq!(m.field_count(), 1);
}

#[test]
fn debug_masks_pan_and_hides_secrets() {
    let mut m = auth_request(Profile::pyiso_default());
    m.set(35, &b"4761739001010010=28122011758928889"[..])
        .unwrap();
    m.set(52, &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef][..])
        .unwrap();
    m.set(45, &b"B4761739001010010^DOE/JOHN^2812"[..]).unwrap();
    let shown = format!("{m:?}");
    assert!(shown.contains("476173******0010"), "{shown}");
    assert!(!shown.contains("4761739001010010"), "{shown}");
    assert!(!shown.contains("28122011758928889"), "{shown}");
    assert!(!shown.contains("0123456789ABCDEF"), "{shown}");
    assert!(!shown.contains("DOE/JOHN"), "{shown}");
    assert!(
        shown.contains("TERM0001") && shown.contains("0100"),
        "{shown}"
    );
    let mut short = IsoMessage::new(Profile::ascii_1987(), Mti::AUTHORIZATION_REQUEST);
    short.set(2, &b"12345678"[..]).unwrap();
    assert!(!format!("{short:?}").contains("1234"));
}

fn decode_err(profile: &'static Profile, wire: &[u8]) -> IsoError {
    IsoMessage::decode(profile, Bytes::copy_from_slice(wire)).unwrap_err()
}

#[test]
fn errors_name_field_and_offset() {
    let ascii = Profile::ascii_1987();
    assert_eq!(
        decode_err(ascii, b"01x0"),
        IsoError::InvalidMti { offset: 0 }
    );
    assert_eq!(
        decode_err(ascii, b"0100G000000000000000"),
        IsoError::InvalidBitmap { offset: 4 }
    );
    // Field 3 present, but only 4 of its 6 digits.
    assert_eq!(
        decode_err(ascii, b"0100200000000000000012 456"),
        IsoError::InvalidCharacter {
            field: 3,
            offset: 22
        }
    );
    assert_eq!(
        decode_err(ascii, b"01002000000000000000123"),
        IsoError::Truncated {
            field: 3,
            offset: 20,
            needed: 3
        }
    );
    assert_eq!(
        decode_err(ascii, b"0100200000000000000012345600"),
        IsoError::TrailingBytes {
            offset: 26,
            count: 2
        }
    );
    // Field 2 with an LL prefix of 25 > 19.
    assert_eq!(
        decode_err(ascii, b"0100400000000000000025"),
        IsoError::InvalidLength {
            field: 2,
            offset: 20,
            length: 25,
            min: 0,
            max: 19
        }
    );
    assert_eq!(
        decode_err(ascii, b"01004000000000000000a5"),
        IsoError::InvalidLengthPrefix {
            field: 2,
            offset: 20
        }
    );
    // Field 55 in hex text must have an even character count.
    let mut odd_hex = b"0100".to_vec();
    odd_hex.extend_from_slice(b"0000000000000200003ABC");
    assert_eq!(
        decode_err(ascii, &odd_hex),
        IsoError::InvalidLengthPrefix {
            field: 55,
            offset: 20
        }
    );
    let bcd = Profile::binary_bcd();
    // Field 3 of BCD profile with nibble A.
    assert_eq!(
        decode_err(
            bcd,
            &[0x01, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x0a, 0x00]
        ),
        IsoError::InvalidCharacter {
            field: 3,
            offset: 11
        }
    );
    // Field 22 (3 digits) with a left pad nibble that is not 0.
    let mut bad_pad = vec![0x01, 0x00, 0, 0, 0x04, 0, 0, 0, 0, 0];
    bad_pad.extend_from_slice(&[0x10, 0x51]);
    assert_eq!(
        decode_err(bcd, &bad_pad),
        IsoError::InvalidPadding {
            field: 22,
            offset: 10
        }
    );
    assert_eq!(
        decode_err(bcd, &[0x01, 0xa0]),
        IsoError::InvalidMti { offset: 0 }
    );
}

#[test]
fn undefined_fields_are_rejected() {
    static PARTIAL: std::sync::LazyLock<Profile> = std::sync::LazyLock::new(|| {
        let mut profile = Profile::ascii_1987().clone();
        profile.name = "partial";
        profile.fields[3] = None;
        profile
    });
    let partial: &'static Profile = &PARTIAL;
    assert_eq!(
        decode_err(partial, b"01002000000000000000123456"),
        IsoError::UndefinedField {
            field: 3,
            offset: 20
        }
    );
    let m = IsoMessage::new(Profile::ascii_1987(), Mti::AUTHORIZATION_REQUEST)
        .with(3, &b"000000"[..])
        .unwrap();
    assert!(m.encode(partial, &mut BytesMut::new()).is_err());
}

#[test]
fn translation_checks_the_target_profile_before_writing() {
    // Track data with ';' is fine as ASCII z but the BCD pad is on the right only; a value with
    // a character outside 0-? cannot be BCD at all. Field 48 of 999 characters fits ASCII LLL.
    let m = IsoMessage::new(Profile::ascii_1987(), Mti::AUTHORIZATION_REQUEST)
        .with(48, vec![b'A'; 999])
        .unwrap();
    let mut out = BytesMut::new();
    assert!(m.encode(Profile::binary_bcd(), &mut out).is_ok());
    let mut bcd_only = IsoMessage::new(Profile::binary_bcd(), Mti::AUTHORIZATION_REQUEST);
    bcd_only.set(55, vec![0xaa; 255]).unwrap();
    let mut out = BytesMut::new();
    assert!(bcd_only.encode(Profile::ascii_1987(), &mut out).is_ok());
    assert_eq!(&out[20..23], b"510");
}

#[test]
fn matching_and_responses() {
    let request = auth_request(Profile::binary_bcd());
    let mut response = request.response_template().unwrap();
    assert_eq!(response.mti(), Mti::AUTHORIZATION_RESPONSE);
    response.set_approval_code(&b"A1B2C3"[..]).unwrap();
    response.set_response_code(&b"00"[..]).unwrap();
    assert_eq!(request.match_key(), response.match_key());
    let (stan, terminal, class) = request.match_key().unwrap();
    assert_eq!(
        (stan, &terminal[..], class),
        (123, &b"TERM0001"[..], MtiClass::Authorization)
    );
    assert!(response.response_template().is_none());
    assert!(!response.contains(14) && response.contains(38));

    let mut reversal = IsoMessage::new(Profile::binary_bcd(), Mti::REVERSAL_REQUEST);
    let original = OriginalDataElements::of(&request).unwrap();
    reversal.set_original_data_elements(&original).unwrap();
    assert_eq!(
        reversal.get(90).unwrap(),
        &b"010000012311261430150000012345600000000000"[..]
    );
    let decoded = IsoMessage::decode(Profile::binary_bcd(), encode(&reversal)).unwrap();
    assert_eq!(decoded.original_data_elements().unwrap(), Some(original));
    assert_eq!(decoded.match_key(), None);
}

#[test]
fn values_stay_right_through_gets_and_changes() {
    for profile in [Profile::ascii_1987(), Profile::binary_bcd()] {
        let mut m = IsoMessage::decode(profile, encode(&auth_request(profile))).unwrap();
        // Materialize handles, then change fields so that indexes move.
        assert_eq!(m.terminal_id().unwrap(), &b"TERM0001"[..]);
        m.set(39, &b"00"[..]).unwrap();
        m.set(3, &b"300000"[..]).unwrap();
        m.set(3, &b"310000"[..]).unwrap();
        assert_eq!(m.remove(4).unwrap(), &b"000000012345"[..]);
        assert_eq!(m.remove(3).unwrap(), &b"310000"[..]);
        assert_eq!(m.terminal_id().unwrap(), &b"TERM0001"[..]);
        assert_eq!(m.response_code().unwrap(), &b"00"[..]);
        assert_eq!(m.get_slice(2).unwrap(), b"4761739001010010");
        assert_eq!(m.pan().unwrap(), &b"4761739001010010"[..]);
        let numbers: Vec<u8> = m.fields().map(|(f, _)| f).collect();
        assert_eq!(numbers, [2, 7, 11, 12, 13, 14, 22, 32, 37, 39, 41, 42, 49]);
        let again = IsoMessage::decode(profile, encode(&m)).unwrap();
        assert_eq!(again, m);
        assert_eq!(again.clone(), m);
    }
}
