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

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from query_service.projector import StreamEvent
from query_service.pull_inbox import AckFields, PullInbox

_INACTIVE_THRESHOLD: Final = 60.0
"""Seconds after which the server deletes the consumer of a replay that stopped reading."""


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
        self.last_answered = 0
        """Number of the request whose events `fetch` returned last."""
        self._consumer = ""
        self._requests: collections.deque[_Request] = collections.deque()
        """Requests sent whose events `fetch` has not returned yet, oldest first."""
        self._filling: collections.deque[_Request] = collections.deque()
        """Requests the server is still answering, oldest first: it answers them in order."""
        self._pulls: PullInbox | None = None
        self._delivered = 0

    @property
    def requests_made(self) -> int:
        """Pull requests sent so far; each is numbered by this count."""
        return self._pulls.requests_made if self._pulls is not None else 0

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
        self._pulls = PullInbox(self.client, self.stream, info.name, self)
        await self._pulls.open()

    async def close(self) -> None:
        """Unsubscribe and delete the consumer (the server would drop it later anyway)."""
        if self._pulls is not None:
            await self._pulls.close()
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
        assert self._pulls is not None, "open() first"  # noqa: S101 - a programming error
        request = _Request(self._pulls.requests_made + 1, self.batch_size)
        self._requests.append(request)
        self._filling.append(request)
        await self._pulls.request(self.batch_size)

    def delivered(self, msg: Msg, fields: AckFields) -> None:
        """Take a delivery for the oldest request being answered (the server answers in order)."""
        if not self._filling:
            return
        request = self._filling[0]
        if fields.delivered != self._delivered + 1:
            missing = f"event {fields.seq} came as delivery {fields.delivered}: some went missing"
            self._fail(request, missing)
            return
        self._delivered = fields.delivered
        self.pending = fields.pending
        request.items.append(StreamEvent(fields.seq, msg.subject, msg.headers, msg.data))
        if len(request.items) >= request.want:
            self._finish(request)

    def ended(self, number: int, refusal: str | None) -> None:
        """The server has no more for request `number`, or refused it."""
        if not self._filling or self._filling[0].number != number:
            return  # already complete by count
        if refusal is None:
            self._finish(self._filling[0])
        else:
            self._fail(self._filling[0], refusal)

    def _finish(self, request: _Request) -> None:
        self._filling.popleft()
        request.done.set_result(None)

    def _fail(self, request: _Request, reason: str) -> None:
        self._filling.popleft()
        request.done.set_exception(StreamReadError(reason))
