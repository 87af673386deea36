#!/usr/bin/env python3
"""An ISO 8583:1987 upstream host built on pyiso8583 (an ISO 8583 library independent of
PayMesh's codec), for router/tests/pyiso_host.rs.

It listens on two loopback ports, one framing messages with a 2-byte big-endian binary length
header and one with a 4-digit ASCII length header, both with pyiso8583's `default_ascii` spec
(PayMesh's `ascii_1987` profile), and answers as a VAN would:

- 0800 (sign-on 001, sign-off 002, echo 301): 0810 with field 39 = 00;
- 0100 / 0200 (authorization, sale, refund): 00 with an approval code in field 38, except an
  amount whose last two digits are 51 (declined 51); cards whose BIN starts 4999 are never
  answered (the router must time out and reverse them);
- 0220 / 0221 (completion advices): 0230, 00; 0400 / 0401 (reversals): 0410, 00.

Every message it reads is appended as one line to the log file (`--log`): tab-separated
`name=value` pairs of its length header (`header`), MTI (`t`) and fields (the PAN only as its
first six digits). It prints `READY <binary2 port> <ascii4
port>` once listening, and runs until killed.

    pip install -r router/tests/pyiso_host/requirements.txt
"""

import argparse
import socket
import struct
import sys
import threading

import iso8583
from iso8583.specs import default_ascii

SPEC = default_ascii
LOG_LOCK = threading.Lock()


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(conn, header):
    if header == "binary2":
        h = read_exact(conn, 2)
        if h is None:
            return None
        length = struct.unpack(">H", h)[0]
    else:
        h = read_exact(conn, 4)
        if h is None:
            return None
        length = int(h.decode("ascii"))
    return read_exact(conn, length)


def frame(body, header):
    if header == "binary2":
        return struct.pack(">H", len(body)) + body
    return ("%04d" % len(body)).encode("ascii") + body


def answer(doc):
    """The answer to a request, or None when the host keeps silent."""
    mti = doc["t"]
    out = {"t": mti[:2] + str(int(mti[2]) + 1) + "0"}
    for f in ("2", "3", "4", "7", "11", "12", "13", "32", "37", "41", "42", "49", "70", "90"):
        if f in doc:
            out[f] = doc[f]
    code = "00"
    if mti in ("0100", "0200"):
        if doc.get("2", "").startswith("4999"):
            return None
        if doc.get("4", "").endswith("51"):
            code = "51"
        else:
            out["38"] = "A" + doc["11"][-5:]
    out["39"] = code
    return out


def log(log_path, header, doc):
    entry = [("header", header)]
    for k, v in doc.items():
        if k in ("p", "h"):
            continue
        entry.append((k, v[:6] if k == "2" else v))
    line = "\t".join("%s=%s" % (k, v.replace("\t", " ").replace("\n", " ")) for k, v in entry)
    with LOG_LOCK:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()


def serve_connection(conn, header, log_path):
    with conn:
        while True:
            body = read_frame(conn, header)
            if body is None:
                return
            doc, _ = iso8583.decode(bytearray(body), SPEC)
            log(log_path, header, doc)
            out = answer(doc)
            if out is None:
                continue
            encoded, _ = iso8583.encode(out, SPEC)
            conn.sendall(frame(bytes(encoded), header))


def listen(header, log_path):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def accept_loop():
        while True:
            conn, _ = srv.accept()
            threading.Thread(
                target=serve_connection, args=(conn, header, log_path), daemon=True
            ).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    return srv.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True, help="JSON lines of every message read")
    args = parser.parse_args()
    binary2 = listen("binary2", args.log)
    ascii4 = listen("ascii4", args.log)
    print("READY %d %d" % (binary2, ascii4), flush=True)
    # Until the test kills it (or closes its stdin).
    sys.stdin.read()


if __name__ == "__main__":
    main()
