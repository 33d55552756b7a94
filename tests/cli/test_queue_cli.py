"""sendmail, mailq/postqueue, postsuper and postcat against a real queue
directory, as separate processes (the console scripts' modules)."""

import asyncio
import json
import os
import re
import subprocess
import sys
import time

from roost.queue import QueueState, Spool, encode_queue_file
from roost.queue.showq import format_mailq
from tests.queue.support import MESSAGE, envelope, make_rig

REFUSED = "connect to mx.example.org[192.0.2.1]:25: Connection refused"


def write_config(tmp_path, *, with_queue=True):
    """main.cf under tmp_path; with_queue: the queue directory exists, as
    after the server's first start (the tools never create it)."""
    conf = tmp_path / "main.cf"
    conf.write_text(
        "myhostname = mx.example.test\n"
        "mydestination = $myhostname, example.test\n"
        f"data_directory = {tmp_path / 'data'}\n"
        f"alias_maps = hash:{tmp_path / 'aliases'}\n"
    )
    (tmp_path / "aliases").write_text("")
    if with_queue:
        Spool(tmp_path / "data" / "queue").close()
    return conf


def cli(module, *args, stdin=b"", env=None):
    module_name, func = module.split(":")
    code = f"import sys; from roost.cli.{module_name} import {func}; sys.exit({func}())"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def fill_queue(spool):
    """Three messages: deferred (two reasons), held, null sender new."""

    async def go():
        first = await spool.enqueue(
            envelope(
                "a@example.org",
                "b@example.org",
                "c@example.org",
                arrival=1_700_000_000.0,
            ),
            MESSAGE,
        )
        second = await spool.enqueue(
            envelope("d@example.org", arrival=1_700_000_100.0), b"x" * 3000
        )
        third = await spool.enqueue(
            envelope("e@example.org", sender="", arrival=1_700_000_200.0), MESSAGE
        )
        return first, second, third

    first, second, third = asyncio.run(go())
    spool.close()
    spool.write_state_now(
        first,
        QueueState(
            attempts=2,
            done={1: "sent"},
            reasons={
                0: "connect to mx.example.org[192.0.2.1]:25: Connection refused",
                2: "connect to mx.example.org[192.0.2.1]:25: Connection refused",
            },
        ),
    )
    spool.write_state_now(
        second, QueueState(hold=True, attempts=1, reasons={0: "mailbox full"})
    )
    return first, second, third


def test_mailq_format_is_postfix_compatible(tmp_path):
    conf = write_config(tmp_path)
    spool = Spool(tmp_path / "data" / "queue")
    first, second, third = fill_queue(spool)
    done = cli("postqueue:mailq_main", "-c", str(conf))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().split("\n")
    reason = "connect to mx.example.org[192.0.2.1]:25: Connection refused"
    t1 = time.asctime(time.localtime(1_700_000_000))[:20]
    t2 = time.asctime(time.localtime(1_700_000_100))[:20]
    t3 = time.asctime(time.localtime(1_700_000_200))[:20]
    size = len(MESSAGE)
    assert lines == [
        "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------",
        f"{first:<11} {size:>7} {t1} ann@example.org",
        " " * (76 - len(reason)) + f"({reason})",
        " " * 41 + "a@example.org",
        " " * 41 + "c@example.org",
        "",
        f"{second + '!':<11} {3000:>7} {t2} ann@example.org",
        " " * (76 - len("mailbox full")) + "(mailbox full)",
        " " * 41 + "d@example.org",
        "",
        f"{third + '*':<11} {size:>7} {t3} MAILER-DAEMON",
        " " * 41 + "e@example.org",
        "",
        f"-- {(2 * size + 3000) // 1024} Kbytes in 3 Requests.",
        "",
    ]


def test_mailq_empty_queue(tmp_path):
    conf = write_config(tmp_path)
    done = cli("postqueue:main", "-c", str(conf), "-p")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"Mail queue is empty\n"
    done = cli("postqueue:main", "-j", env={"ROOST_CONFIG": str(tmp_path)})
    assert done.stdout == b""


def test_one_request_singular():
    from roost.queue.spool import QueueEntry

    env = envelope("x@example.org", arrival=1_700_000_000.0)
    env.queue_id, env.size = "ABCDEFGHJK", 2048
    out = format_mailq([QueueEntry("deferred", "ABCDEFGHJK", env, QueueState(1), 0)])
    assert out.endswith("\n-- 2 Kbytes in 1 Request.\n")


def test_postqueue_json_fields(tmp_path):
    conf = write_config(tmp_path)
    first, second, third = fill_queue(Spool(tmp_path / "data" / "queue"))
    done = cli("postqueue:main", "-c", str(conf), "-j")
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [r["queue_id"] for r in records] == [first, second, third]
    assert records[0] == {
        "queue_name": "deferred",
        "queue_id": first,
        "arrival_time": 1_700_000_000,
        "message_size": len(MESSAGE),
        "forced_expire": False,
        "sender": "ann@example.org",
        "recipients": [
            {
                "address": "a@example.org",
                "delay_reason": REFUSED,
            },
            {
                "address": "c@example.org",
                "delay_reason": REFUSED,
            },
        ],
    }
    assert records[1]["queue_name"] == "hold"
    assert records[2]["queue_name"] == "active"
    assert records[2]["recipients"] == [{"address": "e@example.org"}]


def test_postsuper_without_server(tmp_path):
    conf = write_config(tmp_path)
    spool = Spool(tmp_path / "data" / "queue")
    first, second, third = fill_queue(spool)

    done = cli("postsuper:main", "-c", str(conf), "-H", second)
    assert done.stderr == b"postsuper: Released from hold: 1 message\n"
    assert not spool.read_state(second).hold
    done = cli("postsuper:main", "-c", str(conf), "-h", "ALL", "deferred")
    assert done.stderr == b"postsuper: Placed on hold: 2 messages\n"
    done = cli(
        "postsuper:main",
        "-c",
        str(conf),
        "-d",
        "-",
        stdin=f"{first}\n{third}\n".encode(),
    )
    assert done.stderr == b"postsuper: Deleted: 2 messages\n"
    assert spool.queue_ids() == [second]
    done = cli("postsuper:main", "-c", str(conf), "-d", "ALL")
    assert done.stderr == b"postsuper: Deleted: 1 message\n"
    assert spool.queue_ids() == []
    assert os.listdir(spool.state_dir) == []


def test_postcat_shows_envelope_and_message(tmp_path):
    conf = write_config(tmp_path)
    first, _, _ = fill_queue(Spool(tmp_path / "data" / "queue"))
    done = cli("postcat:main", "-c", str(conf), "-q", first)
    out = done.stdout.decode()
    assert out.startswith(f"*** ENVELOPE RECORDS deferred/{first} ***\n")
    assert "sender: ann@example.org\n" in out
    assert "recipient: a@example.org\n" in out
    assert "done_recipient: b@example.org\n" in out
    assert f"*** MESSAGE CONTENTS deferred/{first} ***\nFrom: Ann" in out
    assert out.endswith(f"*** MESSAGE FILE END deferred/{first} ***\n")
    done = cli("postcat:main", "-c", str(conf), "-q", "NOSUCHIDXX")
    assert done.returncode != 0


def test_sendmail_queues_without_server_and_adds_headers(tmp_path):
    conf = write_config(tmp_path)
    body = (
        b"Subject: report\nTo: alice@example.test\nBcc: secret@example.test\n"
        b"\nline\n.\nafter dot\n"
    )
    done = cli(
        "sendmail:main",
        "-c",
        str(conf),
        "-t",
        "-f",
        "cron@example.test",
        "-F",
        "Cron Daemon",
        stdin=body,
    )
    assert done.returncode == 0, done.stderr
    spool = Spool(tmp_path / "data" / "queue")
    [name] = spool.maildrop_names()
    from roost.queue import decode_queue_file

    env, data = decode_queue_file((spool.maildrop / name).read_bytes())
    assert env.mail_from == "cron@example.test"
    assert [r.address for r in env.recipients] == [
        "alice@example.test",
        "secret@example.test",
    ]
    assert env.local_uid == os.getuid()
    assert b"Bcc" not in data
    assert b"\r\nFrom: Cron Daemon <cron@example.test>\r\n" in data
    assert re.search(
        rb"\r\nDate: .+\r\nMessage-ID: <[^>]+@mx\.example\.test>\r\n", data
    )
    assert data.endswith(b"\r\n\r\nline\r\n")  # a lone "." ends input without -i


def test_sendmail_oi_keeps_dot_lines_and_qualifies(tmp_path):
    conf = write_config(tmp_path)
    done = cli(
        "sendmail:main",
        "-c",
        str(conf),
        "-oi",
        "bob",
        stdin=b"From: me@example.test\r\n\r\na\r\n.\r\nb\r\n",
    )
    assert done.returncode == 0, done.stderr
    spool = Spool(tmp_path / "data" / "queue")
    [name] = spool.maildrop_names()
    from roost.queue import decode_queue_file

    env, data = decode_queue_file((spool.maildrop / name).read_bytes())
    assert [r.address for r in env.recipients] == ["bob@mx.example.test"]
    assert data.endswith(b"\r\n\r\na\r\n.\r\nb\r\n")


def test_sendmail_header_ends_at_a_line_that_is_not_a_field(tmp_path):
    """RFC 5322 2.1: a line that is not a field (nor a continuation) starts
    the body even without an empty line; our added headers go before it."""
    conf = write_config(tmp_path)
    stdin = b"To: alice@example.test\nSubject: nosep\n folded\nnot a header\nmore\n"
    done = cli("sendmail:main", "-c", str(conf), "-t", "-f", "z@x.test", stdin=stdin)
    assert done.returncode == 0, done.stderr
    spool = Spool(tmp_path / "data" / "queue")
    [name] = spool.maildrop_names()
    from roost.queue import decode_queue_file

    _, data = decode_queue_file((spool.maildrop / name).read_bytes())
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"To: alice@example.test\r\nSubject: nosep\r\n folded\r\n")
    assert b"\r\nFrom: z@x.test\r\n" in head + b"\r\n"
    assert b"not a header" not in head
    assert body == b"not a header\r\nmore\r\n"


def test_sendmail_without_recipients_fails(tmp_path):
    conf = write_config(tmp_path)
    done = cli("sendmail:main", "-c", str(conf), stdin=b"Subject: x\n\ny\n")
    assert done.returncode == 64
    assert b"no recipients" in done.stderr


def test_sendmail_and_postqueue_with_running_server(tmp_path):
    # sendmail wakes the server through its socket; postsuper goes through
    # the server while it holds the queue lock
    conf = write_config(tmp_path)
    rig = make_rig(tmp_path)

    async def flow():
        await rig.manager.start()
        try:
            done = await asyncio.to_thread(
                cli,
                "sendmail:main",
                "-c",
                str(conf),
                "alice@example.test",
                stdin=b"Subject: via sendmail\n\nhi\n",
            )
            assert done.returncode == 0, done.stderr
            for _ in range(200):
                if rig.mailbox("alice"):
                    break
                await asyncio.sleep(0.05)
            held = await rig.spool.enqueue(
                envelope("carol@example.org", arrival=rig.clock.now), MESSAGE
            )
            await rig.manager.wait_idle()
            done = await asyncio.to_thread(
                cli, "postsuper:main", "-c", str(conf), "-h", held
            )
            assert done.stderr == b"postsuper: Placed on hold: 1 message\n"
            done = await asyncio.to_thread(cli, "postqueue:main", "-c", str(conf), "-f")
            assert done.returncode == 0, done.stderr
            return held
        finally:
            await rig.manager.stop()

    held = asyncio.run(flow())
    rig.spool.close()
    [copy] = rig.mailbox("alice")
    assert b"Subject: via sendmail\n" in copy
    assert rig.spool.read_state(held).hold


def test_maildrop_entries_are_shown_and_deleted_like_queued_ones(tmp_path):
    # what mailq lists while no server runs, postcat shows and postsuper
    # deletes: by id, and with ALL (default queues, or "maildrop" named)
    conf = write_config(tmp_path)
    spool = Spool(tmp_path / "data" / "queue")
    for n in range(3):
        done = cli("sendmail:main", "-c", str(conf), "bob", stdin=b"Subject: %d\n" % n)
        assert done.returncode == 0, done.stderr
    ids = spool.maildrop_names()
    assert len(ids) == 3
    listing = cli("postqueue:mailq_main", "-c", str(conf)).stdout.decode()
    assert listing.endswith(" Kbytes in 3 Requests.\n")

    done = cli("postcat:main", "-c", str(conf), "-q", ids[0])
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr
    assert out.startswith(f"*** ENVELOPE RECORDS maildrop/{ids[0]} ***\n")
    assert "recipient: bob@mx.example.test\n" in out
    assert f"*** MESSAGE CONTENTS maildrop/{ids[0]} ***\n" in out

    done = cli("postsuper:main", "-c", str(conf), "-d", ids[0])
    assert done.stderr == b"postsuper: Deleted: 1 message\n"
    done = cli("postsuper:main", "-c", str(conf), "-d", "ALL", "deferred")
    assert done.stderr == b""
    done = cli("postsuper:main", "-c", str(conf), "-d", "ALL")
    assert done.stderr == b"postsuper: Deleted: 2 messages\n"
    assert spool.maildrop_names() == []
    done = cli("postqueue:mailq_main", "-c", str(conf))
    assert done.stdout == b"Mail queue is empty\n"


def test_postcat_refuses_names_that_are_not_queue_ids(tmp_path):
    conf = write_config(tmp_path)
    spool = Spool(tmp_path / "data" / "queue")
    secret = encode_queue_file(envelope("x@example.org"), b"not for postcat\r\n")
    (spool.root / "secret").write_bytes(secret)
    done = cli("postcat:main", "-c", str(conf), "-q", "../secret")
    assert done.returncode == 64
    assert b"not found" in done.stderr
    assert b"not for postcat" not in done.stdout


def test_sendmail_capital_c_names_the_configuration(tmp_path):
    # postfix's sendmail -C config_dir; mailq (sendmail -bp) takes it too
    conf = write_config(tmp_path)
    done = cli("sendmail:main", "-C", str(tmp_path), "bob", stdin=b"Subject: c\n")
    assert done.returncode == 0, done.stderr
    spool = Spool(tmp_path / "data" / "queue", create=False)
    [name] = spool.maildrop_names()
    for argv in (["-C", str(tmp_path)], ["-c", str(conf)]):
        done = cli("postqueue:mailq_main", *argv)
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().startswith("-Queue ID-")
        assert f"\n{name} " in done.stdout.decode()
    done = cli("sendmail:main", "-bp", f"-C{tmp_path}")
    assert f"\n{name} " in done.stdout.decode()


def test_tools_fail_loudly_without_a_queue_directory(tmp_path):
    # sendmail never makes a queue no server reads (postfix's
    # postdrop fails alike): 75 EX_TEMPFAIL, the path on stderr
    conf = write_config(tmp_path, with_queue=False)
    queue = tmp_path / "data" / "queue"
    done = cli("sendmail:main", "-C", str(tmp_path), "bob", stdin=b"Subject: x\n")
    assert done.returncode == 75
    assert done.stderr.startswith(b"sendmail: fatal: queue directory ")
    assert str(queue).encode() in done.stderr
    assert str(conf).encode() in done.stderr
    assert not queue.exists()
    for tool, args in (
        ("postqueue:mailq_main", []),
        ("postqueue:main", ["-p"]),
        ("postsuper:main", ["-d", "ALL"]),
        ("postcat:main", ["-q", "ABCDEFGHJK"]),
    ):
        done = cli(tool, "-c", str(conf), *args)
        assert done.returncode == 75, (tool, done.stderr)
        assert b"fatal: queue directory " in done.stderr
    assert not queue.exists()


def test_sendmail_with_a_missing_configuration_fails(tmp_path):
    done = cli("sendmail:main", "-C", str(tmp_path / "nowhere"), "bob", stdin=b"x\n")
    assert done.returncode == 78
    assert b"no such file" in done.stderr


def test_config_errors_stop_the_tools_with_every_problem_named(tmp_path):
    conf = write_config(tmp_path)
    conf.write_text(conf.read_text() + "smtp_port = x\nmy_typo = 1\n")
    done = cli("sendmail:main", "-C", str(conf), "bob", stdin=b"Subject: x\n")
    assert done.returncode == 78
    err = done.stderr.decode()
    assert err.startswith("sendmail: fatal: configuration errors:\n")
    assert f"{conf}:5: smtp_port: " in err
    assert f"warning: {conf}:6: unknown parameter my_typo" in err
