"""Pull requests to a JetStream consumer, published by hand and answered on an inbox of their own.

nats-py's `PullSubscription.fetch` awaits each message with a timeout (a task and a timer per
message: ~50 us of client CPU each, measured); a plain subscription whose callback takes each
delivery as it comes costs a fraction of that. Used by replay's `StreamReader` and by the
projector's `ConsumerReader`. Every request has its own reply subject under the inbox, so the
status message that ends one (404 nothing more, 408 expired, anything else but a 100 heartbeat a
refusal) names it; a delivery carries its stream and delivery sequences in its ack subject.
"""

from typing import Final, NamedTuple, Protocol

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

_STATUS: Final = "Status"
_DESCRIPTION: Final = "Description"
_HEARTBEAT: Final = "100"
_END_OF_BATCH: Final = frozenset({"404", "408"})
"""No (more) messages for this request; the request expired."""
_ACK_TOKENS_V1: Final = 9
"""`$JS.ACK.<stream>.<consumer>.<delivered>.<seq>.<cseq>.<time>.<pending>`."""
_ACK_TOKENS_V2: Final = 12
"""v1 with a domain and an account hash after `ACK`, and a random token at the end (or more)."""


class AckFields(NamedTuple):
    """What a delivery's ack subject says about it."""

    seq: int
    """Its stream sequence."""
    delivered: int
    """The consumer's delivery sequence (a redelivery keeps its first one)."""
    pending: int
    """Messages after it for the consumer, as the server counted when it sent it."""


def ack_fields(reply: str) -> AckFields | None:
    """The fields of a JetStream ack subject (v1, or v2 with a domain); None for anything else."""
    tokens = reply.split(".")
    if tokens[:2] != ["$JS", "ACK"]:
        return None
    if len(tokens) == _ACK_TOKENS_V1:
        first = 5
    elif len(tokens) >= _ACK_TOKENS_V2:
        first = 7
    else:
        return None
    return AckFields(int(tokens[first]), int(tokens[first + 1]), int(tokens[first + 3]))


class PullSink(Protocol):
    """Where a `PullInbox` hands what arrives; both are called on the connection's read loop."""

    def delivered(self, msg: Msg, fields: AckFields) -> None:
        """A message of the consumer, for whichever request the server sent it."""

    def ended(self, number: int, refusal: str | None) -> None:
        """Request `number` gets nothing more: answered in full (None) or refused (why)."""


class PullInbox:
    """Numbered pull requests to one consumer; answers go to a `PullSink`.

    A request for `batch` messages is `no_wait`: the server sends what it has (at once, or within
    `expires` seconds if it has nothing yet) and then a 404 or 408 status. A request answered with
    all `batch` messages gets no status: the sink counts its deliveries.
    """

    def __init__(self, client: NatsClient, stream: str, consumer: str, sink: PullSink) -> None:
        self.client = client
        self.sink = sink
        self.requests_made = 0
        """Pull requests sent so far; each is numbered by this count."""
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = ""
        self._sub: Subscription | None = None

    async def open(self) -> None:
        """Subscribe to the inbox (once)."""
        if self._sub is None:
            self._inbox = self.client.new_inbox()
            self._sub = await self.client.subscribe(f"{self._inbox}.*", cb=self._on_message)

    async def close(self) -> None:
        """Unsubscribe: later answers are dropped by the server (no interest) or the client."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def request(self, batch: int, expires: float | None = None) -> int:
        """Ask for up to `batch` messages, waiting up to `expires` s for the first; its number."""
        self.requests_made += 1
        body: dict[str, object] = {"batch": batch, "no_wait": True}
        if expires is not None:
            body["expires"] = int(expires * 1e9)
        await self.client.publish(
            self._subject, orjson.dumps(body), reply=f"{self._inbox}.{self.requests_made}"
        )
        return self.requests_made

    async def _on_message(self, msg: Msg) -> None:
        if msg.reply:
            fields = ack_fields(msg.reply)
            if fields is not None:
                self.sink.delivered(msg, fields)
            return
        headers = msg.headers or {}
        status = headers.get(_STATUS, "")
        if status == _HEARTBEAT:
            return
        number = msg.subject.rpartition(".")[2]
        if not number.isdigit():
            return
        refusal = None
        if status not in _END_OF_BATCH:
            refusal = f"pull refused: {status} {headers.get(_DESCRIPTION, '')}".strip()
        self.sink.ended(int(number), refusal)
