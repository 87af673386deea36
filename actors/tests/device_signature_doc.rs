//! docs/PROTOCOL.md's device signature test vector (section 5.5) is right: the key pair is RFC
//! 8032's, the signature is Ed25519's over the signed bytes, and the core accepts the example
//! request signed with it, once. (The codec's own test checks the signed bytes.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::BytesMut;
use ed25519_dalek::{Signer, SigningKey};
use paymesh_actors::core::config::{DeviceConfig, DeviceSignaturePolicy, MerchantConfig};
use paymesh_actors::core::device::{DeviceCounters, DeviceRegistry, Refusal};
use paymesh_codecs::frame::{FRAME_BODY_BYTES_MAX, decode_frame};
use paymesh_codecs::message::Message;

fn doc() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md");
    std::fs::read_to_string(path).expect("docs/PROTOCOL.md")
}

/// The bytes of the fenced block opened by `opening` (hex pairs; `#` starts a comment).
fn block(doc: &str, opening: &str) -> Vec<u8> {
    let mut lines = doc.lines().skip_while(|l| l.trim_end() != opening);
    assert!(lines.next().is_some(), "no block {opening}");
    let digits: String = lines
        .take_while(|l| !l.starts_with("```"))
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .collect();
    hex::decode(digits).unwrap()
}

#[test]
fn the_documents_test_vector_verifies() {
    let doc = doc();
    let secret = block(&doc, "```hex vector=secret_key");
    let public = block(&doc, "```hex vector=public_key");
    let signed_bytes = block(&doc, "```hex vector=signed_bytes");
    let signature = block(&doc, "```hex vector=signature");
    assert_eq!(
        hex::encode(&secret),
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "RFC 8032 section 7.1, TEST 1"
    );
    let key = SigningKey::from_bytes(&secret.clone().try_into().unwrap());
    assert_eq!(key.verifying_key().to_bytes().as_slice(), public);
    assert_eq!(key.sign(&signed_bytes).to_bytes().as_slice(), signature);

    // The example frame, as a client would send it, through the core's check.
    let mut wire = BytesMut::from(&block(&doc, "```hex example=authorize_signed")[..]);
    let frame = decode_frame(&mut wire, FRAME_BODY_BYTES_MAX)
        .unwrap()
        .unwrap();
    let Message::Request(request) = Message::decode(&frame).unwrap() else {
        panic!("authorize_signed is not a request");
    };
    let mut ours = BytesMut::new();
    request.device_signed_bytes(&mut ours);
    assert_eq!(ours.as_ref(), signed_bytes);
    let merchant = MerchantConfig {
        id: "M0001".into(),
        enabled: true,
        single_limit_minor: None,
        daily_limit_minor: None,
        currencies: vec![],
        follow_ups: Default::default(),
        devices: vec![DeviceConfig {
            id: "phone-0001".into(),
            public_key: hex::encode(&public),
        }],
        device_signature: DeviceSignaturePolicy::Required,
    };
    let registry = DeviceRegistry::new(&[merchant]).unwrap();
    let mut counters = DeviceCounters::default();
    assert_eq!(counters.check(&registry, &request), Ok(()));
    assert_eq!(
        counters.check(&registry, &request),
        Err(Refusal::Replayed),
        "the same frame twice"
    );
    // One bit of the signed bytes changed (the amount's lowest): it no longer verifies.
    let mut tampered = request.clone();
    tampered.amount = tampered.amount.map(|a| a ^ 1);
    assert_eq!(
        DeviceCounters::default().check(&registry, &tampered),
        Err(Refusal::BadSignature)
    );
}
