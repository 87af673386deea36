"""The reference client's self-test: its own codec against docs/PROTOCOL.md itself, the CRC-32C
check value, every worked example of section 12 (the JSON fields encode to the hex bytes) and the
section 5.5 test vector."""

import json
import re

import ed25519
from pmwire import (FIELDS, MSG, TAG, crc32c, decode_body, encode_fields, frame, parse_header,
                    signed_bytes)


def self_test(report, doc_path):
    """The client's codec against the document itself: CRC-32C check value, every worked
    example of section 12 (the JSON fields encode to the hex bytes) and the section 5.5 vector."""
    g = "self-test"
    report.equal(g, "CRC-32C check value of '123456789'", crc32c(b"123456789"), 0xE3069283)
    text = open(doc_path, encoding="utf-8").read()
    hex_blocks = dict(re.findall(r"```hex (?:example|vector)=(\w+)\n(.*?)```", text, re.S))
    json_blocks = dict(re.findall(r"```json example=(\w+)\n(.*?)```", text, re.S))

    def unhex(block):
        return bytes.fromhex("".join(line.split("#")[0] for line in block.splitlines()))

    report.check(g, "the document has worked examples", len(json_blocks) >= 8, str(json_blocks))
    for name, block in json_blocks.items():
        example = json.loads(block)
        fields = {}
        for key, value in example["fields"].items():
            kind = FIELDS[TAG[key]][1]
            fields[key] = bytes.fromhex(value) if kind == "BYTES" else value
        wire = frame(MSG[example["msg_type"]], example["correlation_id"], encode_fields(fields),
                     flags=example["flags"])
        report.equal(g, f"example {name}: encodes to the document's bytes", wire.hex(),
                     unhex(hex_blocks[name]).hex())
        head = parse_header(wire[:24])
        back = decode_body(wire[24:])
        report.equal(g, f"example {name}: decodes to its fields",
                     (head["correlation_id"], back), (example["correlation_id"], fields))
    secret = unhex(hex_blocks["secret_key"])
    report.equal(g, "Ed25519 public key of the section 5.5 vector",
                 ed25519.public_key(secret).hex(), unhex(hex_blocks["public_key"]).hex())
    signed_example = json.loads(json_blocks["authorize_signed"])["fields"]
    signed_example = {k: (bytes.fromhex(v) if k == "signature" else v)
                      for k, v in signed_example.items()}
    report.equal(g, "signed bytes of authorize_signed", signed_bytes("AUTHORIZE",
                                                                     signed_example).hex(),
                 unhex(hex_blocks["signed_bytes"]).hex())
    report.equal(g, "Ed25519 signature of authorize_signed",
                 ed25519.sign(secret, unhex(hex_blocks["signed_bytes"])).hex(),
                 unhex(hex_blocks["signature"]).hex())
