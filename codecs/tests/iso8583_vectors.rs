//! Interop with pyiso8583: the vectors in tests/vectors/*.json were encoded by it (see
//! gen_vectors.py). Our decoder must read their bytes into their fields, and our encoder must write
//! their fields into their bytes, byte for byte.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::{Bytes, BytesMut};
use paymesh_codecs::iso8583::{ContentClass, IsoMessage, Mti, Profile};
use serde_json::Value;

const VECTOR_FILES: [(&str, &str); 3] = [
    ("ascii_1987", include_str!("vectors/ascii_1987.json")),
    ("pyiso_default", include_str!("vectors/pyiso_default.json")),
    ("binary_bcd", include_str!("vectors/binary_bcd.json")),
];

fn profile(name: &str) -> &'static Profile {
    match name {
        "ascii_1987" => Profile::ascii_1987(),
        "pyiso_default" => Profile::pyiso_default(),
        "binary_bcd" => Profile::binary_bcd(),
        other => panic!("unknown profile {other}"),
    }
}

/// One vector's expected fields as (field number, logical bytes): `b` fields are hex in the JSON.
fn expected_fields(profile: &Profile, fields: &Value) -> Vec<(u8, Vec<u8>)> {
    let mut out: Vec<(u8, Vec<u8>)> = fields
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| {
            let field: u8 = key.parse().unwrap();
            let text = value.as_str().unwrap();
            let logical = match profile.field(field).unwrap().class {
                ContentClass::B => hex::decode(text).unwrap(),
                _ => text.as_bytes().to_vec(),
            };
            (field, logical)
        })
        .collect();
    out.sort();
    out
}

fn each_vector(mut check: impl FnMut(&'static Profile, &str, &str, Vec<(u8, Vec<u8>)>, Vec<u8>)) {
    let mut count = 0;
    for (name, text) in VECTOR_FILES {
        let document: Value = serde_json::from_str(text).unwrap();
        assert_eq!(document["profile"], name);
        for vector in document["vectors"].as_array().unwrap() {
            let profile = profile(vector["profile"].as_str().unwrap());
            let description = vector["description"].as_str().unwrap();
            let mti = vector["mti"].as_str().unwrap();
            let fields = expected_fields(profile, &vector["fields"]);
            let wire = hex::decode(vector["hex"].as_str().unwrap()).unwrap();
            check(profile, description, mti, fields, wire);
            count += 1;
        }
    }
    assert_eq!(count, 18, "every profile has its six vectors");
}

#[test]
fn decoding_their_bytes_yields_their_fields() {
    each_vector(|profile, description, mti, fields, wire| {
        let message = IsoMessage::decode(profile, Bytes::from(wire))
            .unwrap_or_else(|e| panic!("{} {description}: {e}", profile.name));
        assert_eq!(message.mti().as_bytes(), mti.as_bytes(), "{description}");
        let ours: Vec<(u8, Vec<u8>)> = message.fields().map(|(f, v)| (f, v.to_vec())).collect();
        assert_eq!(ours, fields, "{} {description}", profile.name);
    });
}

#[test]
fn encoding_their_fields_yields_their_bytes() {
    each_vector(|profile, description, mti, fields, wire| {
        let mut message = IsoMessage::new(profile, Mti::from_ascii(mti.as_bytes()).unwrap());
        for (field, value) in fields {
            message
                .set(field, value)
                .unwrap_or_else(|e| panic!("{} {description}: {e}", profile.name));
        }
        let mut out = BytesMut::new();
        message.encode(profile, &mut out).unwrap();
        assert_eq!(
            hex::encode(&out),
            hex::encode(&wire),
            "{} {description}",
            profile.name
        );
    });
}

#[test]
fn translating_between_profiles_keeps_logical_values() {
    // Decode each ascii_1987 vector, encode it with the other profiles, and compare with the
    // vector pyiso8583 made for that profile from the same fields.
    let mut by_description = std::collections::HashMap::new();
    each_vector(|profile, description, _, _, wire| {
        by_description.insert((profile.name, description.to_owned()), wire);
    });
    for ((name, description), wire) in &by_description {
        if *name != "ascii_1987" {
            continue;
        }
        let message = IsoMessage::decode(Profile::ascii_1987(), Bytes::from(wire.clone())).unwrap();
        for target in [Profile::pyiso_default(), Profile::binary_bcd()] {
            let mut out = BytesMut::new();
            message.encode(target, &mut out).unwrap();
            let expected = &by_description[&(target.name, description.clone())];
            assert_eq!(hex::encode(&out), hex::encode(expected), "{description}");
        }
    }
}
