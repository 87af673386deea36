//! Property tests of the sans-IO core: record decode and the recovery scanner never panic, round
//! trip, treat every truncation as "need more" or a torn tail, and catch every damaged byte.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use paymesh_journal::{
    CorruptReason, JournalError, Lsn, RECORD_HEADER_BYTES, decode_record, encode_record,
    scan_segment,
};
use proptest::prelude::*;

/// 1 to 11 records of random type and payloads below `payload_bytes`.
fn records_up_to(payload_bytes: usize) -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    let record = (
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..payload_bytes),
    );
    prop::collection::vec(record, 1..12)
}

fn records() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    records_up_to(300)
}

/// Encodes `records` with LSNs from `first`; returns the stream and each record's start offset.
fn encode_stream(first: u64, records: &[(u8, Vec<u8>)]) -> (Vec<u8>, Vec<usize>) {
    let mut stream = Vec::new();
    let mut starts = Vec::new();
    for (index, (kind, payload)) in records.iter().enumerate() {
        starts.push(stream.len());
        encode_record(&mut stream, Lsn(first + index as u64), *kind, payload);
    }
    (stream, starts)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(Some((_, used))) = decode_record(&bytes) {
            prop_assert!(used <= bytes.len());
        }
        let bytes = Bytes::from(bytes);
        let scan = scan_segment(&bytes, Lsn(1), Lsn(1));
        prop_assert!(scan.valid_bytes <= bytes.len() as u64);
    }

    #[test]
    fn garbage_after_a_plausible_header_never_panics(
        length in 0_u32..2_000_000,
        rest in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = length.to_be_bytes().to_vec();
        bytes.extend_from_slice(&rest);
        let _ = decode_record(&bytes);
        let _ = scan_segment(&Bytes::from(bytes), Lsn(1), Lsn(1));
    }

    #[test]
    fn records_round_trip(lsn in any::<u64>(), kind in any::<u8>(),
                          payload in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut encoded = Vec::new();
        encode_record(&mut encoded, Lsn(lsn), kind, &payload);
        prop_assert_eq!(encoded.len(), RECORD_HEADER_BYTES + payload.len());
        let (record, used) = decode_record(&encoded).unwrap().unwrap();
        prop_assert_eq!(used, encoded.len());
        prop_assert_eq!(record.lsn, Lsn(lsn));
        prop_assert_eq!(record.kind, kind);
        prop_assert_eq!(&record.payload[..], &payload[..]);
        // Every strict prefix is "need more", never an error.
        for cut in 0..encoded.len() {
            prop_assert!(matches!(decode_record(&encoded[..cut]), Ok(None)), "cut {}", cut);
        }
    }

    #[test]
    fn streams_scan_back_in_order(first in 1_u64..1_000_000, records in records()) {
        let (stream, _) = encode_stream(first, &records);
        let bytes = Bytes::from(stream);
        let scan = scan_segment(&bytes, Lsn(first), Lsn(first));
        prop_assert_eq!(scan.defect, None);
        prop_assert_eq!(scan.valid_bytes, bytes.len() as u64);
        prop_assert_eq!(scan.next_lsn, Lsn(first + records.len() as u64));
        for (index, (record, (kind, payload))) in scan.records.iter().zip(&records).enumerate() {
            prop_assert_eq!(record.lsn, Lsn(first + index as u64));
            prop_assert_eq!(record.kind, *kind);
            prop_assert_eq!(&record.payload[..], &payload[..]);
        }
    }

    #[test]
    fn every_truncation_is_need_more_or_a_torn_tail(records in records_up_to(80)) {
        let (stream, starts) = encode_stream(1, &records);
        let stream = Bytes::from(stream);
        for cut in 0..=stream.len() {
            let scan = scan_segment(&stream.slice(..cut), Lsn(1), Lsn(1));
            let complete = starts.iter().skip(1).chain([&stream.len()]).filter(|end| **end <= cut).count();
            prop_assert_eq!(scan.records.len(), complete, "cut {}", cut);
            match scan.defect {
                None => prop_assert_eq!(scan.valid_bytes, cut as u64),
                Some(defect) => {
                    prop_assert!(defect.is_torn_tail(), "cut {}: {:?}", cut, defect);
                    let truncated = matches!(defect.reason, CorruptReason::Truncated { .. });
                    prop_assert!(truncated, "{:?}", defect.reason);
                    prop_assert_eq!(defect.offset, scan.valid_bytes);
                }
            }
        }
    }

    #[test]
    fn every_damaged_byte_is_caught_at_its_record(
        records in records(),
        position in any::<prop::sample::Index>(),
        mask in 1_u8..=255,
    ) {
        let (mut stream, starts) = encode_stream(1, &records);
        let damaged = position.index(stream.len());
        stream[damaged] ^= mask;
        let record = starts.iter().rposition(|start| *start <= damaged).unwrap();
        let scan = scan_segment(&Bytes::from(stream), Lsn(1), Lsn(1));
        // The records before the damaged one come back intact; nothing after it does.
        prop_assert_eq!(scan.records.len(), record);
        let defect = scan.defect.unwrap();
        prop_assert_eq!(defect.offset, starts[record] as u64);
        // A damaged record with valid records after it is never mistaken for a torn tail.
        if record + 1 < records.len() {
            prop_assert!(!defect.is_torn_tail(), "{:?}", defect);
        }
    }
}

#[test]
fn decode_errors_are_malformed() {
    let mut bytes = Vec::new();
    encode_record(&mut bytes, Lsn(3), 1, b"payload");
    bytes[20] ^= 1;
    assert!(matches!(
        decode_record(&bytes),
        Err(JournalError::Malformed(
            CorruptReason::ChecksumMismatch { .. }
        ))
    ));
    assert!(matches!(
        decode_record(&[0, 0, 0, 3, 0, 0, 0, 0]),
        Err(JournalError::Malformed(CorruptReason::LengthTooSmall {
            length: 3
        }))
    ));
}
