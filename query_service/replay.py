"""`chatlog replay`: rebuild the read models from the stream into a shadow schema, then swap it in.

1. Take the replay lock (one replay per database), drop any leftover shadow, create the shadow
   tables from the models, and point a held connection's search_path at them.
2. Read the stream from the first event (or `from_seq`) with an ephemeral consumer of its own
   (`StreamReader`) and apply it with the projector's own code (`decode_batch`,
   `project_isolating`, `park_events`, hence `project_events`), one transaction per batch with
   the shadow's checkpoint, commits not waiting for the WAL flush (a crash only loses the
   shadow, which the next replay drops anyway). Fetching and decoding the next batch overlap
   with the database applying the current one.
3. Once the stream is exhausted, one transaction: take `REPLAY_SWAP_KEY` exclusively (the live
   projector's batches hold it shared, so this waits for one in flight and holds back the next),
   read the live checkpoint L, apply the events up to L the shadow lacks, set the shadow's
   checkpoint to max(L, its own), then move the live tables out and the shadow's in
   (`shadow.swap_in`), commit, and drop the old tables. The live projector goes on from its
   durable consumer and skips what is at or below the new checkpoint.

With `verify`, the shadow never passes the live checkpoint; the last step compares both instead
of swapping, and the shadow is dropped. An interrupted replay never touched the live tables.
"""

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

import asyncpg
import nats
from nats.aio.client import Client as NatsClient

from query_service.config import QuerySettings
from query_service.projections import SeqEvent
from query_service.projector import (
    REPLAY_SWAP_KEY,
    Parked,
    StreamEvent,
    decode_batch,
    park_events,
    project_isolating,
)
from query_service.shadow import (
    create_shadow,
    differences,
    drop_retired,
    drop_shadow,
    live_schema,
    quote,
    swap_in,
)
from query_service.stream_reader import StreamReader
from shared.subjects import stream_subjects

DEFAULT_BATCH_SIZE: Final = 4000
_REPLAY_LOCK: Final = "chatlog-replay"
_TRY_LOCK_SQL: Final = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
_ADVANCE_SQL: Final = (
    "UPDATE projection_checkpoints SET seq = GREATEST(seq, $2),"
    " unknown_count = unknown_count + $3, updated_at = now() WHERE name = $1"
)
_SWAP_ATTEMPTS: Final = 5
_GC_THRESHOLDS: Final = (100_000, 50, 50)
"""Allocations between collections while replaying: decoding makes many short-lived acyclic
objects, and with the default (700) the collector took two thirds of the decoding time."""

_log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called after every batch with (events done, events in all as far as known)."""


class ReplayBusyError(Exception):
    """Raised when another replay holds the database's replay lock."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did."""

    events: int
    """Events read from the stream and applied (or counted, or parked)."""
    checkpoint: int
    """The rebuilt models' checkpoint: the swapped-in one, or the one compared at."""
    seconds: float
    swapped: bool
    differences: list[str] = field(default_factory=list)
    """`verify` only: each table whose rows or content differ; empty when equal."""

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class _Batch:
    """A fetched batch, decoded: what to apply, count, and park, and the sequence it reaches."""

    items: list[StreamEvent]
    events: list[tuple[StreamEvent, SeqEvent]]
    unknown: list[StreamEvent]
    parked: list[Parked]

    @classmethod
    def decode(cls, items: list[StreamEvent]) -> "_Batch":
        return cls(items, *decode_batch(items))

    @property
    def top(self) -> int:
        return self.items[-1].seq

    def upto(self, limit: int) -> "_Batch":
        """The part of the batch at or below `limit`."""
        return _Batch(
            [i for i in self.items if i.seq <= limit],
            [e for e in self.events if e[0].seq <= limit],
            [u for u in self.unknown if u.seq <= limit],
            [p for p in self.parked if p.item.seq <= limit],
        )

    def after(self, limit: int) -> "_Batch":
        """The part of the batch above `limit`."""
        return _Batch(
            [i for i in self.items if i.seq > limit],
            [e for e in self.events if e[0].seq > limit],
            [u for u in self.unknown if u.seq > limit],
            [p for p in self.parked if p.item.seq > limit],
        )


class Replay:
    """One run of `chatlog replay` (or `--verify`) against the settings' stream and database."""

    def __init__(
        self,
        settings: QuerySettings,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        from_seq: int = 1,
        progress: Progress | None = None,
        lock_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.batch_size = batch_size
        self.from_seq = max(1, from_seq)
        self.progress = progress
        self.lock_timeout = lock_timeout
        """Seconds the swap waits for locks (readers, the projector) before it tries again."""
        self.done = 0
        self._top = self.from_seq - 1
        self._carry: list[_Batch] = []
        self._reader: StreamReader | None = None

    async def run(self, *, verify: bool = False) -> ReplayResult:
        """Rebuild, then swap (or compare, with `verify`). The live models change only on swap.

        Raises:
            ReplayBusyError: another replay runs on this database.
        """
        with _fewer_collections():
            return await self._run(verify=verify)

    async def _run(self, *, verify: bool) -> ReplayResult:
        started = time.perf_counter()
        conn = await asyncpg.connect(self.settings.asyncpg_dsn)
        client: NatsClient | None = None
        try:
            await _lock_replay(conn)
            live = await live_schema(conn)
            client = await nats.connect(servers=self.settings.nats_servers, connect_timeout=5)
            checkpoint, diffs = await self._rebuild(conn, client, live, verify=verify)
            await (drop_shadow(conn) if verify else drop_retired(conn))
        except BaseException:
            conn.terminate()  # its state is unknown; this also releases the replay lock
            await self._discard_shadow()
            raise
        else:
            await conn.close()
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
        seconds = time.perf_counter() - started
        return ReplayResult(self.done, checkpoint, seconds, not verify, diffs)

    async def _rebuild(
        self, conn: asyncpg.Connection, client: NatsClient, live: str, *, verify: bool
    ) -> tuple[int, list[str]]:
        await conn.execute("SET synchronous_commit TO off")
        await create_shadow(conn)
        await conn.execute(
            "INSERT INTO projection_checkpoints (name, seq, unknown_count, updated_at)"
            " VALUES ($1, $2, 0, now())",
            self.settings.projection_name,
            self._top,
        )
        subjects = stream_subjects(self.settings.subject_prefix)[0]
        reader = StreamReader(client, self.settings.stream, subjects, self.batch_size)
        self._reader = reader
        await reader.open(self.from_seq)
        try:
            bound = await self._live_checkpoint_reader(live) if verify else None
            try:
                await self._build(conn, reader, bound)
            finally:
                if bound is not None:
                    await bound.close()
            return await self._finish(conn, reader, live, verify=verify)
        finally:
            with contextlib.suppress(Exception):
                await reader.close()

    async def _live_checkpoint_reader(self, live: str) -> "_LiveCheckpoint":
        return _LiveCheckpoint(
            await asyncpg.connect(self.settings.asyncpg_dsn), live, self.settings.projection_name
        )

    async def _build(
        self, conn: asyncpg.Connection, reader: StreamReader, bound: "_LiveCheckpoint | None"
    ) -> None:
        """Apply the stream until it is exhausted (or, with `bound`, the live checkpoint)."""
        queue: asyncio.Queue[_Batch | Exception | None] = asyncio.Queue(maxsize=2)
        limit = [0]
        producer = asyncio.create_task(self._produce(reader, queue, bound, limit))
        try:
            while (batch := await queue.get()) is not None:
                if isinstance(batch, Exception):
                    raise batch
                if bound is not None and batch.top > limit[0]:
                    self._carry.append(batch.after(limit[0]))
                    batch = batch.upto(limit[0])
                if batch.items:
                    await self._apply(conn, batch)
                    self._advanced(batch)
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)

    async def _produce(
        self,
        reader: StreamReader,
        queue: "asyncio.Queue[_Batch | Exception | None]",
        bound: "_LiveCheckpoint | None",
        limit: list[int],
    ) -> None:
        """Fetch and decode ahead of the writer; stop when the stream (or the bound) is reached."""
        fetched = self._top
        try:
            while True:
                if bound is not None:
                    limit[0] = await bound()
                    if fetched >= limit[0]:
                        break
                items = await reader.fetch()
                if not items:
                    break
                fetched = items[-1].seq
                await queue.put(_Batch.decode(items))
        except Exception as exc:  # noqa: BLE001 - handed to the writer, which raises it
            await queue.put(exc)
        await queue.put(None)

    async def _apply(self, conn: asyncpg.Connection, batch: _Batch) -> None:
        """Apply a batch to the shadow with its checkpoint, in a transaction (or a savepoint)."""
        async with conn.transaction():
            attempts = self.settings.projector_park_attempts
            to_park = batch.parked + await project_isolating(conn, batch.events, attempts)
            if to_park:
                await park_events(conn, to_park)
            await conn.execute(
                _ADVANCE_SQL, self.settings.projection_name, batch.top, len(batch.unknown)
            )

    def _advanced(self, batch: _Batch) -> None:
        self._top = max(self._top, batch.top)
        self.done += len(batch.items)
        if self.progress is not None:
            pending = self._reader.pending if self._reader is not None else 0
            self.progress(self.done, self.done + pending)

    async def _finish(
        self, conn: asyncpg.Connection, reader: StreamReader, live: str, *, verify: bool
    ) -> tuple[int, list[str]]:
        """The last transaction, tried again when it waited too long for its locks."""
        for attempt in range(1, _SWAP_ATTEMPTS + 1):
            try:
                return await self._final_transaction(conn, reader, live, verify=verify)
            except asyncpg.LockNotAvailableError:
                if attempt == _SWAP_ATTEMPTS:
                    raise
                _log.warning("the swap waited over %.0f s for its locks; again", self.lock_timeout)
                await asyncio.sleep(attempt)
        raise AssertionError  # pragma: no cover

    async def _final_transaction(
        self, conn: asyncpg.Connection, reader: StreamReader, live: str, *, verify: bool
    ) -> tuple[int, list[str]]:
        name = self.settings.projection_name
        top, done = self._top, self.done
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit TO on")
                await conn.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
                await conn.execute("SELECT pg_advisory_xact_lock($1)", REPLAY_SWAP_KEY)
                live_seq = int(
                    await conn.fetchval(
                        f"SELECT seq FROM {quote(live)}.projection_checkpoints"  # noqa: S608
                        " WHERE name = $1",
                        name,
                    )
                    or 0
                )
                await self._fetch_through(reader, live_seq)
                for batch in self._carry:
                    part = batch.upto(live_seq)
                    if part.items:
                        await self._apply(conn, part)
                        self._advanced(part)
                checkpoint = max(live_seq, self._top)
                await conn.execute(  # the shadow's: the search_path points there
                    "UPDATE projection_checkpoints SET seq = $2 WHERE name = $1", name, checkpoint
                )
                if verify:
                    return checkpoint, await differences(conn, live, name)
                await swap_in(conn, live, name, checkpoint)
        except BaseException:
            self._top, self.done = top, done  # rolled back; the carried events are still here
            raise
        return checkpoint, []

    async def _fetch_through(self, reader: StreamReader, seq: int) -> None:
        """Fetch into the carry until it reaches `seq`, or the stream has nothing more."""
        asked = reader.requests_made
        while max([self._top] + [b.top for b in self._carry]) < seq:
            items = await reader.fetch()
            if items:
                self._carry.append(_Batch.decode(items))
            elif reader.last_answered > asked:
                return  # a request sent after `seq` was read found nothing more: deleted events

    async def _discard_shadow(self) -> None:
        """Drop the shadow of this interrupted replay, unless another replay already started."""
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(self.settings.asyncpg_dsn, timeout=5)
            try:
                if await conn.fetchval(_TRY_LOCK_SQL, _REPLAY_LOCK):
                    await drop_shadow(conn)
            finally:
                await conn.close()


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect garbage rarely meanwhile; objects made before are left out of it (frozen)."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def _lock_replay(conn: asyncpg.Connection) -> None:
    """Take the database's replay lock for the connection's lifetime.

    Raises:
        ReplayBusyError: another replay holds it.
    """
    if not await conn.fetchval(_TRY_LOCK_SQL, _REPLAY_LOCK):
        raise ReplayBusyError("another replay is running on this database")


class _LiveCheckpoint:
    """Reads the live checkpoint on a connection of its own (the replay's is busy applying)."""

    def __init__(self, conn: asyncpg.Connection, live: str, name: str) -> None:
        self.conn = conn
        self.sql = f"SELECT seq FROM {quote(live)}.projection_checkpoints WHERE name = $1"  # noqa: S608
        self.name = name

    async def __call__(self) -> int:
        return int(await self.conn.fetchval(self.sql, self.name) or 0)

    async def close(self) -> None:
        await self.conn.close()


async def run_replay(
    settings: QuerySettings,
    *,
    verify: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    from_seq: int = 1,
    progress: Progress | None = None,
) -> ReplayResult:
    """Run one replay (see the module's docstring)."""
    return await Replay(settings, batch_size=batch_size, from_seq=from_seq, progress=progress).run(
        verify=verify
    )
