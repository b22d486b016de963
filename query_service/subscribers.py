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
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from query_service.config import QuerySettings
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
_MORE_TIMEOUT: Final = 0.1
"""Seconds to wait for a further piece of a batch: only asked for after a full piece, so it is
there at once while catching up, and otherwise the batch ends without it."""

_V1_ACK_TOKENS: Final = 9
_V2_ACK_TOKENS: Final = 12

FetchMore = Callable[[], Awaitable[Sequence[Msg]]]
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


async def subscribe(
    js: JetStreamContext, settings: QuerySettings
) -> JetStreamContext.PullSubscription:
    """Create (or update) the stream and the durable consumer, and bind a pull subscription."""
    await ensure_stream(js, settings)
    await js.add_consumer(settings.stream, consumer_config(settings))
    return await js.pull_subscribe_bind(durable=settings.projection_name, stream=settings.stream)


async def consume(
    subscription: JetStreamContext.PullSubscription,
    projector: Projector,
    settings: QuerySettings,
) -> NoReturn:
    """Fetch, apply, ack, for ever (cancel the task to stop)."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type((NatsTimeoutError, ConnectionClosedError, OSError)),
        wait=wait_exponential_jitter(multiplier=0.1, max=settings.projector_retry_max_backoff),
        before_sleep=lambda state: _log.warning("fetch failed: %r", state.outcome),
    )
    keepalive = settings.projector_ack_wait / _KEEPALIVE_FRACTION
    piece = min(PIPELINE_CHUNK, settings.projector_batch_size)
    while True:
        await projector.wait_until_leader(settings.projector_standby_poll)
        async for attempt in retrying:
            with attempt:
                messages = await _fetch(subscription, piece, settings.projector_fetch_timeout)
        if messages:
            more = _pieces(subscription, piece, settings.projector_batch_size - len(messages))
            await handle_batch(
                projector, messages, keepalive, more if len(messages) == piece else None
            )


async def _fetch(
    subscription: JetStreamContext.PullSubscription, count: int, wait: float
) -> list[Msg]:
    try:
        return await subscription.fetch(count, timeout=wait)
    except (TimeoutError, NatsTimeoutError):
        return []  # an idle stream: ask again


def _pieces(subscription: JetStreamContext.PullSubscription, piece: int, room: int) -> FetchMore:
    """Further pieces of a batch, up to `room` messages, while each piece comes full."""
    full = True

    async def more() -> Sequence[Msg]:
        nonlocal full, room
        if not full or room <= 0:
            return []
        count = min(piece, room)
        try:
            messages = await _fetch(subscription, count, _MORE_TIMEOUT)
        except (ConnectionClosedError, OSError) as exc:
            _log.warning("fetching more of a batch failed, applying it as it is: %r", exc)
            messages = []
        full, room = len(messages) == count, room - len(messages)
        return messages

    return more


async def handle_batch(
    projector: Projector, messages: Sequence[Msg], keepalive: float, more: FetchMore | None = None
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
        for msg in messages:
            with contextlib.suppress(ConnectionClosedError, OSError):
                await msg.nak()
        return None
    await ack_batch(messages, checkpoint)
    return checkpoint


def _stream_events(messages: Sequence[Msg]) -> list[StreamEvent]:
    return [StreamEvent(_stream_seq(msg), msg.subject, msg.headers, msg.data) for msg in messages]


def _stream_seq(msg: Msg) -> int:
    """The message's stream sequence, read from its ack subject without nats-py's full metadata."""
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>... (9 tokens), or with a domain and
    # an account hash after ACK (12 or more); anything else is left to nats-py.
    tokens = (msg.reply or "").split(".")
    if tokens[:2] == ["$JS", "ACK"]:
        if len(tokens) == _V1_ACK_TOKENS:
            return int(tokens[5])
        if len(tokens) >= _V2_ACK_TOKENS:
            return int(tokens[Msg.Ack.StreamSeq])
    return msg.metadata.sequence.stream


async def ack_batch(messages: Sequence[Msg], checkpoint: int) -> None:
    """Ack the messages the checkpoint covers; nak the rest, to come back a little later.

    A lost ack is harmless: the event comes again and is skipped as at or below the checkpoint.
    """
    try:
        for msg in messages:
            if _stream_seq(msg) <= checkpoint:
                await msg.ack()
            else:
                await msg.nak(delay=_HOLE_RETRY_DELAY)
    except (ConnectionClosedError, OSError) as exc:
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
async def _kept_alive(messages: Sequence[Msg], interval: float) -> AsyncIterator[None]:
    async def ping() -> None:
        while True:
            await asyncio.sleep(interval)
            for msg in messages:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    task = asyncio.create_task(ping())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
