"""The checkpoint watcher on a real PostgreSQL: notifications while listening, else polls."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from query_service.checkpoints import CheckpointWatcher
from query_service.config import QuerySettings
from query_service.projector import NOTIFY_CHANNEL

pytestmark = pytest.mark.asyncio

NAME = "read_models"


class CountingPoll:
    """Reads the checkpoint table the way the query API does, counting the reads."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        seq: int = await self.conn.fetchval(
            "SELECT seq FROM projection_checkpoints WHERE name = $1", NAME
        )
        return seq


async def commit_checkpoint(pg: asyncpg.Connection, seq: int, *, notify: bool = True) -> None:
    """What the projector's commit does to the checkpoint (with or without its NOTIFY)."""
    async with pg.transaction():
        await pg.execute("UPDATE projection_checkpoints SET seq = $2 WHERE name = $1", NAME, seq)
        if notify:
            await pg.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, f"{NAME}:{seq}")


@contextlib.asynccontextmanager
async def started(
    settings: QuerySettings, pg: asyncpg.Connection, poll: CountingPoll, interval: float
) -> AsyncIterator[CheckpointWatcher]:
    """A watcher of the checkpoint row (made at 0), once it listens; stopped after."""
    await pg.execute(
        "INSERT INTO projection_checkpoints (name, seq) VALUES ($1, 0) ON CONFLICT DO NOTHING", NAME
    )
    watcher = CheckpointWatcher(settings.asyncpg_dsn, NAME, poll, poll_interval=interval)
    watcher.start()
    try:
        await listening(watcher)
        yield watcher
    finally:
        await watcher.stop()


async def listening(watcher: CheckpointWatcher) -> None:
    for _ in range(200):
        if watcher.listening:
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the watcher never started listening")


async def test_a_listening_watcher_waits_for_the_notification_without_polling(
    query_settings: QuerySettings, pg: asyncpg.Connection
) -> None:
    poll = CountingPoll(pg)
    async with started(query_settings, pg, poll, 30) as watcher:
        calls = poll.calls
        waiting = asyncio.create_task(watcher.wait_for(5, patience=10))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await commit_checkpoint(pg, 5)
        assert await asyncio.wait_for(waiting, 5) == 5
        assert poll.calls == calls  # the notification alone answered it


async def test_with_its_listener_killed_a_wait_polls_and_the_watcher_listens_again(
    query_settings: QuerySettings, pg: asyncpg.Connection
) -> None:
    poll = CountingPoll(pg)
    async with started(query_settings, pg, poll, 30) as watcher:
        killed = await pg.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND query LIKE 'LISTEN%'"
        )
        assert killed == 1
        for _ in range(200):
            if not watcher.listening:
                break
            await asyncio.sleep(0.025)
        assert not watcher.listening
        # Committed with no one to hear it: the wait must read the table itself.
        await commit_checkpoint(pg, 7, notify=False)
        assert await asyncio.wait_for(watcher.wait_for(7, patience=5), 5) == 7
        await listening(watcher)  # back after its pause
        waiting = asyncio.create_task(watcher.wait_for(9, patience=10))
        await commit_checkpoint(pg, 9)
        assert await asyncio.wait_for(waiting, 5) == 9


async def test_a_notification_that_never_comes_is_made_up_for_by_the_periodic_poll(
    query_settings: QuerySettings, pg: asyncpg.Connection
) -> None:
    poll = CountingPoll(pg)
    async with started(query_settings, pg, poll, 0.2) as watcher:
        waiting = asyncio.create_task(watcher.wait_for(3, patience=5))
        await commit_checkpoint(pg, 3, notify=False)
        assert await asyncio.wait_for(waiting, 5) == 3
        assert await watcher.wait_for(4, patience=0.5) == 3  # not there: the time runs out


async def test_a_new_checkpoint_wakes_only_the_waits_it_satisfies() -> None:
    async def poll() -> int:
        return 0

    watcher = CheckpointWatcher("unused", NAME, poll, poll_interval=30)
    watcher.listening = True  # as if notified: no poll per wait
    waits = {seq: asyncio.create_task(watcher.wait_for(seq, patience=10)) for seq in (3, 5, 5, 9)}
    await asyncio.sleep(0.01)
    watcher.advance(5)
    await asyncio.sleep(0.01)
    assert {seq: task.done() for seq, task in waits.items()} == {3: True, 5: True, 9: False}
    assert len(watcher._waiters) == 1
    watcher.advance(4)  # never backwards
    assert watcher.seq == 5
    watcher.advance(9)
    assert await asyncio.wait_for(waits[9], 1) == 9


async def test_waits_that_are_never_met_do_not_pile_up() -> None:
    polls = 0

    async def poll() -> int:
        nonlocal polls
        polls += 1
        return 1

    watcher = CheckpointWatcher("unused", NAME, poll, poll_interval=0.001)
    watcher.listening = True
    for _ in range(50):
        waits = [watcher.wait_for(10**12, patience=0.01) for _ in range(20)]
        assert await asyncio.gather(*waits) == [1] * 20
    assert polls > 1000  # each wait polled at every interval
    assert len(watcher._waiters) <= 2 * 64 + 40
    cancelled = asyncio.create_task(watcher.wait_for(10**12, patience=10))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled
    watcher.advance(10**12)
    assert watcher._waiters == []
