"""Waiting for the checkpoint: LISTEN on a held connection, with polling as the fallback.

The projector NOTIFYs `<projection>:<checkpoint>` in the transaction of every batch, so the
notification arrives only once the batch is visible. A reader with `min_seq` waits here until the
checkpoint reaches it. While the listener is up, a notification is the only news it waits for
(a read costs one statement, not two); a wait still polls the database every `poll_interval`, and
at once while the listening connection is down. Waiters sit in a heap by the sequence they wait
for, and a new checkpoint wakes only those it satisfies: with hundreds of reads waiting under load,
waking them all at every batch (an `asyncio.Event`) cost more than the reads themselves.
"""

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import asyncpg

from query_service.projector import NOTIFY_CHANNEL

_RECONNECT_PAUSE: Final = 1.0

_log = logging.getLogger(__name__)


def _time_up(future: "asyncio.Future[bool]") -> None:
    if not future.done():
        future.set_result(False)


def _reached(future: "asyncio.Future[bool]") -> bool:
    """Whether a wait's future was resolved by the checkpoint (not by its timer, nor cancelled)."""
    return future.done() and not future.cancelled() and future.result()


class CheckpointWatcher:
    """The latest checkpoint of one projection, as announced by the projector."""

    def __init__(
        self,
        dsn: str,
        name: str,
        poll: Callable[[], Awaitable[int]],
        poll_interval: float = 0.5,
    ) -> None:
        self.dsn = dsn
        self.name = name
        self.poll = poll
        """Reads the checkpoint from the database: the fallback when no notification comes."""
        self.poll_interval = poll_interval
        self.seq = 0
        """The highest checkpoint seen so far (it never moves backwards)."""
        self.listening = False
        """True while notifications arrive: LISTEN is on, and the checkpoint was read after it."""
        self._waiters: list[tuple[int, int, asyncio.Future[bool]]] = []
        """(sequence waited for, arrival number, its future): a heap, lowest sequence first."""
        self._arrivals = itertools.count()
        self._ended = 0
        """Waits that ended while their entries stayed in the heap (timed out, cancelled)."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening in the background."""
        self._task = asyncio.create_task(self._listen_forever())

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def advance(self, seq: int) -> None:
        """Record a checkpoint; if it moved forward, wake the waiters it satisfies."""
        if seq <= self.seq:
            return
        self.seq = seq
        waiters = self._waiters
        while waiters and waiters[0][0] <= seq:
            future = heapq.heappop(waiters)[2]
            if future.done():
                self._ended -= 1
            else:
                future.set_result(True)

    async def wait_for(self, min_seq: int, patience: float) -> int:
        """Wait until the checkpoint is at least `min_seq`, at most `patience` seconds.

        Returns the checkpoint then (below `min_seq` when the time ran out).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        if self.seq < min_seq and not self.listening:
            self.advance(await self._poll())
        while self.seq < min_seq:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            future: asyncio.Future[bool] = loop.create_future()
            heapq.heappush(self._waiters, (min_seq, next(self._arrivals), future))
            timer = loop.call_later(min(remaining, self.poll_interval), _time_up, future)
            try:
                reached = await future
            finally:
                timer.cancel()
                if not _reached(future):
                    self._ended += 1
                    self._compact()
            if not reached:
                self.advance(await self._poll())
        return self.seq

    def _compact(self) -> None:
        """Drop ended waits from the heap once they are most of it (a wait may never be met)."""
        if self._ended > len(self._waiters) // 2 + 64:
            self._waiters = [w for w in self._waiters if not w[2].done()]
            heapq.heapify(self._waiters)
            self._ended = 0

    async def _poll(self) -> int:
        try:
            return await self.poll()
        except (OSError, asyncpg.PostgresError) as exc:
            _log.warning("cannot read the checkpoint: %r", exc)
            return self.seq

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        name, _, seq = str(payload).rpartition(":")
        if name == self.name and seq.isdigit():
            self.advance(int(seq))

    async def _listen_forever(self) -> None:
        while True:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                _log.warning("cannot listen for checkpoints, polling meanwhile: %r", exc)
                await asyncio.sleep(_RECONNECT_PAUSE)
                continue
            closed = asyncio.Event()

            def lost(_: object, closed: asyncio.Event = closed) -> None:
                self.listening = False
                closed.set()

            conn.add_termination_listener(lost)
            try:
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                self.advance(await self.poll())
                self.listening = not closed.is_set()
                await closed.wait()
            except (OSError, asyncpg.PostgresError) as exc:
                _log.warning("checkpoint listener lost: %r", exc)
            finally:
                self.listening = False
                conn.terminate()
            await asyncio.sleep(_RECONNECT_PAUSE)
