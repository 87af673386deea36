//! docs/PROTOCOL.md agrees with the codec: every worked example decodes to the fields its JSON
//! block lists and re-encodes to the same bytes, and the field, message type and result code tables
//! match the code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::collections::BTreeMap;

use bytes::BytesMut;
use paymesh_codecs::body::FIELD_SPECS;
use paymesh_codecs::message::{Message, PaymentMethod, type_name};
use paymesh_codecs::types::ResultCode;
use support::doc_examples::{
    BEGIN_MARKER, END_MARKER, SIGNED_EXAMPLE_SIGNATURE, doc_path, example_blocks, frame_json,
    parse_hex, render_examples, single_frame, vector_block,
};

fn doc() -> String {
    std::fs::read_to_string(doc_path()).expect("docs/PROTOCOL.md")
}

/// The rows of the first table after `heading`, as trimmed cells (header and rule skipped).
fn table_after(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("heading {heading:?}"));
    doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn worked_examples_decode_to_their_json() {
    let doc = doc();
    let blocks = example_blocks(&doc);
    let mut hex = BTreeMap::new();
    let mut json = BTreeMap::new();
    for (lang, name, content) in blocks {
        let map = match lang.as_str() {
            "hex" => &mut hex,
            "json" => &mut json,
            other => panic!("example {name}: unexpected block language {other}"),
        };
        assert!(
            map.insert(name.clone(), content).is_none(),
            "example {name} twice"
        );
    }
    let names: Vec<&String> = hex.keys().collect();
    assert_eq!(
        names,
        json.keys().collect::<Vec<_>>(),
        "every hex example has a JSON block"
    );
    for required in [
        "login",
        "login_answer",
        "authorize",
        "authorize_answer",
        "capture",
        "refund",
        "inquiry",
        "authorize_signed",
        "reject",
    ] {
        assert!(hex.contains_key(required), "example {required} missing");
    }
    for (name, block) in &hex {
        let wire = parse_hex(block);
        let frame = single_frame(&wire);
        let message = Message::decode(&frame).unwrap_or_else(|e| panic!("example {name}: {e}"));
        let mut encoded = BytesMut::new();
        message.encode(
            frame.header.correlation_id,
            frame.header.flags,
            &mut encoded,
        );
        assert_eq!(
            encoded.as_ref(),
            &wire[..],
            "example {name} is not canonical"
        );
        let expected: serde_json::Value = serde_json::from_str(&json[name]).unwrap();
        assert_eq!(frame_json(&frame), expected, "example {name}");
    }
}

#[test]
fn worked_examples_are_up_to_date() {
    let doc = doc();
    let begin = doc.find(BEGIN_MARKER).unwrap() + BEGIN_MARKER.len();
    let end = doc.find(END_MARKER).unwrap();
    assert_eq!(
        doc[begin..end].trim(),
        render_examples().trim(),
        "regenerate: cargo run -p paymesh-codecs --example protocol_examples -- --write"
    );
}

#[test]
fn field_table_matches_the_code() {
    let doc = doc();
    let rows = table_after(&doc, "## 3. Fields");
    assert_eq!(rows.len(), FIELD_SPECS.len(), "one row per field");
    for (row, spec) in rows.iter().zip(FIELD_SPECS) {
        let (min, max) = spec.kind.len_range();
        let length = if min == max {
            min.to_string()
        } else {
            format!("{min}..{max}")
        };
        let expected = [
            spec.tag.to_string(),
            spec.name.to_string(),
            spec.kind.name().to_string(),
            length,
        ];
        assert_eq!(row[..4], expected, "field {}", spec.name);
    }
}

#[test]
fn message_type_table_matches_the_code() {
    let doc = doc();
    let rows = table_after(&doc, "## 4. Message types");
    let known: Vec<u8> = (0..=u8::MAX).filter(|t| type_name(*t).is_some()).collect();
    assert_eq!(rows.len(), known.len(), "one row per message type");
    for row in rows {
        let msg_type = u8::from_str_radix(row[0].trim_start_matches("0x"), 16).unwrap();
        assert_eq!(
            type_name(msg_type),
            Some(row[1].as_str()),
            "type {}",
            row[0]
        );
    }
}

#[test]
fn result_code_table_matches_the_code() {
    let doc = doc();
    let rows = table_after(&doc, "## 6. Result codes");
    assert_eq!(rows.len(), ResultCode::ALL.len(), "one row per result code");
    for (row, code) in rows.iter().zip(ResultCode::ALL) {
        assert_eq!(row[0], code.as_u16().to_string());
        assert_eq!(row[1], code.name());
        let retry = row[3]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches(',');
        assert_eq!(
            retry == "yes",
            code.is_retryable(),
            "{} retry column",
            code.name()
        );
    }
}

#[test]
fn device_signature_vector_matches_the_codec() {
    let doc = doc();
    let (_, _, frame_hex) = example_blocks(&doc)
        .into_iter()
        .find(|(lang, name, _)| lang == "hex" && name == "authorize_signed")
        .expect("example authorize_signed");
    let frame = single_frame(&parse_hex(&frame_hex));
    let Message::Request(mut request) = Message::decode(&frame).unwrap() else {
        panic!("authorize_signed is not a request");
    };
    let device = request.device_signature.clone().expect("device fields");
    assert_eq!(device.signature.as_ref(), vector_block(&doc, "signature"));
    assert_eq!(hex::encode(&device.signature), SIGNED_EXAMPLE_SIGNATURE);
    let expected = vector_block(&doc, "signed_bytes");
    let mut signed = BytesMut::new();
    request.device_signed_bytes(&mut signed);
    assert_eq!(hex::encode(&signed), hex::encode(&expected));
    // As the router rebuilds it from the journal, without the CVV: the same bytes.
    if let Some(PaymentMethod::Card { cvv, .. }) = &mut request.payment {
        assert!(cvv.take().is_some(), "the example carries a CVV");
    }
    let mut replayed = BytesMut::new();
    request.device_signed_bytes(&mut replayed);
    assert_eq!(replayed, signed);
    assert_eq!(
        vector_block(&doc, "public_key").len() + vector_block(&doc, "secret_key").len(),
        64
    );
}

#[test]
fn crc_check_value_in_the_doc_is_right() {
    assert!(doc().contains("`0xE3069283`"));
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
}
