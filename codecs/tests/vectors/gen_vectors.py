#!/usr/bin/env python3
"""Generates the ISO 8583 interop vectors in this folder with pyiso8583, an independent codec.

    pip install pyiso8583==4.0.1
    python3 codecs/tests/vectors/gen_vectors.py

Writes one JSON file per profile (ascii_1987.json, pyiso_default.json, binary_bcd.json). Each vector
has the profile name, a description, the MTI, the fields as logical strings (ASCII digits and text;
hex for `b` fields, as pyiso8583 writes them) and the hex of pyiso8583's encoding. The JSON files are
committed: CI does not run Python. codecs/tests/iso8583_vectors.rs checks that our decoder reads
these bytes into these fields and that our encoder writes these fields into these bytes.

Profiles:
- ascii_1987: pyiso8583's iso8583.specs.default_ascii, unchanged.
- pyiso_default: pyiso8583's iso8583.specs.default, unchanged.
- binary_bcd: a spec built here from default's field limits: BCD MTI, binary bitmaps, BCD length
  prefixes, `n` fields as BCD nibbles left-padded with 0, `z` fields (35, 36) as BCD nibbles
  right-padded with F (track separator '=' is nibble D), `b` fields binary, others ASCII.
"""

import copy
import json
import os
import sys

import iso8583
from iso8583.specs import default, default_ascii

HERE = os.path.dirname(os.path.abspath(__file__))

# Content classes of the ISO 8583:1987 fields that are not `ans`, as in codecs/src/iso8583/spec.rs.
N_FIELDS = (
    set(range(2, 28)) | {32, 33, 49, 50, 51, 53} | set(range(66, 91)) | {99, 100}
)
Z_FIELDS = {35, 36}
B_FIELDS = {52, 55, 64, 65, 96, 128}


def binary_bcd_spec():
    spec = copy.deepcopy(default)
    spec["t"] = {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 2, "desc": "MTI"}
    for key, field in spec.items():
        if not key.isdigit() or key == "1":
            continue
        number = int(key)
        # Prefix widths in bytes: BCD LL is one byte, LLL two.
        len_type = {0: 0, 2: 1, 3: 2}[field["len_type"]]
        field["len_type"] = len_type
        field["len_enc"] = "bcd"
        if number in N_FIELDS:
            field.update(data_enc="b", len_count="nibbles", left_pad="0")
        elif number in Z_FIELDS:
            field.update(data_enc="b", len_count="nibbles", right_pad="F")
        elif number in B_FIELDS:
            field["data_enc"] = "b"
        else:
            field["data_enc"] = "ascii"
    return spec


SPECS = {
    "ascii_1987": default_ascii,
    "pyiso_default": default,
    "binary_bcd": binary_bcd_spec(),
}

AUTH_REQUEST = {
    "2": "4761739001010010",
    "3": "000000",
    "4": "000000012345",
    "7": "1126143015",
    "11": "000123",
    "12": "143015",
    "13": "1126",
    "14": "2812",
    "22": "051",
    "32": "123456",
    "37": "633014000123",
    "41": "TERM0001",
    "42": "MERCHANT0000001",
    "49": "410",
}

MESSAGES = [
    ("0100 authorization request", "0100", AUTH_REQUEST),
    (
        "0110 authorization response with approval code and response code",
        "0110",
        {**AUTH_REQUEST, "38": "A1B2C3", "39": "00"},
    ),
    (
        "0800 sign-on: field 70 needs the secondary bitmap",
        "0800",
        {"7": "1126143000", "11": "000001", "70": "001"},
    ),
    (
        "0400 reversal with original data elements (90)",
        "0400",
        {
            "2": "4761739001010010",
            "3": "000000",
            "4": "000000012345",
            "7": "1126143115",
            "11": "000124",
            "32": "123456",
            "41": "TERM0001",
            "49": "410",
            "90": "0100" + "000123" + "1126143015" + "00000123456" + "00000000000",
        },
    ),
    (
        "0200 with track 2, PIN block, LLLVAR 48 and 60, ICC data and MACs 64 and 128",
        "0200",
        {
            "3": "000000",
            "4": "000000005000",
            "11": "000125",
            "22": "021",
            "35": "4761739001010010=28122011758928889",
            "41": "TERM0002",
            "48": "ADDITIONAL DATA: ORDER #12345; CUSTOMER REF ABC-789/XYZ",
            "52": "0123456789ABCDEF",
            "55": "9F2608AABBCCDDEEFF00119F2701809F100706010A03A00000",
            "60": "PAYMESH V1",
            "64": "1122334455667788",
            "128": "8877665544332211",
        },
    ),
    (
        "odd-length numerics: 19-digit PAN, 5-digit acquirer id, 1-digit field 27; empty LLVAR 44",
        "0100",
        {
            "2": "6011000990139424123",
            "4": "000000000001",
            "11": "999999",
            "27": "6",
            "32": "12345",
            "33": "1",
            "44": "",
            "102": "ACCOUNT-1",
        },
    ),
]


def to_pyiso(profile, fields):
    """Our logical values as pyiso8583 wants them: BCD track data spells '=' as 'D'."""
    out = dict(fields)
    if profile == "binary_bcd":
        for key in out:
            if int(key) in Z_FIELDS:
                out[key] = out[key].replace("=", "D")
    return out


def main():
    for profile, spec in SPECS.items():
        vectors = []
        for description, mti, fields in MESSAGES:
            doc = {"t": mti, **to_pyiso(profile, fields)}
            encoded, _ = iso8583.encode(copy.deepcopy(doc), spec)
            decoded, _ = iso8583.decode(bytes(encoded), spec)
            for key, value in doc.items():
                if decoded[key] != value:
                    sys.exit(f"{profile} {description}: field {key} did not round trip")
            vectors.append(
                {
                    "profile": profile,
                    "description": description,
                    "mti": mti,
                    "fields": fields,
                    "hex": bytes(encoded).hex(),
                }
            )
        document = {
            "profile": profile,
            "generator": f"pyiso8583 {iso8583.__version__}",
            "vectors": vectors,
        }
        path = os.path.join(HERE, f"{profile}.json")
        with open(path, "w") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
        print(f"wrote {len(vectors)} vectors to {path}")


if __name__ == "__main__":
    main()
