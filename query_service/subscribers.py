"""The projector's JetStream side: a durable pull consumer, fetched in batches, acked after commit.

Only the instance that holds the projection's lock (see `Projector`) fetches; others stand by.

The consumer has `max_ack_pending` equal to the batch size, so the server hands out no event while
a batch is unacknowledged, not even to a second projector instance. Acks happen only after
`Projector.apply` returned, that is after the commit; while a batch is being retried its messages
are kept alive with `in_progress`, so the server does not redeliver them elsewhere meanwhile.
Acks are explicit, one per message at or below the committed checkpoint: with two instances the
server may split the outstanding window between them, and an ack-all of one instance's batch
would acknowledge the other's unapplied events. Events after a hole in the batch are nak'ed with a
short delay and come back once the events before them are committed.

A batch is fetched in pieces of `PIPELINE_CHUNK`: the projector opens the batch's transaction with
the first piece and asks for the next while PostgreSQL writes the previous, so the client's fetch
and the database's write overlap. The pieces of a batch together stay within the batch size (the
consumer's `max_ack_pending`), and nothing of the batch is acked before its one commit.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final, NoReturn

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from query_service.config import QuerySettings
from query_service.consumer_reader import ConsumerReader, PullRefusedError
from query_service.projector import (
    PIPELINE_CHUNK,
    GapCheck,
    NotLeaderError,
    Projector,
    StreamEvent,
)
from shared.stream import ensure_stream
from shared.subjects import stream_subjects

_KEEPALIVE_FRACTION: Final = 3
"""Messages under work get `in_progress` this many times per ack wait."""
_HOLE_RETRY_DELAY: Final = 0.2
"""Seconds before an event that came after a hole is offered again."""

Delivery = tuple[Msg, int]
"""A message of the consumer with its stream sequence."""
FetchMore = Callable[[], Awaitable[Sequence[Delivery]]]
"""The next piece of the batch under way; empty once it is complete."""

_log = logging.getLogger(__name__)


def consumer_config(settings: QuerySettings) -> ConsumerConfig:
    """The durable consumer of the projection."""
    return ConsumerConfig(
        durable_name=settings.projection_name,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.projector_ack_wait,
        max_ack_pending=settings.projector_batch_size,
        max_deliver=-1,
        filter_subject=stream_subjects(settings.subject_prefix)[0],
    )


class ConsumerSubscription(ConsumerReader):
    """The projection's durable consumer, created (again) on demand, read by `ConsumerReader`."""

    def __init__(self, js: JetStreamContext, settings: QuerySettings) -> None:
        # nats-py has no public way from a JetStream context back to its connection.
        client = js._nc  # noqa: SLF001
        super().__init__(
            client,
            settings.stream,
            settings.projection_name,
            batch_size=settings.projector_batch_size,
            expires=settings.projector_fetch_timeout,
        )
        self.js = js
        self.settings = settings

    async def ensure_consumer(self) -> None:
        """Create (or update) the stream and the durable consumer."""
        await ensure_stream(self.js, self.settings)
        await self.js.add_consumer(self.settings.stream, consumer_config(self.settings))


async def subscribe(js: JetStreamContext, settings: QuerySettings) -> ConsumerSubscription:
    """Create (or update) the stream and the durable consumer, and subscribe to its answers."""
    subscription = ConsumerSubscription(js, settings)
    await subscription.ensure_consumer()
    await subscription.open()
    return subscription


async def consume(
    subscription: ConsumerSubscription, projector: Projector, settings: QuerySettings
) -> NoReturn:
    """Fetch, apply, ack, for ever (cancel the task to stop)."""
    refused = False

    def before_sleep(state: object) -> None:
        nonlocal refused
        outcome = getattr(state, "outcome", None)
        error = outcome.exception() if outcome is not None else None
        refused = isinstance(error, PullRefusedError)
        _log.warning("fetch failed: %r", error)

    retrying = AsyncRetrying(
        retry=retry_if_exception_type((NatsError, OSError, PullRefusedError)),
        wait=wait_exponential_jitter(multiplier=0.1, max=settings.projector_retry_max_backoff),
        before_sleep=before_sleep,
    )
    keepalive = settings.projector_ack_wait / _KEEPALIVE_FRACTION
    piece = min(PIPELINE_CHUNK, settings.projector_batch_size)
    while True:
        await projector.wait_until_leader(settings.projector_standby_poll)
        async for attempt in retrying:
            with attempt:
                if refused:  # the consumer may be gone (deleted, or lost by a new server)
                    await subscription.ensure_consumer()
                    refused = False
                messages = await subscription.first_piece(piece)
        if messages:
            more = _pieces(subscription, piece, settings.projector_batch_size - len(messages))
            await handle_batch(
                projector, messages, keepalive, more if len(messages) == piece else None
            )


def _pieces(subscription: ConsumerReader, piece: int, room: int) -> FetchMore:
    """Further pieces of a batch, up to `room` messages, while each piece comes full."""
    full = True

    async def more() -> Sequence[Delivery]:
        nonlocal full, room
        if not full or room <= 0:
            return []
        count = min(piece, room)
        try:
            messages = await subscription.piece(count)
        except (NatsError, OSError, PullRefusedError) as exc:
            _log.warning("fetching more of a batch failed, applying it as it is: %r", exc)
            messages = []
        full, room = len(messages) == count, room - len(messages)
        return messages

    return more


async def handle_batch(
    projector: Projector,
    messages: Sequence[Delivery],
    keepalive: float,
    more: FetchMore | None = None,
) -> int | None:
    """Apply one fetched batch, keeping it alive meanwhile, then ack it; the new checkpoint.

    With `more`, `messages` is the first piece of the batch, and the rest is fetched while it is
    written. None when this instance lost the lead meanwhile: the batch goes back to the server.
    """
    messages = list(messages)

    async def more_events() -> list[StreamEvent]:
        fetched = await more() if more is not None else []
        messages.extend(fetched)  # kept alive, then acked or handed back with the rest
        return _stream_events(fetched)

    try:
        async with _kept_alive(messages, keepalive):
            checkpoint = await projector.apply(
                _stream_events(messages), more_events if more is not None else None
            )
    except NotLeaderError:
        _log.warning("another projector instance took over: handing the batch back")
        while more is not None and (rest := await more()):
            messages.extend(rest)  # the whole batch, so none of it waits for its ack wait
        for msg, _ in messages:
            with contextlib.suppress(NatsError, OSError):
                await msg.nak()
        return None
    await ack_batch(messages, checkpoint)
    return checkpoint


def _stream_events(messages: Sequence[Delivery]) -> list[StreamEvent]:
    return [StreamEvent(seq, msg.subject, msg.headers, msg.data) for msg, seq in messages]


async def ack_batch(messages: Sequence[Delivery], checkpoint: int) -> None:
    """Ack the messages the checkpoint covers; nak the rest, to come back a little later.

    A lost ack is harmless: the event comes again and is skipped as at or below the checkpoint.
    """
    try:
        for msg, seq in messages:
            if seq <= checkpoint:
                await msg.ack()
            else:
                await msg.nak(delay=_HOLE_RETRY_DELAY)
    except (NatsError, OSError) as exc:
        _log.warning("ack of a committed batch failed, it will be redelivered and skipped: %r", exc)


def gap_check(js: JetStreamContext, stream: str) -> GapCheck:
    """Whether the stream holds no event in a range: purged below its first sequence, or deleted.

    Called only when a batch does not continue the checkpoint, which is rare.
    """

    async def gap_is_empty(first: int, end: int) -> bool:
        first_seq = (await js.stream_info(stream)).state.first_seq
        for seq in range(max(first, first_seq), end):
            try:
                await js.get_msg(stream, seq)
            except NotFoundError:
                continue
            return False
        return True

    return gap_is_empty


@contextlib.asynccontextmanager
async def _kept_alive(messages: Sequence[Delivery], interval: float) -> AsyncIterator[None]:
    async def ping() -> None:
        while True:
            await asyncio.sleep(interval)
            for msg, _ in messages:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    task = asyncio.create_task(ping())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
