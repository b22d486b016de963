"""Replay's view of the stream: an ephemeral pull consumer without acks, read in big batches.

The consumer is independent of the projector's durable one: no durable name, AckPolicy NONE,
delivery from a start sequence, memory storage, and an inactivity threshold so the server drops it
by itself when a replay dies. Measured here with 1.6 KB events: nats-py's `fetch` reads ~10,000
events/s (it awaits each message with a timeout), a plain subscription on an inbox with pull
requests published by hand ~35,000/s, an ordered push consumer about the same. The pull requests
are kept because they bound memory by construction (one batch being received, one prefetched)
and map one to one onto the replay's transactions; a push consumer would need flow control to
keep a slow database from filling the client's buffers.
"""

import asyncio
import collections
from dataclasses import dataclass, field
from typing import Final

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from query_service.projector import StreamEvent

_INACTIVE_THRESHOLD: Final = 60.0
"""Seconds after which the server deletes the consumer of a replay that stopped reading."""
_STATUS: Final = "Status"
_END_OF_BATCH: Final = frozenset({"404", "408"})
"""No (more) messages for this request; the request expired."""
_ACK_TOKENS_V1: Final = 9
"""`$JS.ACK.<stream>.<consumer>.<delivered>.<seq>.<cseq>.<time>.<pending>`; v2 adds 3 tokens."""


class StreamReadError(Exception):
    """Raised when the server refuses a pull request, or a delivered message went missing."""


@dataclass(slots=True)
class _Request:
    number: int
    want: int
    items: list[StreamEvent] = field(default_factory=list)
    done: asyncio.Future[None] = field(default_factory=asyncio.Future)


class StreamReader:
    """Reads the stream in order from a sequence, one pull request per batch, one prefetched."""

    def __init__(
        self, client: NatsClient, stream: str, subject_filter: str, batch_size: int
    ) -> None:
        self.client = client
        self.stream = stream
        self.subject_filter = subject_filter
        self.batch_size = batch_size
        self.pending = 0
        """Events after the last one received, as the server counted when it sent that one."""
        self.requests_made = 0
        """Pull requests sent so far; each is numbered by this count."""
        self.last_answered = 0
        """Number of the request whose events `fetch` returned last."""
        self._consumer = ""
        self._requests: collections.deque[_Request] = collections.deque()
        """Requests sent whose events `fetch` has not returned yet, oldest first."""
        self._filling: collections.deque[_Request] = collections.deque()
        """Requests the server is still answering, oldest first: it answers them in order."""
        self._sub: Subscription | None = None
        self._inbox = ""
        self._delivered = 0

    async def open(self, start_seq: int) -> None:
        """Create the consumer at `start_seq` (1: the stream's first event) and subscribe."""
        js = self.client.jetstream()
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq > 1 else DeliverPolicy.ALL,
            opt_start_seq=start_seq if start_seq > 1 else None,
            ack_policy=AckPolicy.NONE,
            filter_subject=self.subject_filter,
            inactive_threshold=_INACTIVE_THRESHOLD,
            mem_storage=True,
            num_replicas=1,
        )
        info = await js.add_consumer(self.stream, config)
        self._consumer = info.name
        self.pending = info.num_pending or 0
        self._inbox = self.client.new_inbox()
        self._sub = await self.client.subscribe(self._inbox, cb=self._on_message)

    async def close(self) -> None:
        """Unsubscribe and delete the consumer (the server would drop it later anyway)."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
        if self._consumer:
            consumer, self._consumer = self._consumer, ""
            await self.client.jetstream().delete_consumer(self.stream, consumer)

    async def fetch(self) -> list[StreamEvent]:
        """The next events in stream order, at most one batch; empty when none were available.

        The server answers at once with what it has (`no_wait`). The answer may be to a request
        sent earlier (the prefetch): `last_answered` tells which. Safe to cancel: a request in
        flight is kept and its events are returned by the next call.
        """
        if not self._requests:
            await self._request()
        request = self._requests[0]
        try:
            await asyncio.shield(request.done)
        finally:
            if request.done.done():
                self._requests.popleft()
        self.last_answered = request.number
        if request.items and not self._requests:
            await self._request()  # prefetch the next batch while this one is applied
        return request.items

    async def _request(self) -> None:
        self.requests_made += 1
        request = _Request(self.requests_made, self.batch_size)
        self._requests.append(request)
        self._filling.append(request)
        await self.client.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self._consumer}",
            orjson.dumps({"batch": self.batch_size, "no_wait": True}),
            reply=self._inbox,
        )

    async def _on_message(self, msg: Msg) -> None:
        if not self._filling:
            return
        request = self._filling[0]
        if not msg.reply:
            status = (msg.headers or {}).get(_STATUS, "")
            if status in _END_OF_BATCH:
                self._finish(request)
            elif status != "100":  # 100: a heartbeat
                self._fail(request, f"pull refused: {msg.headers}")
            return
        tokens = msg.reply.split(".")
        first = 5 if len(tokens) == _ACK_TOKENS_V1 else 7
        seq, delivered = int(tokens[first]), int(tokens[first + 1])
        if delivered != self._delivered + 1:
            self._fail(request, f"event {seq} came as delivery {delivered}: some went missing")
            return
        self._delivered = delivered
        self.pending = int(tokens[first + 3])
        request.items.append(StreamEvent(seq, msg.subject, msg.headers, msg.data))
        if len(request.items) >= request.want:
            self._finish(request)

    def _finish(self, request: _Request) -> None:
        self._filling.popleft()
        request.done.set_result(None)

    def _fail(self, request: _Request, reason: str) -> None:
        self._filling.popleft()
        request.done.set_exception(StreamReadError(reason))
