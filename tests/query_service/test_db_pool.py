"""The query API's pool serves its callers in the order they came, on a real PostgreSQL."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from query_service.config import QuerySettings
from query_service.db import FairPool, create_pool

pytestmark = pytest.mark.asyncio


async def _keep(_: asyncpg.Connection) -> None:
    """No reset query, as the query API's pool."""


async def _who_is_served_first(
    queue_of: asyncpg.Pool, fetchval: Callable[..., Awaitable[Any]]
) -> list[str]:
    """The race behind the query API's p99 at 32 connections on a pool of 10.

    One connection: `holder` has it, `waiting` waits for it, and `newcomer` arrives (as a new
    request does) in the same turn of the event loop as the connection goes back into asyncpg's
    queue, before the waiter that this wakes has run.
    """
    order: list[str] = []
    queue = queue_of._queue
    put_back = queue.put_nowait
    arrived: list[asyncio.Task[None]] = []

    async def read(name: str, sleep: float = 0) -> None:
        await fetchval("SELECT pg_sleep($1)", sleep)
        order.append(name)

    def arrive_then_put_back(holder: object) -> None:
        if not arrived:  # the holder gives the connection back
            arrived.append(asyncio.create_task(read("newcomer")))
        put_back(holder)

    queue.put_nowait = arrive_then_put_back
    holder = asyncio.create_task(read("holder", 0.2))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(read("waiting"))
    await holder
    await waiting
    await asyncio.gather(*arrived)
    return order


async def test_a_read_that_waited_is_served_before_a_newcomer(
    query_settings: QuerySettings,
) -> None:
    pool: FairPool = await create_pool(query_settings.asyncpg_dsn, size=1)
    try:
        order = await _who_is_served_first(pool.pool, pool.fetchval)
    finally:
        await pool.close()
    assert order == ["holder", "waiting", "newcomer"]


async def test_asyncpg_alone_serves_the_newcomer_first(query_settings: QuerySettings) -> None:
    """What FairPool is for: asyncpg's queue lets the newcomer take the released connection,
    and the waiter it had woken queues again, at the back."""
    pool = await asyncpg.create_pool(
        query_settings.asyncpg_dsn, min_size=0, max_size=1, reset=_keep
    )
    try:
        order = await _who_is_served_first(pool, pool.fetchval)
    finally:
        await pool.close()
    assert order == ["holder", "newcomer", "waiting"]


async def test_the_pool_reads_as_asyncpg_does(query_settings: QuerySettings) -> None:
    pool: FairPool = await create_pool(query_settings.asyncpg_dsn, size=2)
    try:
        assert await pool.fetchval("SELECT $1::int + 1", 41) == 42
        row = await pool.fetchrow("SELECT 1 AS a, 'b' AS b")
        assert row is not None
        assert dict(row) == {"a": 1, "b": "b"}
        assert [r[0] for r in await pool.fetch("SELECT generate_series(1, 3)")] == [1, 2, 3]
        await pool.expire_connections()
        assert await pool.fetchval("SELECT 1") == 1
        assert await pool.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    finally:
        await pool.close()
