"""Envelope grammar and ESMTP parameters (RFC 5321 4.1.2, RFC 1870,
RFC 3461, RFC 6152, RFC 6531)."""

from __future__ import annotations

import pytest

from roost.protocols.smtp import grammar, params
from roost.protocols.smtp.reply import BAD_ADDRESS_SYNTAX, SmtpError


def path(text: str) -> grammar.Path:
    return grammar.parse_path(text, allow_null=True, error=BAD_ADDRESS_SYNTAX)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("<alice@example.test>", "alice@example.test"),
        ("<>", ""),
        ('<"alice"@example.test>', "alice@example.test"),  # 4.1.2 equivalence
        ('<"Jane Doe"@example.org>', '"Jane Doe"@example.org'),
        ('<"a\\"b\\\\c"@example.test>', '"a\\"b\\\\c"@example.test'),
        ('<" "@example.test>', '" "@example.test'),
        ('<"bob> NOTIFY=NEVER"@example.test>', '"bob> NOTIFY=NEVER"@example.test'),
        ("<@a.example,@b.example:user@d.example>", "user@d.example"),
        ("<user@[192.0.2.1]>", "user@[192.0.2.1]"),
        ("<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]"),
        ("<Mixed.Case@Example.TEST>", "Mixed.Case@Example.TEST"),
    ],
)
def test_good_paths(text: str, address: str) -> None:
    assert path(text).text == address


def test_source_route_is_kept_apart() -> None:
    # RFC 5321 4.1.1.3: recognised, stripped, final domain used
    parsed = path("<@hop1.example.org,@hop2.example.org:alice@example.test>")
    assert parsed.route == ("hop1.example.org", "hop2.example.org")
    assert parsed.mailbox == grammar.Mailbox("alice", "example.test")


@pytest.mark.parametrize(
    "text",
    [
        "alice@example.test",
        "<alice>",
        '<just"not"right@example.test>',
        "<@hop1.example.org alice@example.test>",
        "<@:alice@example.test>",
        "<@hop1.example.org:>",
        "<a..b@example.test>",
        "<.a@example.test>",
        "<a@example..test>",
        "<a@example.test.>",
        "<a@-example.test>",
        "<a@[300.1.1.1]>",
        "<a@[IPv6:zz::1]>",
        '<"unterminated@example.test>',
        "<a b@example.test>",
        "<user@remote@example.test>",
    ],
)
def test_bad_paths(text: str) -> None:
    with pytest.raises(SmtpError) as info:
        path(text)
    assert info.value.reply.code == 501


def test_null_path_refused_where_not_allowed() -> None:
    with pytest.raises(SmtpError):
        grammar.parse_path("<>", allow_null=False, error=BAD_ADDRESS_SYNTAX)


def test_utf8_needs_smtputf8() -> None:
    # RFC 6531 3.2 / RFC 5321 2.4
    raw = "<josé@example.org>".encode()
    with pytest.raises(SmtpError) as info:
        grammar.decode_address_bytes(raw, smtputf8=False)
    assert info.value.reply.code == 553
    assert grammar.decode_address_bytes(raw, smtputf8=True) == "<josé@example.org>"
    with pytest.raises(SmtpError) as info:
        grammar.decode_address_bytes(b"<\xff\xfe@example.test>", smtputf8=True)
    assert info.value.reply.code == 501


def test_idn_domains_compare_equal() -> None:
    assert grammar.canonical_domain("Bücher.TEST") == "xn--bcher-kva.test"
    assert grammar.canonical_domain("xn--bcher-kva.test") == "xn--bcher-kva.test"
    assert path("<anna@bücher.test>").text == "anna@bücher.test"


def test_quoted_greater_than_does_not_end_the_path() -> None:
    # case 007 (stalwart mail-send #42)
    found, words = grammar.split_path_and_params(
        '<"bob> NOTIFY=NEVER"@example.test> ORCPT=rfc822;x@y', error=BAD_ADDRESS_SYNTAX
    )
    assert found == '<"bob> NOTIFY=NEVER"@example.test>'
    assert words == ["ORCPT=rfc822;x@y"]


def test_mail_params() -> None:
    got = params.parse_mail_params(
        ["size=1000", "BODY=8bitmime", "SMTPUTF8", "RET=hdrs", "ENVID=QQ+2B1"],
        size_limit=10_000,
    )
    assert got == params.MailParams(1000, "8BITMIME", True, "HDRS", "QQ+1", None)


@pytest.mark.parametrize(
    ("words", "code"),
    [
        (["SIZE=99999999999999999999"], 552),
        (["SIZE=999999999999999999999"], 501),
        (["SIZE=-1"], 501),
        (["SIZE"], 501),
        (["SIZE=1", "SIZE=2"], 501),
        (["BODY=BINARYMIME"], 555),
        (["BODY=7BIT", "body=8BITMIME"], 501),
        (["XFOO=1"], 555),
        (["RET=ALL"], 555),
        (["ENVID=" + "a" * 101], 501),
        (["ENVID=+zz"], 501),
        (["SMTPUTF8=yes"], 501),
        (["=x"], 501),
    ],
)
def test_bad_mail_params(words: list[str], code: int) -> None:
    with pytest.raises(SmtpError) as info:
        params.parse_mail_params(words, size_limit=1_000_000)
    assert info.value.reply.code == code


def test_rcpt_params() -> None:
    got = params.parse_rcpt_params(
        ["notify=success,delay", "ORCPT=rfc822;a+2Bb@example.test"]
    )
    assert got == params.RcptParams(("SUCCESS", "DELAY"), "rfc822;a+b@example.test")
    assert params.parse_rcpt_params(["NOTIFY=never"]).notify == ("NEVER",)


@pytest.mark.parametrize(
    "words",
    [["NOTIFY=NEVER,SUCCESS"], ["NOTIFY=SOMETIMES"], ["ORCPT=rfc822"], ["FOO=1"]],
)
def test_bad_rcpt_params(words: list[str]) -> None:
    with pytest.raises(SmtpError):
        params.parse_rcpt_params(words)
