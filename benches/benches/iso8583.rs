//! ISO 8583 decode and encode of a typical 0100 authorization request (14 fields), in the ASCII and
//! the BCD profile. Throughput is in messages.
//!
//! `cargo bench -p paymesh-benches --bench iso8583 -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use paymesh_codecs::iso8583::{IsoMessage, Mti, Profile};

/// The 0100 of the interop vectors: PAN, processing code, amount, dates, STAN, POS entry mode,
/// acquirer, RRN, terminal, merchant and currency.
fn auth_request(profile: &'static Profile) -> IsoMessage {
    let fields: [(u8, &[u8]); 14] = [
        (2, b"4761739001010010"),
        (3, b"000000"),
        (4, b"000000012345"),
        (7, b"1126143015"),
        (11, b"000123"),
        (12, b"143015"),
        (13, b"1126"),
        (14, b"2812"),
        (22, b"051"),
        (32, b"123456"),
        (37, b"633014000123"),
        (41, b"TERM0001"),
        (42, b"MERCHANT0000001"),
        (49, b"410"),
    ];
    let mut message = IsoMessage::new(profile, Mti::AUTHORIZATION_REQUEST);
    for (field, value) in fields {
        message.set(field, value).unwrap();
    }
    message
}

fn bench_iso8583(c: &mut Criterion) {
    let mut group = c.benchmark_group("iso8583_0100");
    group.throughput(Throughput::Elements(1));
    for profile in [Profile::ascii_1987(), Profile::binary_bcd()] {
        let message = auth_request(profile);
        let mut wire = BytesMut::new();
        message.encode(profile, &mut wire).unwrap();
        // Shared like a frame split off a connection's read buffer.
        let wire = wire.freeze();
        let _ = wire.slice(0..1);

        group.bench_function(format!("decode/{}/{}B", profile.name, wire.len()), |b| {
            b.iter(|| IsoMessage::decode(profile, black_box(wire.clone())).unwrap())
        });
        let mut out = BytesMut::with_capacity(4096);
        group.bench_function(format!("encode/{}/{}B", profile.name, wire.len()), |b| {
            b.iter(|| {
                out.clear();
                black_box(&message).encode(profile, &mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_iso8583);
criterion_main!(benches);
