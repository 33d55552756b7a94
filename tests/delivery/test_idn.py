"""Case 030 on the way out: domains as A-labels (RFC 5890), trace fields
made ASCII for a hop without SMTPUTF8, RFC 6533 3 utf-8-addr-xtext."""

from __future__ import annotations

from roost.delivery.idn import ascii_trace, utf8_addr_xtext, wire_address

OUR_RECEIVED = (
    "Received: from client.example.org (localhost [127.0.0.1])\r\n"
    "\tby mx.example.test (Roost) with UTF8SMTP id 5T22SKCQ2G\r\n"
    "\tfor <{rcpt}>; Fri, 04 Dec 2026 18:11:47 +0000\r\n"
)


def test_wire_address_uses_a_labels_for_the_domain_only() -> None:
    assert wire_address("user@bücher.example.org") == "user@xn--bcher-kva.example.org"
    assert wire_address("user@BÜCHER.test") == "user@xn--bcher-kva.test"
    assert wire_address("josé@bücher.test") == "josé@xn--bcher-kva.test"
    assert wire_address("a@example.org") == "a@example.org"
    assert wire_address("") == ""
    assert wire_address("a@[192.0.2.1]") == "a@[192.0.2.1]"
    # no valid IDN: left as it is, so it still needs SMTPUTF8
    assert not wire_address("a@b\u00fc..test").isascii()


def test_received_for_an_idn_domain_becomes_ascii() -> None:
    message = OUR_RECEIVED.format(rcpt="user@bücher.example.org") + (
        "Subject: idn domain\r\n\r\nbody ü stays\r\n"
    )
    out = ascii_trace(message.encode())
    expected = OUR_RECEIVED.format(rcpt="user@xn--bcher-kva.example.org")
    assert out == (expected + "Subject: idn domain\r\n\r\nbody ü stays\r\n").encode()


def test_received_for_a_utf8_local_part_loses_the_for_clause() -> None:
    message = OUR_RECEIVED.format(rcpt="josé@example.org") + "Subject: x\r\n\r\n"
    out = ascii_trace(message.encode())
    assert out == (
        b"Received: from client.example.org (localhost [127.0.0.1])\r\n"
        b"\tby mx.example.test (Roost) with UTF8SMTP id 5T22SKCQ2G;"
        b" Fri, 04 Dec 2026 18:11:47 +0000\r\nSubject: x\r\n\r\n"
    )


def test_idn_host_names_in_received_become_a_labels() -> None:
    field = "Received: from bücher.test (bücher.test [192.0.2.1]) by mx\r\n"
    out = ascii_trace((field + "\r\n").encode())
    assert out == (
        b"Received: from xn--bcher-kva.test (xn--bcher-kva.test [192.0.2.1])"
        b" by mx\r\n\r\n"
    )


def test_other_utf8_headers_are_left_for_the_caller_to_refuse() -> None:
    message = (
        OUR_RECEIVED.format(rcpt="a@bücher.test") + "Subject: Grüße\r\n\r\n"
    ).encode()
    out = ascii_trace(message)
    assert "Subject: Grüße\r\n".encode() in out
    assert b"for <a@xn--bcher-kva.test>" in out
    # a Received field with UTF-8 that is no host name stays whole
    odd = "Received: by mx (comment ü); date\r\n\r\n".encode()
    assert ascii_trace(odd) == odd
    bad = b"Received: by mx for <a@b\xff.test>\r\n\r\n"
    assert ascii_trace(bad) == bad


def test_ascii_and_headerless_messages_are_untouched() -> None:
    for data in (b"", b"Subject: x\r\n\r\n\xc3\xbc\r\n", b"\r\nbody"):
        assert ascii_trace(data) is data


def test_utf8_addr_xtext() -> None:
    assert utf8_addr_xtext("josé+x=y\\z@x.test") == (
        "jos\\x{E9}\\x{2B}x\\x{3D}y\\x{5C}z@x.test"
    )
    assert utf8_addr_xtext("δ@x.test") == "\\x{3B4}@x.test"


def test_hostile_received_fields_stay_linear() -> None:
    # a sender writes its own Received fields: long runs that made
    # nested-repeat patterns quadratic must pass through in one scan
    runs = [
        "for " + " " * 200_000 + "<ü",
        "a" * 200_000 + "ü",
        "for <" + "ü" * 100_000,
        " " * 200_000 + "for <a@b>",
    ]
    for run in runs:
        field = f"Received: by mx {run}\r\n\r\n".encode()
        out = ascii_trace(field)
        assert out == field or out.isascii()
