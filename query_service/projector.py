"""The projector's unit of work: one batch, one transaction with the checkpoint, then a signal.

`Projector.apply` is called with a batch the subscriber fetched and acks after it returns. It
decodes the events, then in one transaction: locks the checkpoint row, skips events at or below it
(redeliveries of a committed batch), applies the rest set-based, parks what cannot be applied,
raises the checkpoint (never lowers it), counts unknown events, and NOTIFYs the new checkpoint.
A transient failure (PostgreSQL down, a lost connection, a serialization error) rolls back and the
same batch is retried in place, with backoff, until it commits: nothing after it is ever applied
first, so the checkpoint stays a low-water mark.

Inside the transaction the batch is decoded and written in chunks, pipelined: while PostgreSQL
runs the statement of one chunk, Python fetches (when the caller streams the batch in pieces) and
decodes the next (the two run on different cores). It is still one transaction per batch, acked
after its commit; the chunks only split the work, which commutativity allows.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg
import orjson
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

from query_service.projected import decode_projected
from query_service.projections import SeqEvent, project_events
from shared.errors import MalformedEventError, UnknownEventError

NOTIFY_CHANNEL: Final = "chatlog_checkpoint"
"""PostgreSQL channel on which every commit announces `<projection name>:<checkpoint>`."""

POISON_ERRORS: Final = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    ValueError,
    OverflowError,
)
"""Errors that belong to the data of an event, not to the database's state: isolate and park."""

_LOCK_SQL: Final = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"

REPLAY_SWAP_KEY: Final = 0x63686174_6C6F6773  # "chatlogs"
"""Advisory lock key fencing batches against replay's swap of the read-model tables.

Every batch transaction holds it shared; `chatlog replay` takes it exclusively for its swap, so
no batch can be in flight on the tables it moves (see `query_service.replay`).
"""

PIPELINE_CHUNK: Final = 125
"""Events per piece of a batch: fetched, decoded and written (one statement) overlapped."""

_log = logging.getLogger(__name__)


class NotLeaderError(Exception):
    """Raised when another instance holds the projection's lock: this one must stand by."""


class _PoisonedError(Exception):
    """PostgreSQL refused an event's data in a batch applied without savepoints."""


MoreEvents = Callable[[], Awaitable[Sequence["StreamEvent"]]]
"""The next piece of the batch being applied, fetched now; empty when the batch is complete."""

GapCheck = Callable[[int, int], Awaitable[bool]]
"""Whether the stream holds no event from the first sequence up to (excluding) the second."""


async def _no_gap_is_empty(_first: int, _end: int) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One message of the stream, as fetched: its sequence, subject, headers and body."""

    seq: int
    subject: str
    headers: Mapping[str, str] | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Parked:
    """An event that cannot be applied, with why and after how many attempts."""

    item: StreamEvent
    reason: str
    attempts: int


class Projector:
    """Applies batches to the read models on one held PostgreSQL connection."""

    def __init__(
        self,
        dsn: str,
        name: str,
        *,
        park_attempts: int = 3,
        retry_max_backoff: float = 5.0,
        connect_timeout: float = 5.0,
        gap_is_empty: GapCheck | None = None,
    ) -> None:
        self.dsn = dsn
        self.gap_is_empty: GapCheck = gap_is_empty or _no_gap_is_empty
        self.name = name
        self.park_attempts = park_attempts
        self.retry_max_backoff = retry_max_backoff
        self.connect_timeout = connect_timeout
        self._conn: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        """The held connection, which holds the projection's lock; made (and locked) if needed.

        Raises:
            NotLeaderError: another instance holds the lock.
        """
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn = None
        conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
        try:
            await self._lock(conn)
            await conn.execute(
                "INSERT INTO projection_checkpoints (name, seq) VALUES ($1, 0)"
                " ON CONFLICT (name) DO NOTHING",
                self.name,
            )
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        return conn

    async def _lock(self, conn: asyncpg.Connection) -> None:
        if not await conn.fetchval(_LOCK_SQL, f"chatlog-projection:{self.name}"):
            raise NotLeaderError(f"another instance projects {self.name}")

    async def wait_until_leader(self, poll: float) -> None:
        """Return once this instance holds the projection's lock (at once if it does).

        One instance projects at a time: with two fetching, the server would split the window
        of unacknowledged events between them and neither could advance the checkpoint far.
        """
        while True:
            try:
                await self._connection()
            except NotLeaderError:
                await asyncio.sleep(poll)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                _log.warning("database unreachable, waiting: %r", exc)
                await asyncio.sleep(poll)
            else:
                return

    async def close(self) -> None:
        """Close the held connection."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close(timeout=2)

    async def apply(self, batch: Sequence[StreamEvent], more: MoreEvents | None = None) -> int:
        """Apply `batch`, retrying transient failures forever; the new checkpoint.

        Only the part of the batch that continues the checkpoint without a hole is applied: an
        event after a hole (its predecessors fetched by another instance, or not yet redelivered)
        is left for later, unacked, so the checkpoint never covers an unapplied event. The caller
        acks exactly the events at or below the returned checkpoint.

        With `more`, `batch` is only the first piece: the rest is asked for while the first is
        being written, in the same transaction. A retry applies what was fetched so far, then
        goes on asking for the rest, so a batch ends where it would have without the failure.
        """
        decoded = _Decoded(batch)
        retrying = AsyncRetrying(
            retry=retry_if_exception(_transient),
            wait=wait_exponential_jitter(multiplier=0.05, max=self.retry_max_backoff),
            before_sleep=self._before_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    return await self._apply_once(decoded, more)
                except _PoisonedError:
                    # Rolled back whole: again, with what was fetched, isolating the poison.
                    return await self._apply_once(decoded, None, isolate=True)
        raise AssertionError  # pragma: no cover - tenacity without a stop never gets here

    async def _covered_top(self, checkpoint: int, seqs: list[int]) -> int:
        """The highest sequence up to which `seqs` continue `checkpoint` without a hole.

        A hole is acceptable only where the stream holds no event (deleted, purged).
        """
        top = checkpoint
        for seq in seqs:
            if seq <= top:
                continue
            if seq > top + 1 and not await self.gap_is_empty(top + 1, seq):
                break
            top = seq
        return top

    def _before_retry(self, state: object) -> None:
        outcome = getattr(state, "outcome", None)
        error = outcome.exception() if outcome is not None else None
        _log.warning("batch failed, retrying in place: %r", error)
        if self._conn is not None and isinstance(error, OSError | TimeoutError):
            self._conn.terminate()  # its state is unknown: start afresh (and lock again)
            self._conn = None

    async def _apply_once(
        self, decoded: "_Decoded", more: MoreEvents | None, *, isolate: bool = False
    ) -> int:
        """One transaction for the batch; `isolate`: each piece in a savepoint, bisecting poison.

        Raises:
            _PoisonedError: PostgreSQL refused an event's data (the transaction is rolled back).
        """
        conn = await self._connection()
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", REPLAY_SWAP_KEY)
            # The row lock orders the transactions of concurrent instances.
            checkpoint: int = await conn.fetchval(
                "SELECT seq FROM projection_checkpoints WHERE name = $1 FOR UPDATE", self.name
            )
            top = await self._covered_top(checkpoint, sorted(item.seq for item in decoded.batch))
            if top == checkpoint:
                return checkpoint  # already committed (a redelivery), or after a hole

            def due(seq: int) -> bool:
                return checkpoint < seq <= top  # `top` as it is when asked

            to_park: list[Parked] = []
            if isolate:
                due_items = [item for item in decoded.batch if due(item.seq)]
                to_park = await project_isolating(
                    conn, decoded.pairs(due_items), self.park_attempts
                )
            else:
                top = await self._project_pipelined(conn, decoded, checkpoint, top, more)

            to_park += [p for p in decoded.parked if due(p.item.seq)]
            if to_park:
                await park_events(conn, to_park)
            unknown_count = sum(1 for item in decoded.unknown if due(item.seq))
            return await advance_checkpoint(conn, self.name, top, unknown_count)

    async def _project_pipelined(
        self,
        conn: asyncpg.Connection,
        decoded: "_Decoded",
        checkpoint: int,
        top: int,
        more: MoreEvents | None,
    ) -> int:
        """Apply the batch's events above `checkpoint` up to `top`, chunk by chunk, overlapped.

        While PostgreSQL writes a chunk, the next is fetched (`more`, once the batch's events so
        far are all sent) and decoded. Fetching stops at the first hole. Returns the new top.
        No savepoint (two round trips a batch): if PostgreSQL refuses an event's data,
        `_PoisonedError` rolls the whole transaction back, and `apply` runs it again with
        `isolate`, which bisects in savepoints to park the poison alone.
        """
        sent = 0
        pending: asyncio.Future[None] | None = None
        try:
            while True:
                chunk = decoded.batch[sent : sent + PIPELINE_CHUNK]
                if not chunk:
                    if more is None or top < decoded.last_seq:
                        break
                    piece = await more()  # while PostgreSQL writes the last chunk
                    if not piece:
                        break
                    decoded.extend(piece)
                    top = await self._covered_top(top, sorted(i.seq for i in piece))
                    continue
                sent += len(chunk)
                due = [item for item in chunk if checkpoint < item.seq <= top]
                events = [event for _, event in decoded.pairs(due)]
                if pending is not None:
                    await pending
                    pending = None
                if events:
                    pending = asyncio.ensure_future(project_events(conn, events))
                    await asyncio.sleep(0)  # let it send its statement, then go on
            if pending is not None:
                await pending
        except POISON_ERRORS as exc:
            raise _PoisonedError from exc
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
        return top


async def project_isolating(
    conn: asyncpg.Connection, pairs: list[tuple[StreamEvent, SeqEvent]], park_attempts: int
) -> list[Parked]:
    """Apply `pairs` in a savepoint; on a data error, halve until the poison is alone.

    Returns the events to park: those that failed `park_attempts` times alone.
    """
    if not pairs:
        return []
    try:
        async with conn.transaction():
            await project_events(conn, [event for _, event in pairs])
    except POISON_ERRORS as exc:
        if len(pairs) > 1:
            middle = len(pairs) // 2
            first = await project_isolating(conn, pairs[:middle], park_attempts)
            return first + await project_isolating(conn, pairs[middle:], park_attempts)
        return await _retry_alone(conn, pairs[0], exc, park_attempts)
    return []


async def _retry_alone(
    conn: asyncpg.Connection,
    pair: tuple[StreamEvent, SeqEvent],
    error: Exception,
    park_attempts: int,
) -> list[Parked]:
    for _ in range(park_attempts - 1):
        try:
            async with conn.transaction():
                await project_events(conn, [pair[1]])
        except POISON_ERRORS as exc:
            error = exc
        else:
            return []
    _log.error("parking event %d: %s", pair[0].seq, error)
    return [Parked(pair[0], f"{type(error).__name__}: {error}", park_attempts)]


def decode_batch(
    batch: Sequence[StreamEvent],
) -> tuple[list[tuple[StreamEvent, SeqEvent]], list[StreamEvent], list[Parked]]:
    """Decode a whole batch: (events, unknown ones to count and skip, malformed ones to park)."""
    decoded = _Decoded(batch)
    return decoded.pairs(decoded.batch), decoded.unknown, decoded.parked


def _transient(error: BaseException) -> bool:
    """Whether to retry a batch in place: any failure but losing the lead (and cancellation)."""
    return isinstance(error, Exception) and not isinstance(error, NotLeaderError)


class _Decoded:
    """A batch, decoded lazily and at most once (decoding is deterministic; retries reuse it).

    Unknown events are counted and skipped; malformed ones are parked on their first attempt.
    """

    def __init__(self, batch: Sequence[StreamEvent]) -> None:
        self.batch = list(batch)
        self.last_seq = max((item.seq for item in batch), default=0)
        self.unknown: list[StreamEvent] = []
        self.parked: list[Parked] = []
        self._events: dict[int, SeqEvent | None] = {}

    def extend(self, items: Sequence[StreamEvent]) -> None:
        """Add a further piece of the batch."""
        self.batch.extend(items)
        self.last_seq = max([self.last_seq, *(item.seq for item in items)])

    def pairs(self, items: Sequence[StreamEvent]) -> list[tuple[StreamEvent, SeqEvent]]:
        """The decodable ones of `items` with their events, decoding those not yet decoded."""
        pairs: list[tuple[StreamEvent, SeqEvent]] = []
        for item in items:
            if item.seq not in self._events:
                self._events[item.seq] = self._decode(item)
            event = self._events[item.seq]
            if event is not None:
                pairs.append((item, event))
        return pairs

    def _decode(self, item: StreamEvent) -> SeqEvent | None:
        try:
            return item.seq, decode_projected(item.body, item.headers)
        except UnknownEventError as exc:
            _log.info("skipping unknown event %d: %s", item.seq, exc)
            self.unknown.append(item)
        except MalformedEventError as exc:
            _log.error("parking malformed event %d: %s", item.seq, exc)
            self.parked.append(Parked(item, f"MalformedEventError: {exc}", 1))
        return None


async def advance_checkpoint(conn: asyncpg.Connection, name: str, top: int, unknown: int) -> int:
    """Raise the checkpoint to `top` (never lower it), count unknown events, NOTIFY; the new one.

    Runs inside the batch's transaction: the notification is delivered only on commit.
    """
    new: int = await conn.fetchval(  # the NOTIFY in the same round trip
        "UPDATE projection_checkpoints SET seq = GREATEST(seq, $2),"
        " unknown_count = unknown_count + $3, updated_at = now()"
        " WHERE name = $1 RETURNING seq, pg_notify($4, name || ':' || seq)",
        name,
        top,
        unknown,
        NOTIFY_CHANNEL,
    )
    return new


async def park_events(conn: asyncpg.Connection, parked: list[Parked]) -> None:
    """Store events in `parked_events` (a redelivered one keeps its first record)."""
    await conn.execute(
        "INSERT INTO parked_events (seq, subject, headers, body, reason, attempts)"
        " SELECT s, subj, h::jsonb, b, r, a"
        " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::int[])"
        " AS p(s, subj, h, b, r, a) ON CONFLICT (seq) DO NOTHING",
        [p.item.seq for p in parked],
        [p.item.subject for p in parked],
        [orjson.dumps(dict(p.item.headers or {})).decode() for p in parked],
        [p.item.body for p in parked],
        [p.reason.replace("\x00", "\\0") for p in parked],
        [p.attempts for p in parked],
    )
