"""The reference client's error checks: REJECTs and body errors (group protocol-errors), and
declines and refusals provoked from outside (group refusals). A mixin of `ref_client.Run`."""

from pmwire import ANSWER_BIT, MSG, RESULT, STATE, TAG, encode_fields, field, frame

CARD_VAN = "4111111111111111"
FIXES = "inbound-fixes"


def luhn_complete(prefix):
    """`prefix` followed by the digit that makes it pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


class ErrorChecks:
    def protocol_error_checks(self):
        g = "protocol-errors"
        login = encode_fields({"network_id": self.args.network,
                               "credential": self.args.credential})
        kind, auth = self.new_order(what="before-login")
        auth_body = encode_fields(auth)

        def closes_with(text, data, code, cid, offset=None, then_login=False, source=None):
            conn = self.connect(source_ip=source)
            if then_login:
                conn.login(self.args.network, self.args.credential)
            conn.send_raw(data)
            frames = conn.closed_after()
            conn.close()
            rejects = [f for f in frames if f.name == "REJECT"]
            if not self.check(g, f"{text}: one REJECT then close", len(rejects) == 1,
                              repr(frames)):
                return None
            rej = rejects[0]
            self.equal(g, f"{text}: result {code}", rej.get("result_code"), code)
            self.equal(g, f"{text}: correlation id", rej.correlation_id, cid)
            self.check(g, f"{text}: REJECT carries message", "message" in rej.fields,
                       repr(rej.fields))
            self.check(g, f"{text}: the message shows no credential or PAN",
                       self.args.credential not in rej.get("message", "")
                       and CARD_VAN not in rej.get("message", ""), rej.get("message"))
            if offset is not None:
                self.equal(FIXES, f"{text}: error_offset", rej.get("error_offset"), offset)
            return rej

        # Section 7: the first frame must be LOGIN.
        closes_with("request before LOGIN", frame(MSG["AUTHORIZE"], 7, auth_body), 4001, 7)
        # The issue: an unknown type as the first frame gets 4006, not section 7's 4001.
        conn = self.connect()
        conn.send_raw(frame(0x55, 8, b""))
        frames = conn.closed_after()
        conn.close()
        self.r.equal(FIXES, self.name("unknown type as the first frame: REJECT 4001, then close"),
                     [(f.name, f.get("result_code")) for f in frames], [("REJECT", 4001)])
        # Section 1 decoding order, before and after login.
        closes_with("bad magic", frame(MSG["LOGIN"], 9, login, magic=b"XX"), 4003, 0,
                    offset=0)
        closes_with("unsupported version", frame(MSG["LOGIN"], 10, login, version=2), 4005, 10,
                    offset=2)
        closes_with("checksum mismatch",
                    frame(MSG["HEARTBEAT"], 11, b"", checksum=0x12345678), 4004, 0,
                    offset=20, then_login=True)
        # Only the header of an oversized frame: the server must not wait for the body.
        oversized = frame(MSG["AUTHORIZE"], 12, b"", body_len=16385)
        closes_with("body_len over the limit", oversized, 4007, 12, offset=16, then_login=True)
        # A LOGIN with an invalid body: REJECT with the error's code, close.
        closes_with("LOGIN without credential",
                    frame(MSG["LOGIN"], 13, encode_fields({"network_id": self.args.network})),
                    2001, 13, source=self.args.spare_source_ip)
        closes_with("LOGIN with a must-understand tag",
                    frame(MSG["LOGIN"], 14, login + field(0x8001, b"x")), 4009, 14,
                    source=self.args.spare_source_ip)
        # A wrong credential: LOGIN_ANSWER 4002 without message, then close. From an address
        # of its own, so that the failed-login throttle does not slow the other checks.
        conn = self.connect(source_ip=self.args.spare_source_ip)
        ans = conn.login(self.args.network, "not-the-credential")
        self.equal(g, "wrong credential: LOGIN_ANSWER", ans.name, "LOGIN_ANSWER")
        self.equal(g, "wrong credential: 4002 AUTH_FAILED", ans.get("result_code"), 4002)
        self.check(g, "wrong credential: no message", "message" not in ans.fields,
                   repr(ans.fields))
        self.equal(g, "wrong credential: then close", conn.closed_after(), [])
        conn.close()
        conn = self.connect(source_ip=self.args.spare_source_ip)
        ans = conn.login("NO-SUCH-NETWORK", self.args.credential)
        self.equal(g, "unknown network: 4002 AUTH_FAILED", ans.get("result_code"), 4002)
        self.check(g, "unknown network: no message", "message" not in ans.fields,
                   repr(ans.fields))
        conn.close()

        # Errors that keep the session open.
        conn = self.session()

        def stays(text):
            self.equal(g, f"{text}: session stays open", conn.call("HEARTBEAT").name,
                       "HEARTBEAT_ANSWER")

        cid = conn.new_id()
        conn.send_raw(frame(0x55, cid, b""))
        rej = conn.recv()
        self.equal(g, "unknown message type: REJECT 4006", (rej.name, rej.get("result_code")),
                   ("REJECT", 4006))
        self.equal(g, "unknown message type: the frame's correlation id", rej.correlation_id,
                   cid)
        stays("unknown message type")
        cid = conn.new_id()
        conn.send_raw(frame(MSG["AUTHORIZE_ANSWER"], cid, encode_fields({"result_code": 0})))
        rej = conn.recv()
        self.equal(g, "server-to-client type from the client: REJECT 4006",
                   (rej.name, rej.get("result_code")), ("REJECT", 4006))
        stays("server-to-client type")
        cid = conn.new_id()
        conn.send_raw(frame(MSG["AUTHORIZE_ANSWER"], cid, b"\x00\x00\x00\x00"))
        rej = conn.recv()
        self.r.equal(FIXES, self.name("server-to-client type with a bad body: REJECT 4006"),
                     (rej.name, rej.get("result_code")), ("REJECT", 4006))
        stays("server-to-client type with a bad body")
        # Body errors of a transaction request: its answer type with 2001 and a message.
        body_errors = {
            "amount zero": encode_fields(dict(auth, amount=0)),
            "amount over 999999999999": encode_fields(dict(auth, amount=10**12)),
            "currency not ISO 4217": encode_fields(dict(auth, currency=999)),
            "missing order_id": encode_fields({k: v for k, v in auth.items()
                                               if k != "order_id"}),
            "tag 0": auth_body + field(0, b""),
            "a tag twice": auth_body + field(TAG["description"], b"a")
            + field(TAG["description"], b"b"),
            "truncated field": auth_body + b"\x00\x12\x00\x05ab",
            "expiry month 13": encode_fields(dict(auth, expiry="2913")),
            "pan with a letter": encode_fields(dict(auth, pan="41111111111111x1")),
            "cvv in a CAPTURE": None,
            "merchant_id of 16 characters": encode_fields(dict(auth, merchant_id="M" * 16)),
            "known tag of the wrong width (amount in 4 bytes)":
                encode_fields({k: v for k, v in auth.items() if k != "amount"})
                + field(TAG["amount"], b"\x00\x00\x01\x00"),
            "device fields without signature": encode_fields(
                dict(auth, device_id="x", device_counter=1)),
        }
        for text, body in body_errors.items():
            msg_type = MSG["AUTHORIZE"]
            if body is None:
                msg_type = MSG["CAPTURE"]
                body = encode_fields({"merchant_id": auth["merchant_id"],
                                      "order_id": auth["order_id"], "cvv": "123"})
            cid = conn.new_id()
            conn.send_raw(frame(msg_type, cid, body))
            ans = conn.recv()
            self.equal(g, f"{text}: the request's answer type", ans.msg_type,
                       msg_type | ANSWER_BIT, repr(ans))
            self.equal(g, f"{text}: 2001 INVALID_REQUEST", ans.get("result_code"), 2001,
                       repr(ans.fields))
            self.check(g, f"{text}: a message names the problem", bool(ans.get("message")),
                       repr(ans.fields))
            self.check(g, f"{text}: no server_txn_id allocated", "server_txn_id" not in ans.fields,
                       repr(ans.fields))
        # Unknown tags below 0x8000 are skipped; at or above, 4009 in the answer.
        kind, extra = self.new_order(what="unknown-tag")
        cid = conn.new_id()
        conn.send_raw(frame(MSG[kind], cid, encode_fields(extra) + field(0x7001, b"future")))
        ans = conn.recv()
        self.expect_result(g, "an unknown optional tag is skipped", ans, "APPROVED")
        cid = conn.new_id()
        kind, crit = self.new_order(what="critical-tag")
        conn.send_raw(frame(MSG[kind], cid, encode_fields(crit) + field(0x8001, b"x")))
        ans = conn.recv()
        self.equal(g, "a must-understand tag: the transaction answer with 4009",
                   (ans.msg_type, ans.get("result_code")), (MSG[kind] | ANSWER_BIT, 4009))
        # Payment methods.
        kind, bad_method = self.new_order(what="method9", method={"payment_method": 9})
        ans = self.txn(conn, g, "payment_method 9", kind, bad_method)
        self.expect_result(g, "payment_method 9", ans, "UNSUPPORTED_PAYMENT_METHOD")
        tok = {"merchant_id": self.args.merchant, "order_id": self.order_id("tok-method"),
               "pan": CARD_VAN, "expiry": "3012", "payment_method": 3,
               "phone_number": "821012345678", "carrier": "SKT"}
        ans = self.txn(conn, g, "TOKENIZE with payment_method 3", "TOKENIZE", tok)
        self.expect_result(g, "TOKENIZE with payment_method 3", ans, "UNSUPPORTED_PAYMENT_METHOD")
        # Invalid body of a non-transaction type: REJECT with the code, session stays.
        cid = conn.new_id()
        conn.send_raw(frame(MSG["HEARTBEAT"], cid, field(0, b"")))
        rej = conn.recv()
        self.equal(g, "HEARTBEAT with a tag-0 field: REJECT 2001",
                   (rej.name, rej.get("result_code")), ("REJECT", 2001))
        stays("invalid HEARTBEAT body")
        # A correlation id already in flight: REJECT 4003, not processed; the original is
        # answered.
        kind, slow = self.new_order(what="dup-cid", method=self.card(self.args.slow_pan))
        cid = conn.send(kind, slow)
        kind2, other = self.new_order(what="dup-cid-2")
        conn.send(kind2, other, correlation_id=cid)
        frames = [conn.recv(), conn.recv()]
        rejects = [f for f in frames if f.name == "REJECT"]
        answers = [f for f in frames if f.name == "AUTHORIZE_ANSWER"]
        self.check(g, "correlation id in flight: one REJECT 4003 and the original's answer",
                   len(rejects) == 1 and rejects[0].get("result_code") == 4003
                   and len(answers) == 1 and answers[0].get("order_id") == slow["order_id"],
                   repr(frames))
        if rejects:
            # The issue asks that the REJECT not carry the in-flight request's id, which a
            # client matching by id would resolve wrongly; section 1's id for frames the server
            # sends on its own is 0.
            self.r.check(FIXES, self.name("REJECT 4003 for an id in flight does not carry it"),
                         rejects[0].correlation_id != cid, repr(rejects[0]))
        q = conn.call("INQUIRY", {"merchant_id": other["merchant_id"],
                                  "order_id": other["order_id"]})
        self.expect_result(g, "the rejected duplicate-id request was not processed", q,
                           "NOT_FOUND")
        stays("correlation id in flight")
        conn.close()

    def refusal_checks(self):
        g = "refusals"
        conn = self.session()
        declines = [
            ("amount ending in 51 (host 51)", dict(amount=125051), "INSUFFICIENT_FUNDS"),
            ("amount ending in 05 (host 05)", dict(amount=125005), "DO_NOT_HONOR"),
            ("card failing Luhn (host 14)", dict(pan="4111111111111112"), "INVALID_CARD"),
            ("expired card (host 54)", dict(expiry="2001"), "EXPIRED_CARD"),
        ]
        for text, change, want in declines:
            method = self.card()
            method.update({k: v for k, v in change.items() if k in method})
            kind, req = self.new_order(what="decline", amount=change.get("amount", 125000),
                                       method=method)
            ans = self.txn(conn, g, text, kind, req)
            self.expect_result(g, text, ans, want)
            self.equal(g, f"{text}: state declined", ans.get("state"), STATE["DECLINED"])
            self.check(g, f"{text}: upstream_response_code given",
                       "upstream_response_code" in ans.fields, repr(ans.fields))
        refusals = [
            ("unknown merchant", self.new_order(merchant="MNOSUCH", what="r"), "UNKNOWN_MERCHANT"),
            ("disabled merchant", self.new_order(merchant=self.args.disabled_merchant, what="r"),
             "MERCHANT_DISABLED"),
            ("over the single-transaction limit",
             self.new_order(amount=self.args.single_limit + 1, what="r"), "AMOUNT_OVER_LIMIT"),
            ("unroutable BIN", self.new_order(method=self.card(luhn_complete("300000000000000")),
                                              what="r"), "UNROUTABLE"),
        ]
        if self.args.limited_merchant:
            refusals += [
                ("currency the merchant does not take",
                 self.new_order(merchant=self.args.limited_merchant, currency=840, what="r"),
                 "UNSUPPORTED_CURRENCY"),
            ]
        for text, (kind, req), want in refusals:
            ans = self.txn(conn, g, text, kind, req)
            self.expect_result(g, text, ans, want)
            self.check(g, f"{text}: no server_txn_id", "server_txn_id" not in ans.fields,
                       repr(ans.fields))
        if self.args.limited_merchant:
            # The daily limit: a small order within it, then one of the whole limit, beyond the
            # day's total (whatever other runs spent of it, as long as it is not all spent).
            first = self.new_order(merchant=self.args.limited_merchant, amount=1, what="daily")
            self.expect_result(g, "within the daily limit", conn.call(*first), "APPROVED")
            kind, second = self.new_order(merchant=self.args.limited_merchant,
                                          amount=self.args.limited_daily, what="daily")
            ans = self.txn(conn, g, "over the daily limit", kind, second)
            self.expect_result(g, "over the daily limit", ans, "DAILY_LIMIT_EXCEEDED")
        # Follow-ups in the wrong state or over the amounts.
        kind, auth = self.new_order(what="follow")
        self.expect_result(g, "AUTHORIZE to follow up", conn.call(kind, auth), "APPROVED")
        ref = {"merchant_id": auth["merchant_id"], "order_id": auth["order_id"]}
        x = self.txn(conn, g, "CANCEL", "CANCEL", dict(ref, request_id="X1"))
        self.expect_result(g, "CANCEL", x, "APPROVED")
        c = self.txn(conn, g, "CAPTURE of a cancelled payment", "CAPTURE",
                     dict(ref, request_id="C1"))
        self.expect_result(g, "CAPTURE of a cancelled payment", c, "INVALID_STATE")
        r = self.txn(conn, g, "REFUND of an uncaptured payment", "REFUND",
                     dict(ref, request_id="R1", amount=1000, currency=410))
        self.check(g, "REFUND of a cancelled payment: 2007 or 2009",
                   r.get("result_code") in (2007, 2009), repr(r.fields))
        kind, sale = self.new_order("SALE", what="over-refund", amount=20000)
        self.expect_result(g, "SALE to refund", conn.call(kind, sale), "APPROVED")
        r = self.txn(conn, g, "REFUND over the captured amount", "REFUND",
                     {"merchant_id": sale["merchant_id"], "order_id": sale["order_id"],
                      "request_id": "R1", "amount": 20001, "currency": 410})
        self.expect_result(g, "REFUND over the captured amount", r, "AMOUNT_EXCEEDS_AVAILABLE")
        for kind in ("CAPTURE", "CANCEL", "INQUIRY"):
            req = {"merchant_id": self.args.merchant, "order_id": self.order_id("missing")}
            if kind != "INQUIRY":
                req["request_id"] = "N1"
            ans = self.txn(conn, g, f"{kind} of a missing order", kind, req)
            self.expect_result(g, f"{kind} of a missing order", ans, "NOT_FOUND")
        ans = self.txn(conn, g, "INQUIRY of a missing server_txn_id", "INQUIRY",
                       {"server_txn_id": 2**62 + 12345})
        self.expect_result(g, "INQUIRY of a missing server_txn_id", ans, "NOT_FOUND")
        # Partial captures (the issue: several up to the authorization, over it 2009).
        kind, auth = self.new_order(what="captures", amount=90000)
        self.expect_result(g, "AUTHORIZE for partial captures", conn.call(kind, auth), "APPROVED")
        ref = {"merchant_id": auth["merchant_id"], "order_id": auth["order_id"],
               "currency": 410}
        c1 = conn.call("CAPTURE", dict(ref, request_id="P1", amount=30000))
        self.expect_result(g, "first partial CAPTURE", c1, "APPROVED")
        c2 = conn.call("CAPTURE", dict(ref, request_id="P2", amount=30000))
        self.r.equal(FIXES, self.name("second partial CAPTURE within the authorization"),
                     c2.get("result_code"), 0, repr(c2.fields))
        self.r.equal(FIXES, self.name("second partial CAPTURE: captured_amount"),
                     c2.get("captured_amount"), 60000)
        c3 = conn.call("CAPTURE", dict(ref, request_id="P3", amount=40000))
        self.r.equal(FIXES, self.name("CAPTURE over what remains: 2009"),
                     c3.get("result_code"), RESULT["AMOUNT_EXCEEDS_AVAILABLE"], repr(c3.fields))
        conn.close()
