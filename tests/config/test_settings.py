"""Typed settings: defaults, file:line errors, warnings, postconf output."""

import os
import types
import typing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

import roost.config as config
from roost.config import ConfigError, Settings, from_values, load, load_text


def write(tmp_path: Path, text: str) -> Path:
    main_cf = tmp_path / "main.cf"
    main_cf.write_text(text, encoding="utf-8")
    return main_cf


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROOST_CONFIG", raising=False)
    s = load(None)
    assert s.myhostname == config.local_hostname()
    assert s.myorigin == s.myhostname
    assert s.mydestination == [
        s.myhostname,
        f"localhost.{s.mydomain}",
        "localhost",
    ]
    assert s.mynetworks == ["127.0.0.0/8", "::1/128"]
    assert s.inet_interfaces == ["127.0.0.1", "::1"]
    assert s.message_size_limit == 10240000
    assert s.recipient_delimiter == "+"
    assert s.queue_directory == s.data_directory / "queue"
    assert s.mailbox_directory == s.data_directory / "mail"
    assert s.users_file == s.data_directory / "users"
    assert s.alias_maps == [str(s.data_directory / "aliases")]
    assert (s.smtp_port, s.submission_port, s.smtps_port) == (25, 587, 465)
    assert (s.imap_port, s.imaps_port) == (143, 993)
    assert (s.pop3_port, s.pop3s_port) == (110, 995)
    assert s.tls_cert_file is None
    assert s.tls_key_file is None
    assert s.smtpd_recipient_limit == 1000
    assert s.smtpd_client_connection_count_limit == 50
    assert (s.smtpd_timeout, s.imap_idle_timeout, s.pop3_timeout) == (
        300,
        1800,
        600,
    )
    assert (s.minimal_backoff_time, s.maximal_backoff_time) == (300, 4000)
    assert s.maximal_queue_lifetime == 5 * 86400
    assert s.bounce_queue_lifetime == 5 * 86400
    assert (s.delay_warning_time, s.queue_run_delay) == (0, 300)
    assert s.relayhost == ""
    assert s.relay_domains == []
    assert s.smtpd_relay_restrictions == [
        "permit_mynetworks",
        "permit_sasl_authenticated",
        "defer_unauth_destination",
    ]
    assert s.smtpd_recipient_restrictions == []
    assert s.transport_maps == []
    assert s.dns_resolver == []
    assert s.smtp_bind_address == ""
    assert s.log_level == "info"
    assert s.get("2bounce_notice_recipient") == "postmaster"
    assert s.bounce_notice_recipient == "postmaster"
    assert s.smtp_tls_security_level == "may"
    assert s.default_destination_concurrency_limit == 20
    assert s.warnings == ()


def test_data_directory_default_depends_on_user() -> None:
    s = load_text("")
    if os.geteuid() == 0:
        assert s.data_directory == Path("/var/lib/roost")
    else:
        assert s.data_directory == Path.home() / ".local/share/roost"


def _accepts(annotation: object, value: object) -> bool:
    if isinstance(annotation, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(isinstance(x, item) for x in value)
    assert isinstance(annotation, type)
    return isinstance(value, annotation)


def test_every_parameter_value_has_its_declared_type(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    s = from_values({"tls_cert_file": str(cert), "relay_domains": "a.test"})
    hints = typing.get_type_hints(Settings)
    for name, row in config.PARAMETERS.items():
        value = getattr(s, row.name)
        assert _accepts(hints[row.name], value), (name, value)


def test_mydomain_from_myhostname() -> None:
    assert load_text("myhostname = mx.Example.TEST").mydomain == "example.test"
    assert load_text("myhostname = mx").mydomain == "localdomain"


def test_expansion_into_lists_is_lowercased() -> None:
    s = load_text(
        "myhostname = MX.example.test\n"
        "extra = Other.TEST\n"
        "mydestination = $myhostname, ${extra}, localhost.$mydomain\n"
    )
    assert s.mydestination == [
        "mx.example.test",
        "other.test",
        "localhost.example.test",
    ]
    assert s.warnings == ()


def test_file_values_and_postfix_units(tmp_path: Path) -> None:
    main_cf = write(
        tmp_path,
        "smtp_port = 2525\n"
        "imap_port = none\n"
        "maximal_queue_lifetime = 2\n"
        "bounce_queue_lifetime = 12h\n"
        "delay_warning_time = 4\n"
        "smtpd_timeout = 5m\n"
        "minimal_backoff_time = 1m\n"
        "maximal_backoff_time = 1w\n",
    )
    s = load(str(main_cf))
    assert (s.smtp_port, s.imap_port) == (2525, None)
    assert s.maximal_queue_lifetime == 2 * 86400  # bare number: days
    assert s.bounce_queue_lifetime == 12 * 3600
    assert s.delay_warning_time == 4 * 3600  # bare number: hours
    assert s.smtpd_timeout == 300
    assert (s.minimal_backoff_time, s.maximal_backoff_time) == (60, 604800)
    assert s.config_file == main_cf


def test_load_accepts_the_directory(tmp_path: Path) -> None:
    write(tmp_path, "smtp_port = 2525\n")
    assert load(str(tmp_path)).smtp_port == 2525


def test_load_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "pop3_port = 1110\n")
    monkeypatch.setenv("ROOST_CONFIG", str(tmp_path))
    assert load(None).pop3_port == 1110


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path / "nope.cf"))
    assert info.value.errors == [f"{tmp_path / 'nope.cf'}: no such file"]
    with pytest.raises(ConfigError):
        load(str(tmp_path))  # a directory without main.cf


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    write(tmp_path, "data_directory = data\nalias_maps = hash:aliases, /etc/al\n")
    s = load(str(tmp_path))
    assert s.data_directory == tmp_path / "data"
    assert s.users_file == tmp_path / "data" / "users"
    assert s.alias_maps == [str(tmp_path / "aliases"), "/etc/al"]


def test_unknown_parameter_is_a_warning_with_file_and_line(tmp_path: Path) -> None:
    main_cf = write(tmp_path, "# c\nsmtp_port = 2525\nbogus_thing = 1\n")
    s = load(str(main_cf))
    assert s.warnings == (f"{main_cf}:3: unknown parameter bogus_thing",)


def test_own_parameter_used_by_expansion_is_not_warned() -> None:
    s = load_text("mydomains = a.test b.test\nrelay_domains = $mydomains\n")
    assert s.relay_domains == ["a.test", "b.test"]
    assert s.warnings == ()


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("smtp_port = abc", "smtp_port: bad port 'abc'"),
        ("smtp_port = 70000", "smtp_port: bad port '70000'"),
        ("message_size_limit = -1", "bad numerical value '-1'"),
        ("message_size_limit = 10MB", "bad numerical value '10MB'"),
        ("smtpd_recipient_limit = 0", "value 0 is less than 1"),
        ("smtpd_timeout = 5y", "bad time value '5y'"),
        ("mynetworks = 10.0.0.0/33", "bad network '10.0.0.0/33'"),
        ("mynetworks = 10.0.0.1/8", "non-null host address bits in '10.0.0.1/8'"),
        ("mynetworks = [10.0.0.0]/8", "brackets are for IPv6"),
        ("mynetworks = hash:/etc/nets", "lookup tables in mynetworks"),
        ("inet_interfaces = eth0", "bad interface 'eth0'"),
        ("inet_interfaces =", "inet_interfaces is empty"),
        ("smtpd_tls_auth_only = maybe", "bad boolean value 'maybe'"),
        ("myhostname = bad_host", "bad host name 'bad_host'"),
        ("mydestination = ok.test, -bad.test", "bad host name '-bad.test'"),
        ("alias_maps = nis:mail.aliases", "unsupported lookup table type 'nis'"),
        ("relayhost = [mx.test", "bad relayhost"),
        ("relayhost = [mx.test]:99999", "bad relayhost"),
        ("dns_resolver = 127.0.0.1:0", "bad resolver port"),
        ("dns_resolver = resolver.test", "bad resolver address"),
        ("smtp_bind_address = somewhere", "bad IP address"),
        ("log_level = loud", "bad value 'loud'"),
        ("smtp_tls_security_level = always", "bad value 'always'"),
        ("smtpd_relay_restrictions = permit_everyone", "unknown restriction"),
        ("smtpd_recipient_restrictions = check_recipient_access", "needs an argument"),
        ("recipient_delimiter = @", "bad recipient_delimiter"),
        ("tls_cert_file = /nonexistent/cert.pem", "no such file"),
        ("data_directory = /srv/my mail", "white space or comma in path"),
        ("myorigin = ${myhostname", "missing '}'"),
    ],
)
def test_bad_values_are_errors_with_file_and_line(
    tmp_path: Path, line: str, needle: str
) -> None:
    main_cf = write(tmp_path, f"# first\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load(str(main_cf))
    (error,) = info.value.errors
    assert error.startswith(f"{main_cf}:2: ")
    assert needle in error


def test_all_errors_are_reported_together(tmp_path: Path) -> None:
    main_cf = write(tmp_path, "smtp_port = x\n oops\nfoo bar\nimap_port = y\n")
    with pytest.raises(ConfigError) as info:
        load(str(main_cf))
    lines = [e.split(": ")[0] for e in info.value.errors]
    assert sorted(lines) == [f"{main_cf}:{n}" for n in (1, 3, 4)]


def test_recursive_expansion_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("myhostname = $myorigin.test\nmyorigin = $myhostname\n")
    assert any("recursive expansion" in e for e in info.value.errors)


def test_self_reference_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("mydestination = $mydestination, other.test\n")
    assert (
        "recursive expansion: mydestination -> mydestination" in (info.value.errors[0])
    )


def test_undefined_name_expands_to_nothing() -> None:
    s = load_text("mydestination = a.test $nothing_here\n")
    assert s.mydestination == ["a.test"]


def test_conditional_expansion() -> None:
    s = load_text(
        "relayhost = [smart.test]\n"
        "smtp_helo_name = ${relayhost?relay.test}${relayhost:direct.test}\n"
    )
    assert s.smtp_helo_name == "relay.test"


def test_mynetworks_forms() -> None:
    s = load_text("mynetworks = 127.0.0.0/8, [::1]/128 192.0.2.7 [2001:db8::]/32\n")
    assert s.mynetworks == ["127.0.0.0/8", "::1/128", "192.0.2.7/32", "2001:db8::/32"]


def test_inet_interfaces_forms() -> None:
    assert load_text("inet_interfaces = all").inet_interfaces == ["0.0.0.0", "::"]
    s = load_text("inet_interfaces = 127.0.0.1, [::1], 127.0.0.1")
    assert s.inet_interfaces == ["127.0.0.1", "::1"]


def test_key_file_defaults_to_cert_file(tmp_path: Path) -> None:
    cert = tmp_path / "both.pem"
    cert.write_text("x")
    s = from_values({"tls_cert_file": str(cert)})
    assert s.tls_key_file == cert


def test_two_listeners_on_one_port_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("smtp_port = 2525\nsubmission_port = 2525\n")
    assert "port 2525 is also" in info.value.errors[0]
    s = load_text("smtp_port = 0\nsubmission_port = 0\nimap_port = none\n")
    assert (s.smtp_port, s.submission_port, s.imap_port) == (0, 0, None)


def test_backoff_order_is_checked() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("minimal_backoff_time = 2h\nmaximal_backoff_time = 1h\n")
    assert "main.cf:2: maximal_backoff_time must not" in info.value.errors[0]


def test_restrictions_with_tables() -> None:
    s = load_text(
        "smtpd_recipient_restrictions = permit_mynetworks,\n"
        "    check_recipient_access hash:/etc/access, reject_unauth_destination\n"
    )
    assert s.smtpd_recipient_restrictions == [
        "permit_mynetworks",
        "check_recipient_access",
        "hash:/etc/access",
        "reject_unauth_destination",
    ]


def test_show_sorted_like_postconf(tmp_path: Path) -> None:
    main_cf = write(
        tmp_path,
        "smtp_port = 2525\nmyhostname = mx.example.test\nunknown_x = 1\n",
    )
    s = load(str(main_cf))
    assert s.show(non_default_only=True) == [
        "myhostname = mx.example.test",
        "smtp_port = 2525",
    ]
    everything = s.show()
    names = [line.partition(" =")[0] for line in everything]
    assert names == sorted(config.parameter_names())
    assert "myorigin = $myhostname" in everything
    assert "smtp_port = 2525" in everything
    assert "dns_resolver =" in everything


def test_from_values_and_replace(tmp_path: Path) -> None:
    s = from_values({"data_directory": str(tmp_path), "smtp_port": "0"})
    assert s.mailbox_directory == tmp_path / "mail"
    assert s.replace(smtp_port=2626).smtp_port == 2626
    with pytest.raises(ConfigError):
        from_values({"smtp_port": "x"})


def test_delivery_classes() -> None:
    s = load_text("")
    assert s.allow_mail_to_commands == []
    assert s.allow_mail_to_files == ["alias"]
    s = load_text("allow_mail_to_commands = alias, Forward\n")
    assert s.allow_mail_to_commands == ["alias", "forward"]
    with pytest.raises(ConfigError) as info:
        load_text("allow_mail_to_files = everywhere\n")
    assert "bad value 'everywhere'" in info.value.errors[0]


def test_every_parameter_has_help_and_describe_lists_all() -> None:
    s = load_text("myhostname = mx.example.test\n")
    for name, row in config.PARAMETERS.items():
        assert row.metadata["doc"], name
    lines = s.describe()
    names = [line.partition(" =")[0] for line in lines[0::2]]
    assert names == config.parameter_names()
    assert all(line.startswith("    ") for line in lines[1::2])
    # defaults as they apply on this configuration
    assert "mydomain = example.test" in lines
    assert "myorigin = $myhostname" in lines
    table = s.describe(markdown=True)
    assert len(table) == 2 + len(config.PARAMETERS)
    assert all(row.count(" | ") == 2 for row in table[2:])


NAMES = st.sampled_from([*config.parameter_names(), "own_name"])
LINES = st.tuples(NAMES, st.text(alphabet="$ab{}():?,/ [].0123456789", max_size=20))


@hyp_settings(max_examples=200)
@given(st.lists(LINES, max_size=6))
def test_any_file_loads_or_raises_config_error(lines: list[tuple[str, str]]) -> None:
    text = "".join(f"{name} = {value}\n" for name, value in lines)
    try:
        errors = []
        load_text(text, base_dir=Path("/base")).show()
    except ConfigError as exc:
        errors = exc.errors
    assert all(e.startswith("main.cf:") for e in errors)


def test_error_in_a_default_points_at_the_line_it_came_from() -> None:
    text = "# c\ndata_directory = /srv/roost\nqueue_directory = relative\n"
    assert load_text(text, base_dir=Path("/b")).queue_directory == Path("/b/relative")
    with pytest.raises(ConfigError) as info:
        load_text("# c\nmyhostname = mx.test\nmydomain_x = 1\nmyorigin = x_y\n")
    assert info.value.errors == ["main.cf:4: myorigin: bad host name 'x_y'"]
    with pytest.raises(ConfigError) as info:
        load_text("# c\n\nmail_name = a\nsmtp_helo_name = $helo_x\nhelo_x = -x\n")
    assert info.value.errors[0].startswith("main.cf:4: smtp_helo_name")
    with pytest.raises(ConfigError) as info:
        load_text("# c\nmyhostname = $base\nbase = my_host\n")
    assert info.value.errors == ["main.cf:2: myhostname: bad host name 'my_host'"]


def test_errors_carry_the_warnings_found_with_them() -> None:
    # `roost config check` reports both at once, each with file:line
    text = "bogus_name = 1\nsmtp_port = x\nminimal_backoff_time = 9h\n"
    with pytest.raises(ConfigError) as info:
        load_text(text)
    assert info.value.warnings == ["main.cf:1: unknown parameter bogus_name"]
    assert [e.split(": ")[0] for e in info.value.errors] == ["main.cf:2"]
    # an error found only when the values are checked together
    with pytest.raises(ConfigError) as info:
        load_text("bogus_name = 1\n" + text.split("\n", 2)[2])
    assert info.value.warnings == ["main.cf:1: unknown parameter bogus_name"]
    assert info.value.errors == [
        "main.cf:2: maximal_backoff_time must not be less than minimal_backoff_time"
    ]


def test_port_clash_with_a_default_names_the_line_that_set_it() -> None:
    """Found by Hypothesis: imap_port = 465 meets smtps_port's default."""
    with pytest.raises(ConfigError) as info:
        load_text("myhostname = mx.example.test\nimap_port = 465\n")
    assert any(
        e.startswith("main.cf:2:") and "port 465" in e for e in info.value.errors
    )
