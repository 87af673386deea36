"""The PayMesh inbound protocol, version 1, written from docs/PROTOCOL.md alone.

This module shares nothing with the Rust codecs: it is a second reading of the document, so
that where the document and the router disagree, one of the two is wrong. Section numbers in
the comments are docs/PROTOCOL.md's.

Python standard library only.
"""

import socket
import ssl
import struct

# Section 1: the frame header.
MAGIC = b"PM"
VERSION = 1
HEADER_BYTES = 24
FRAME_BODY_BYTES_MAX = 16384
FLAG_RETRANSMIT = 0x0001

# Section 4: message types.
MSG = {
    "LOGIN": 0x01,
    "LOGIN_ANSWER": 0x81,
    "HEARTBEAT": 0x02,
    "HEARTBEAT_ANSWER": 0x82,
    "LOGOUT": 0x03,
    "LOGOUT_ANSWER": 0x83,
    "AUTHORIZE": 0x10,
    "SALE": 0x11,
    "CAPTURE": 0x12,
    "CANCEL": 0x13,
    "REFUND": 0x14,
    "INQUIRY": 0x15,
    "BALANCE_INQUIRY": 0x16,
    "TOKENIZE": 0x17,
    "AUTHORIZE_ANSWER": 0x90,
    "SALE_ANSWER": 0x91,
    "CAPTURE_ANSWER": 0x92,
    "CANCEL_ANSWER": 0x93,
    "REFUND_ANSWER": 0x94,
    "INQUIRY_ANSWER": 0x95,
    "BALANCE_INQUIRY_ANSWER": 0x96,
    "TOKENIZE_ANSWER": 0x97,
    "REJECT": 0x7F,
}
MSG_NAME = {v: k for k, v in MSG.items()}
TXN_REQUESTS = [
    "AUTHORIZE",
    "SALE",
    "CAPTURE",
    "CANCEL",
    "REFUND",
    "INQUIRY",
    "BALANCE_INQUIRY",
    "TOKENIZE",
]
ANSWER_BIT = 0x80

# Section 3: tag -> (name, type, min length, max length). Types: U8 U16 U32 U64 STR BYTES.
FIELDS = {
    1: ("merchant_id", "STR", 1, 15),
    2: ("order_id", "STR", 1, 40),
    3: ("amount", "U64", 8, 8),
    4: ("currency", "U16", 2, 2),
    5: ("payment_method", "U8", 1, 1),
    6: ("pan", "STR", 12, 19),
    7: ("expiry", "STR", 4, 4),
    8: ("cvv", "STR", 3, 4),
    9: ("wallet_token", "STR", 1, 64),
    10: ("phone_number", "STR", 8, 15),
    11: ("carrier", "STR", 1, 16),
    12: ("bank_code", "STR", 1, 11),
    13: ("account_number", "STR", 1, 34),
    14: ("device_id", "STR", 1, 64),
    15: ("signature", "BYTES", 1, 512),
    16: ("request_id", "STR", 1, 40),
    17: ("server_txn_id", "U64", 8, 8),
    18: ("description", "STR", 0, 128),
    19: ("device_counter", "U64", 8, 8),
    20: ("result_code", "U16", 2, 2),
    21: ("approval_code", "STR", 6, 6),
    23: ("rrn", "STR", 12, 12),
    24: ("upstream_response_code", "STR", 2, 4),
    25: ("received_at_ms", "U64", 8, 8),
    26: ("answered_at_ms", "U64", 8, 8),
    27: ("state", "U8", 1, 1),
    28: ("authorized_amount", "U64", 8, 8),
    29: ("captured_amount", "U64", 8, 8),
    30: ("refunded_amount", "U64", 8, 8),
    31: ("balance", "U64", 8, 8),
    32: ("token", "STR", 1, 64),
    33: ("masked_pan", "STR", 12, 19),
    34: ("message", "STR", 0, 256),
    40: ("network_id", "STR", 1, 32),
    41: ("credential", "STR", 1, 128),
    42: ("client_software", "STR", 1, 64),
    43: ("session_id", "U64", 8, 8),
    44: ("inflight_window", "U32", 4, 4),
    45: ("heartbeat_interval_ms", "U32", 4, 4),
    46: ("idle_timeout_ms", "U32", 4, 4),
    47: ("max_body_bytes", "U32", 4, 4),
    48: ("server_time_ms", "U64", 8, 8),
    50: ("error_offset", "U32", 4, 4),
}
TAG = {name: tag for tag, (name, _, _, _) in FIELDS.items()}
INT_WIDTH = {"U8": 1, "U16": 2, "U32": 4, "U64": 8}

# Section 6: result codes.
RESULT = {
    "APPROVED": 0,
    "DECLINED": 1001,
    "INSUFFICIENT_FUNDS": 1002,
    "EXPIRED_CARD": 1003,
    "INVALID_CARD": 1004,
    "ISSUER_LIMIT_EXCEEDED": 1005,
    "DO_NOT_HONOR": 1006,
    "INVALID_ACCOUNT": 1007,
    "INVALID_REQUEST": 2001,
    "UNKNOWN_MERCHANT": 2002,
    "MERCHANT_DISABLED": 2003,
    "AMOUNT_OVER_LIMIT": 2004,
    "DAILY_LIMIT_EXCEEDED": 2005,
    "DUPLICATE_ORDER": 2006,
    "INVALID_STATE": 2007,
    "NOT_FOUND": 2008,
    "AMOUNT_EXCEEDS_AVAILABLE": 2009,
    "UNROUTABLE": 2010,
    "UNSUPPORTED_CURRENCY": 2011,
    "INVALID_SIGNATURE": 2012,
    "UNSUPPORTED_PAYMENT_METHOD": 2013,
    "BUSY": 3001,
    "UPSTREAM_UNAVAILABLE": 3002,
    "UPSTREAM_TIMEOUT": 3003,
    "IN_DOUBT": 3004,
    "SHUTTING_DOWN": 3005,
    "IN_PROGRESS": 3006,
    "NOT_LOGGED_IN": 4001,
    "AUTH_FAILED": 4002,
    "MALFORMED_FRAME": 4003,
    "CHECKSUM_MISMATCH": 4004,
    "UNSUPPORTED_VERSION": 4005,
    "UNKNOWN_MESSAGE_TYPE": 4006,
    "FRAME_TOO_LARGE": 4007,
    "ALREADY_LOGGED_IN": 4008,
    "UNKNOWN_CRITICAL_FIELD": 4009,
    "INTERNAL_ERROR": 9001,
}
RESULT_NAME = {v: k for k, v in RESULT.items()}

# Section 5.4: states.
STATE = {
    "AUTHORIZING": 0,
    "AUTHORIZED": 1,
    "CAPTURED": 2,
    "PARTIALLY_CAPTURED": 3,
    "CANCELLED": 4,
    "REFUNDED": 5,
    "PARTIALLY_REFUNDED": 6,
    "DECLINED": 7,
    "IN_DOUBT": 8,
    "FAILED": 9,
    "REVERSED": 10,
}


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 (section 1)."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def field(tag, value):
    """One field, `tag u16, len u16, value` (section 2). `value` is raw bytes."""
    return struct.pack(">HH", tag, len(value)) + value


def encode_value(name, value):
    """A field's value bytes from a Python value, by the type of section 3."""
    tag = TAG[name]
    kind = FIELDS[tag][1]
    if kind in INT_WIDTH:
        return value.to_bytes(INT_WIDTH[kind], "big")
    if kind == "STR":
        return value.encode("ascii")
    return bytes(value)


def encode_fields(fields):
    """A body from a dict name -> value, in ascending tag order (section 2: SHOULD)."""
    items = sorted((TAG[name], encode_value(name, value)) for name, value in fields.items())
    return b"".join(field(tag, raw) for tag, raw in items)


def frame(msg_type, correlation_id, body=b"", flags=0, version=VERSION, magic=MAGIC,
          reserved=0, body_len=None, checksum=None):
    """A frame; the keyword arguments after `flags` exist to build broken frames on purpose."""
    if body_len is None:
        body_len = len(body)
    head = magic + struct.pack(">BBHHQI", version, msg_type, flags, reserved, correlation_id,
                               body_len)
    if checksum is None:
        checksum = crc32c(head + body)
    return head + struct.pack(">I", checksum) + body


class WireError(Exception):
    """The server sent something section 1 or 2 does not allow."""


def parse_header(head):
    magic, version, msg_type, flags, reserved, correlation_id, body_len, checksum = struct.unpack(
        ">2sBBHHQII", head)
    return {
        "magic": magic,
        "version": version,
        "msg_type": msg_type,
        "flags": flags,
        "reserved": reserved,
        "correlation_id": correlation_id,
        "body_len": body_len,
        "checksum": checksum,
    }


def decode_body(body):
    """A body as a dict name -> value (unknown tags as `tag_<n>` raw bytes); raises WireError
    for anything section 2 makes invalid, so that a sloppy server answer is caught."""
    fields = {}
    seen = set()
    at = 0
    while at < len(body):
        if len(body) - at < 4:
            raise WireError(f"truncated field header at body offset {at}")
        tag, length = struct.unpack_from(">HH", body, at)
        value = body[at + 4:at + 4 + length]
        if len(value) != length:
            raise WireError(f"field {tag} runs past the body end")
        if tag == 0:
            raise WireError("field with tag 0")
        if tag in seen:
            raise WireError(f"tag {tag} twice")
        seen.add(tag)
        at += 4 + length
        if tag not in FIELDS:
            fields[f"tag_{tag}"] = value
            continue
        name, kind, lo, hi = FIELDS[tag]
        if not lo <= length <= hi:
            raise WireError(f"{name}: length {length} outside {lo}..{hi}")
        if kind in INT_WIDTH:
            fields[name] = int.from_bytes(value, "big")
        elif kind == "STR":
            if any(b < 0x20 or b > 0x7E for b in value):
                raise WireError(f"{name}: not printable ASCII")
            fields[name] = value.decode("ascii")
        else:
            fields[name] = value
    return fields


class Frame:
    """A received frame: header fields, raw body and decoded fields."""

    def __init__(self, header, body):
        self.header = header
        self.body = body
        self.msg_type = header["msg_type"]
        self.correlation_id = header["correlation_id"]
        self.flags = header["flags"]
        self.fields = decode_body(body)

    @property
    def name(self):
        return MSG_NAME.get(self.msg_type, f"0x{self.msg_type:02x}")

    def get(self, name, default=None):
        return self.fields.get(name, default)

    def __repr__(self):
        return f"<{self.name} id={self.correlation_id} flags={self.flags} {self.fields}>"


class Closed(Exception):
    """The server closed the connection."""


class Connection:
    """One TCP or TLS connection to the router, with a receive buffer."""

    def __init__(self, addr, tls_ca=None, server_name="localhost", source_ip=None, timeout=20.0):
        host, port = addr.rsplit(":", 1)
        source = (source_ip, 0) if source_ip else None
        sock = socket.create_connection((host, int(port)), timeout=timeout,
                                        source_address=source)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_ca is not None:
            context = ssl.create_default_context(cafile=tls_ca)
            sock = context.wrap_socket(sock, server_hostname=server_name)
            self.tls_version = sock.version()
        else:
            self.tls_version = None
        self.sock = sock
        self.buf = b""
        self.next_id = 1

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, msg_name, fields=None, correlation_id=None, flags=0, body=None):
        """Sends a message; returns its correlation id."""
        if correlation_id is None:
            correlation_id = self.new_id()
        if body is None:
            body = encode_fields(fields or {})
        self.send_raw(frame(MSG[msg_name], correlation_id, body, flags=flags))
        return correlation_id

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            chunk = b""
        if not chunk:
            raise Closed()
        self.buf += chunk

    def recv(self):
        """The next frame; raises Closed when the server closed the connection first."""
        while len(self.buf) < HEADER_BYTES:
            self._fill()
        header = parse_header(self.buf[:HEADER_BYTES])
        if header["magic"] != MAGIC or header["version"] != VERSION:
            raise WireError(f"server frame with magic {header['magic']!r} version "
                            f"{header['version']}")
        if header["body_len"] > FRAME_BODY_BYTES_MAX:
            raise WireError(f"server frame body_len {header['body_len']}")
        total = HEADER_BYTES + header["body_len"]
        while len(self.buf) < total:
            self._fill()
        raw, self.buf = self.buf[:total], self.buf[total:]
        if crc32c(raw[:20] + raw[24:]) != header["checksum"]:
            raise WireError("server frame checksum mismatch")
        if header["flags"] & ~FLAG_RETRANSMIT or header["reserved"]:
            # Reserved bits: "send 0" (section 1).
            raise WireError(f"server frame with reserved bits set: {header}")
        return Frame(header, raw[HEADER_BYTES:])

    def closed_after(self):
        """Reads to the end: the frames sent before the server closed (it must close)."""
        frames = []
        while True:
            try:
                frames.append(self.recv())
            except Closed:
                return frames

    def call(self, msg_name, fields=None, flags=0):
        """Sends one message and returns the frame answering it (no other traffic in flight)."""
        cid = self.send(msg_name, fields, flags=flags)
        answer = self.recv()
        if answer.correlation_id != cid:
            raise WireError(f"answer to {msg_name} id {cid} came with id "
                            f"{answer.correlation_id}: {answer}")
        return answer

    def login(self, network_id, credential, client_software="paymesh-ref-client/1"):
        fields = {"network_id": network_id, "credential": credential}
        if client_software:
            fields["client_software"] = client_software
        return self.call("LOGIN", fields)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def signed_bytes(kind, fields):
    """Section 5.5: prefix, message type, the covered fields in ascending tag order."""
    method = fields.get("payment_method")
    if kind == "TOKENIZE" and method is None:
        method = 1
    method_fields = {1: ["pan", "expiry"], 2: ["wallet_token"],
                     3: ["phone_number", "carrier"], 4: ["bank_code", "account_number"]}
    covered = ["merchant_id", "order_id", "amount", "currency", "device_id", "request_id",
               "server_txn_id", "description", "device_counter"]
    values = {name: fields[name] for name in covered if name in fields}
    if method is not None:
        values["payment_method"] = method
        for name in method_fields.get(method, []):
            if name in fields:
                values[name] = fields[name]
    return b"PAYMESH-DEVSIG-v1" + bytes([MSG[kind]]) + encode_fields(values)
