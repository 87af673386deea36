//! Device signatures in the shard core (`actors/src/core/device.rs`), per request:
//!
//! - `device/signed_verified`: a signed AUTHORIZE with a fresh counter: the window check, the
//!   signed bytes, Ed25519 strict verification, the window moved. What a signed request adds to
//!   the shard's step.
//! - `device/replayed_counter`: the same with a counter the window already holds: refused before
//!   any curve arithmetic (what a replay flood costs).
//! - `device/unsigned`: an unsigned request of a merchant with an optional policy: the policy
//!   lookup only.
//!
//! `cargo bench -p paymesh-benches --bench device_signature`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey};
use paymesh_actors::core::config::{DeviceConfig, DeviceSignaturePolicy, MerchantConfig};
use paymesh_actors::core::device::{DeviceCounters, DeviceRegistry};
use paymesh_codecs::message::{DeviceSignature, PaymentMethod, TxnKind, TxnRequest};
use paymesh_codecs::types::{Pan, Secret};

// The router's allocator (router/src/main.rs), so allocation costs what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Requests signed per batch (outside the timed loop).
const BATCH: usize = 256;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn registry() -> DeviceRegistry {
    let merchant = MerchantConfig {
        id: "M000000000001".into(),
        enabled: true,
        single_limit_minor: None,
        daily_limit_minor: None,
        currencies: vec![],
        follow_ups: Default::default(),
        devices: vec![DeviceConfig {
            id: "dev-8f14e45fceea167a".into(),
            public_key: bytes_hex(&key().verifying_key().to_bytes()),
        }],
        device_signature: DeviceSignaturePolicy::Optional,
    };
    DeviceRegistry::new(&[merchant]).unwrap()
}

fn bytes_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn authorize(order: u64, counter: Option<u64>) -> TxnRequest {
    let mut req = TxnRequest::new(
        TxnKind::Authorize,
        "M000000000001".into(),
        Bytes::from(format!("ORD-2026-11-26-{order:06}")),
    );
    req.amount = Some(125_000);
    req.currency = Some(410);
    req.payment = Some(PaymentMethod::Card {
        pan: Pan::new(Bytes::from_static(b"4111111111111111")).unwrap(),
        expiry: "2912".into(),
        cvv: Some(Secret::new("123".into())),
    });
    if let Some(counter) = counter {
        req.device_signature = Some(DeviceSignature {
            device_id: "dev-8f14e45fceea167a".into(),
            counter,
            signature: Bytes::new(),
        });
        let mut message = BytesMut::new();
        req.device_signed_bytes(&mut message);
        let signature = key().sign(&message).to_bytes();
        if let Some(d) = &mut req.device_signature {
            d.signature = Bytes::copy_from_slice(&signature);
        }
    }
    req
}

fn bench(c: &mut Criterion) {
    let registry = registry();
    let mut group = c.benchmark_group("device");
    group.throughput(Throughput::Elements(BATCH as u64));

    let mut counters = DeviceCounters::default();
    let mut next = 0u64;
    group.bench_function("signed_verified", |b| {
        b.iter_batched(
            || {
                (0..BATCH)
                    .map(|_| {
                        next += 1;
                        authorize(next, Some(next))
                    })
                    .collect::<Vec<_>>()
            },
            |requests| {
                for r in &requests {
                    assert!(counters.check(&registry, r).is_ok());
                }
            },
            BatchSize::LargeInput,
        )
    });

    let mut used = DeviceCounters::default();
    let replayed: Vec<TxnRequest> = (1..=BATCH as u64).map(|n| authorize(n, Some(n))).collect();
    for r in &replayed {
        used.check(&registry, r).unwrap();
    }
    group.bench_function("replayed_counter", |b| {
        b.iter(|| {
            for r in &replayed {
                assert!(used.check(&registry, r).is_err());
            }
        })
    });

    let unsigned: Vec<TxnRequest> = (0..BATCH as u64).map(|n| authorize(n, None)).collect();
    group.bench_function("unsigned", |b| {
        b.iter(|| {
            for r in &unsigned {
                assert!(counters.check(&registry, r).is_ok());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
