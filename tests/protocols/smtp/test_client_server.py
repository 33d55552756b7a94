"""The client core wired to the server core: both sans-IO, bytes only."""

from __future__ import annotations

from roost.protocols.smtp import events as ev
from roost.protocols.smtp.client import (
    Closed,
    Greeted,
    MessageCommand,
    RecipientCommand,
    SmtpClient,
    TransactionDone,
)
from roost.protocols.smtp.reply import (
    BYE,
    OK,
    RECIPIENT_OK,
    SENDER_OK,
    START_DATA,
    Reply,
)
from roost.protocols.smtp.server import ServerConnection

EHLO = Reply.of(250, None, "mx.example.test", "PIPELINING", "8BITMIME", "SIZE 100000")
UNKNOWN = Reply.of(550, "5.1.1", "No such user")


class Wire:
    """Moves bytes between the two cores until both are quiet."""

    def __init__(self) -> None:
        self.client = SmtpClient("client.example.org")
        self.server = ServerConnection(hostname="mx.example.test")
        self.received: list[ev.DataReceived] = []
        self.to_client = self.server.send(Reply.of(220, None, "mx.example.test ESMTP"))

    def pump(self) -> list[object]:
        found = []
        while True:
            if self.to_client:
                self.client.receive_data(self.to_client)
                self.to_client = b""
            while (event := self.client.next_event()) is not None:
                found.append(event)
            to_server = self.client.data_to_send()
            if to_server:
                self.server.receive_data(to_server)
            answered = self._serve()
            if not to_server and not answered:
                return found

    def _serve(self) -> bool:
        answered = False
        while True:
            event = self.server.next_event()
            if isinstance(event, (ev.NeedData, ev.ConnectionClosed)):
                return answered
            self.to_client += self.server.send(self._answer(event))
            answered = True

    def _answer(self, event: object) -> Reply:
        if isinstance(event, ev.Ehlo):
            return EHLO
        if isinstance(event, ev.MailFrom):
            return SENDER_OK
        if isinstance(event, ev.RcptTo):
            unknown = "nobody" in str(event.path)
            return UNKNOWN if unknown else RECIPIENT_OK
        if isinstance(event, ev.Data):
            return START_DATA
        if isinstance(event, ev.DataReceived):
            self.received.append(event)
            return OK.with_text("Ok: queued as 7QK2M9")
        if isinstance(event, ev.Quit):
            return BYE
        return OK


def test_client_and_server_cores_agree() -> None:
    wire = Wire()
    [greeted] = wire.pump()
    assert isinstance(greeted, Greeted)
    assert greeted.capabilities.pipelining
    assert greeted.capabilities.size_limit == 100000

    data = b"Subject: hi\r\n\r\n.starts with a dot\r\n..two\r\nend\r\n"
    recipients = (
        RecipientCommand("bo@example.test"),
        RecipientCommand("nobody@example.test"),
    )
    wire.client.send_message(MessageCommand("ann@example.org", recipients, data))
    [done] = wire.pump()
    assert isinstance(done, TransactionDone)
    assert [o.dsn for o in done.outcomes] == ["2.0.0", "5.1.1"]
    assert done.outcomes[0].text == "250 2.0.0 Ok: queued as 7QK2M9"
    # dot-stuffing both ways gives back the octets sent
    assert [r.data for r in wire.received] == [data]

    wire.client.quit()
    assert wire.pump() == [Closed()]
