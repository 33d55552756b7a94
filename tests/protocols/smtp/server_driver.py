"""A test driver for the server core: feeds bytes, answers every event
the way a plain accepting service would, and records what happened."""

from __future__ import annotations

from collections.abc import Callable

from roost.protocols.smtp import events as ev
from roost.protocols.smtp import reply as r
from roost.protocols.smtp.server import ServerConnection

Responder = Callable[[ev.Event], r.Reply]

EHLO_REPLY = r.Reply(250, None, ("mx.example.test", "PIPELINING", "8BITMIME"))


def accept_all(event: ev.Event) -> r.Reply:
    """Answer as a service that takes every command."""
    if isinstance(event, ev.Refused):
        return event.reply
    answers: dict[type, r.Reply] = {
        ev.Helo: r.Reply.of(250, None, "mx.example.test"),
        ev.Ehlo: EHLO_REPLY,
        ev.MailFrom: r.SENDER_OK,
        ev.RcptTo: r.RECIPIENT_OK,
        ev.Data: r.START_DATA,
        ev.DataReceived: r.Reply.of(250, "2.0.0", "Ok: queued as TEST"),
        ev.BdatChunk: r.OK,
        ev.Rset: r.OK,
        ev.Noop: r.OK,
        ev.Quit: r.BYE,
        ev.Vrfy: r.CANNOT_VRFY,
        ev.Help: r.HELP,
        ev.StartTls: r.READY_FOR_TLS,
        ev.Auth: r.Reply.of(334, None, ""),
        ev.AuthResponse: r.Reply.of(235, "2.7.0", "Authentication successful"),
    }
    return answers[type(event)]


class Driver:
    def __init__(
        self,
        responder: Responder = accept_all,
        *,
        greet: bool = True,
        **core_args: object,
    ) -> None:
        args: dict[str, object] = {"hostname": "mx.example.test"}
        args.update(core_args)
        self.core = ServerConnection(**args)  # type: ignore[arg-type]
        self.responder = responder
        self.events: list[ev.Event] = []
        self.out = bytearray()
        if greet:
            self.out += self.core.send(r.Reply.of(220, None, "mx.example.test ESMTP"))

    def feed(self, data: bytes) -> list[ev.Event]:
        """Feed data, run events until NEED_DATA; return new events."""
        self.core.receive_data(data)
        return self.run()

    def run(self) -> list[ev.Event]:
        new: list[ev.Event] = []
        while True:
            event = self.core.next_event()
            if isinstance(event, ev.NeedData):
                break
            new.append(event)
            if isinstance(event, ev.ConnectionClosed):
                break
            self.out += self.core.send(self.responder(event))
            if isinstance(event, ev.StartTls) and self.core.state.name == "TLS":
                self.core.tls_established()
        self.events.extend(new)
        return new

    def codes(self) -> list[int]:
        """Reply codes sent so far (one per reply, last line of each)."""
        found = []
        for line in bytes(self.out).split(b"\r\n"):
            if len(line) >= 4 and line[3:4] == b" ":
                found.append(int(line[:3]))
        return found

    def take_output(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data
