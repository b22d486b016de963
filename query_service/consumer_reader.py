"""The projector's view of its durable consumer: one pull request per batch, taken in pieces.

A batch is one `no_wait` pull request for the batch size (the consumer's `max_ack_pending`, so
the server never has more than that outstanding), sent through a `PullInbox`: the server sends
what it has, at once or within `expires` seconds when it has nothing yet, then a 404 or 408. The
deliveries collect in a buffer as they arrive and are handed out in pieces, each once that many
have come or the request gets nothing more, so the projector writes one piece while the next is
still arriving. The caller acks, naks and keeps alive the messages (nats-py `Msg`s) itself.

A request whose end never comes is given up `_GRACE` seconds after its `expires`, and every open
request as soon as the connection is seen lost (the server restarted, the network failed; nats-py
reconnects by itself). A delivery that arrives after its request was given up is
kept in the buffer for the next batch: it is unacknowledged, so dropping it would hold the
consumer's window until its ack wait. A refused request (the consumer deleted, JetStream not
ready after a restart) raises `PullRefusedError` once nothing is left to hand out.
"""

import asyncio
import collections
from dataclasses import dataclass
from typing import Final

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from query_service.pull_inbox import AckFields, PullInbox

_GRACE: Final = 1.0
"""Seconds past a request's `expires` before it is given up as lost."""
_CONNECTION_CHECK: Final = 0.25
"""Seconds between looks at the connection while waiting for an answer."""


class PullRefusedError(Exception):
    """Raised when the server refused a pull request (the message says why)."""


@dataclass(slots=True)
class _Open:
    remaining: int
    """Messages the server may still send for the request."""
    deadline: float
    """Loop time after which the request is given up."""


class ConsumerReader:
    """Batches of a durable consumer, pulled by hand and handed out in pieces."""

    def __init__(
        self, client: NatsClient, stream: str, consumer: str, *, batch_size: int, expires: float
    ) -> None:
        self.batch_size = batch_size
        self.expires = expires
        self._client = client
        self._pulls = PullInbox(client, stream, consumer, self)
        self._buffer: collections.deque[tuple[Msg, int]] = collections.deque()
        self._open: dict[int, _Open] = {}
        """Requests being answered, oldest first: the server answers them in order."""
        self._refusal: str | None = None
        self._want = 0
        self._changed = asyncio.Event()

    async def open(self) -> None:
        """Subscribe to the inbox the server answers on."""
        await self._pulls.open()

    async def unsubscribe(self) -> None:
        """Stop receiving (unacknowledged deliveries come back after the ack wait)."""
        await self._pulls.close()

    async def first_piece(self, count: int) -> list[tuple[Msg, int]]:
        """Start a batch: ask for one (unless one is still being answered); its first piece.

        Each message comes with its stream sequence. Empty when the stream had nothing new
        within `expires`.

        Raises:
            PullRefusedError: the server refused the request and nothing had come.
            ConnectionError: the connection is down (nats-py is reconnecting).
        """
        if not self._open and not self._buffer:
            if not self._client.is_connected:
                raise ConnectionError("the NATS connection is down")
            deadline = asyncio.get_running_loop().time() + self.expires + _GRACE
            # Registered first: its answer may come as soon as it is sent.
            self._open[self._pulls.requests_made + 1] = _Open(self.batch_size, deadline)
            await self._pulls.request(self.batch_size, self.expires)
        return await self.piece(count)

    async def piece(self, count: int) -> list[tuple[Msg, int]]:
        """Up to `count` messages: once that many have come, or the request gets nothing more.

        Raises:
            PullRefusedError: the server refused the request and nothing had come.
            ConnectionError: the connection was lost and nothing had come.
        """
        loop = asyncio.get_running_loop()
        while len(self._buffer) < count and self._open:
            if not self._client.is_connected:
                self._open.clear()  # later deliveries for them, if any, join the next batch
                break
            number, request = next(iter(self._open.items()))
            wait = request.deadline - loop.time()
            if wait <= 0:
                del self._open[number]  # lost: a later delivery for it joins the next batch
                continue
            self._want = count
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(wait, _CONNECTION_CHECK))
            except TimeoutError:
                continue
            finally:
                self._want = 0
        if not self._buffer:
            if self._refusal is not None:
                refusal, self._refusal = self._refusal, None
                raise PullRefusedError(refusal)
            if not self._client.is_connected:
                raise ConnectionError("the NATS connection is down")
        return [self._buffer.popleft() for _ in range(min(count, len(self._buffer)))]

    def delivered(self, msg: Msg, fields: AckFields) -> None:
        """Buffer a delivery; wake the waiting piece once it is complete."""
        self._buffer.append((msg, fields.seq))
        if self._open:
            number, request = next(iter(self._open.items()))
            request.remaining -= 1
            if request.remaining <= 0:
                del self._open[number]
                self._changed.set()
                return
        if self._want and len(self._buffer) >= self._want:
            self._changed.set()

    def ended(self, number: int, refusal: str | None) -> None:
        """Request `number` gets nothing more (an unknown number: one given up, or complete)."""
        if self._open.pop(number, None) is None:
            return
        if refusal is not None:
            self._refusal = refusal
        self._changed.set()
