#!/usr/bin/env python3
"""The 0800 sign-on a PayMesh pool sends to an ISO 8583:1987 all-ASCII host, encoded by pyiso8583
(an independent implementation), for actors/tests/pool_core.rs
(`sign_on_matches_a_standard_ascii_1987_encoder`).

    pip install pyiso8583==4.0.1
    python3 actors/tests/vectors/gen_sign_on.py > actors/tests/vectors/sign_on_ascii_1987.txt

The fields are those of a host with the default dialect (acquirer id in 32, terminal id in 41)
signing on link 0 at 2026-11-26T21:39:56Z (unix ms 1795729196000): field 7 MMDDhhmmss in UTC,
STAN 998054 (network management STANs are the top 20,000 of terminal_id's range, advancing
with the time of day: 980000 + 77996 s * 20000 / 86400 s), field 70 = 001. The frame is the message behind a 2-byte big-endian binary length header,
pyiso8583's `default_ascii` spec unchanged. CI does not run Python: the output is committed.
"""

import struct

import iso8583
from iso8583.specs import default_ascii

FIELDS = {
    "t": "0800",
    "7": "1126213956",
    "11": "998054",
    "32": "123456",
    "41": "PAYMESH1",
    "70": "001",
}

encoded, _ = iso8583.encode(dict(FIELDS), default_ascii)
frame = struct.pack(">H", len(encoded)) + bytes(encoded)
decoded, _ = iso8583.decode(bytes(encoded), default_ascii)
assert {k: v for k, v in decoded.items() if k in FIELDS} == FIELDS
print("# pyiso8583 %s, spec default_ascii, 2-byte binary length header" % iso8583.__version__)
print(frame.hex())
