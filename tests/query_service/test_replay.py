"""`chatlog replay` on real NATS and PostgreSQL: equal models, swap under load, kill, verify."""

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from query_service.config import QuerySettings
from query_service.projector import REPLAY_SWAP_KEY
from query_service.replay import Replay, ReplayBusyError, run_replay
from query_service.shadow import SHADOW_SCHEMA, TABLES, create_shadow, drop_shadow
from shared.codec import HEADER_EVENT_TYPE, HEADER_EVENT_VERSION, HEADER_MSG_ID
from shared.subjects import event_subject
from tests.query_service.conftest import (
    BOT,
    T0,
    checkpoint,
    message_event,
    publish,
    publish_many,
    running_projector,
    table_checksums,
    wait_for_checkpoint,
)

pytestmark = pytest.mark.asyncio

CHATS = [-1001000000000 - n for n in range(8)]


def history(messages: int, seed: int = 7) -> list[Any]:
    """Messages over several chats, with edits (some before their message) and duplicates."""
    rng = random.Random(seed)
    events: list[Any] = []
    for n in range(1, messages + 1):
        chat = CHATS[n % len(CHATS)]
        received = message_event(n, chat_id=chat, title=f"chat {n % 5}")
        edits = [
            message_event(n, chat_id=chat, text=f"edit {k} of {n}", edited_at=T0 + timedelta(k))
            for k in range(1, rng.choice([1, 1, 1, 2, 3]))
        ]
        if edits and rng.random() < 0.5:
            events += [*edits, received]  # edits before their message
        else:
            events += [received, *edits]
        if rng.random() < 0.2:
            events.append(received)  # a duplicate, published again later under another msg id
    return events


async def publish_all(js: JetStreamContext, settings: QuerySettings, events: list[Any]) -> int:
    """Publish in order, duplicates included (a fresh Nats-Msg-Id each), one at a time."""
    last = 0
    for n, event in enumerate(events):
        last = (await publish(js, settings, event, msg_id=f"m{n}")).seq
    return last


async def live_tables(conn: asyncpg.Connection) -> dict[str, object]:
    """Everything the live read models hold, apart from when rows were written."""
    return {
        **await table_checksums(conn),
        "checkpoint": await conn.fetchval(
            "SELECT (seq, unknown_count)::text FROM projection_checkpoints"
        ),
        "parked": await conn.fetchval(
            "SELECT string_agg((seq, reason)::text, '|' ORDER BY seq) FROM parked_events"
        ),
    }


async def structure(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Columns, indexes and constraints of the read-model tables in `schema`."""
    columns = await conn.fetch(
        "SELECT table_name, ordinal_position, column_name, data_type, is_nullable,"
        " replace(column_default, $1 || '.', '') FROM information_schema.columns"
        " WHERE table_schema = $1 AND table_name = ANY($2) ORDER BY 1, 2",
        schema,
        list(TABLES),
    )
    indexes = await conn.fetch(
        "SELECT tablename, indexname, replace(indexdef, schemaname || '.', '') FROM pg_indexes"
        " WHERE schemaname = $1 AND tablename = ANY($2) ORDER BY 1, 2",
        schema,
        list(TABLES),
    )
    constraints = await conn.fetch(
        "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k"
        " JOIN pg_class c ON c.oid = k.conrelid WHERE k.connamespace = $1::regnamespace"
        " AND c.relname = ANY($2) ORDER BY 1, 2",
        schema,
        list(TABLES),
    )
    return {
        "columns": [tuple(r) for r in columns],
        "indexes": [tuple(r) for r in indexes],
        "constraints": [tuple(r) for r in constraints],
    }


class TestShadowSchema:
    async def test_matches_what_the_migrations_create(self, pg: asyncpg.Connection) -> None:
        await create_shadow(pg)
        try:
            shadow = await structure(pg, SHADOW_SCHEMA)
            live = await structure(pg, "public")
            assert len(live["columns"]) == 16 + 12 + 4 + 7
            assert len(live["indexes"]) == 4 + 3
            for kind in ("columns", "indexes", "constraints"):
                assert set(shadow[kind]) ^ set(live[kind]) == set(), kind
            assert shadow == live
        finally:
            await drop_shadow(pg)
            await pg.execute("RESET search_path")


class TestReplay:
    async def test_rebuilds_what_the_projector_built(
        self,
        js: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
    ) -> None:
        events = history(1500)
        assert len(events) > 2000
        async with running_projector(nats_client, query_settings):
            last = await publish_all(js, query_settings, events)
            # An unknown event and a malformed one, which replay counts and parks the same way.
            subject = event_subject(query_settings.subject_prefix, BOT, CHATS[0], "MessageReceived")
            await js.publish(subject, b'{"type": "Mystery", "version": 1}')
            last = (
                await js.publish(
                    subject,
                    b"{not json",
                    headers={
                        HEADER_MSG_ID: "bad",
                        HEADER_EVENT_TYPE: "MessageReceived",
                        HEADER_EVENT_VERSION: "1",
                    },
                )
            ).seq
            await wait_for_checkpoint(pg, last)
        incremental = await live_tables(pg)
        assert incremental["parked"] is not None

        verified = await run_replay(query_settings, verify=True, batch_size=300)
        assert verified.differences == []
        assert not verified.swapped
        assert verified.checkpoint == last
        assert await pg.fetchval("SELECT to_regnamespace($1)", SHADOW_SCHEMA) is None

        result = await run_replay(query_settings, batch_size=300)
        assert result.swapped
        assert result.events == last
        assert result.checkpoint == last
        assert await live_tables(pg) == incremental
        schemas = await pg.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'chatlog_%'"
        )
        assert schemas == 0

    async def test_verify_reports_a_corrupted_row(
        self,
        stream: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
    ) -> None:
        async with running_projector(nats_client, query_settings):
            last = await publish_many(stream, query_settings, history(200))
            await wait_for_checkpoint(pg, last)
        await pg.execute("UPDATE messages SET text = 'tampered' WHERE message_id = 17")
        before = await live_tables(pg)
        result = await run_replay(query_settings, verify=True)
        assert len(result.differences) == 1
        assert result.differences[0].startswith("messages: live ")
        assert await live_tables(pg) == before

    async def test_fills_a_read_model_the_projector_never_filled(
        self, stream: JetStreamContext, query_settings: QuerySettings, pg: asyncpg.Connection
    ) -> None:
        events = history(400)
        last = await publish_many(stream, query_settings, events)
        assert await pg.fetchval("SELECT count(*) FROM messages") == 0
        result = await run_replay(query_settings, batch_size=128)
        assert result.checkpoint == last
        assert await checkpoint(pg) == last
        assert await pg.fetchval("SELECT count(*) FROM messages") == 400
        assert await pg.fetchval("SELECT sum(message_count) FROM chats") == 400

    async def test_from_seq_starts_there(
        self, stream: JetStreamContext, query_settings: QuerySettings, pg: asyncpg.Connection
    ) -> None:
        events = [message_event(n) for n in range(1, 101)]
        last = await publish_many(stream, query_settings, events)
        result = await run_replay(query_settings, from_seq=61)
        assert (result.events, result.checkpoint) == (40, last)
        assert await pg.fetchval("SELECT min(message_id) FROM messages") == 61

    async def test_a_second_replay_at_once_is_refused(
        self, stream: JetStreamContext, query_settings: QuerySettings, pg: asyncpg.Connection
    ) -> None:
        await publish_many(stream, query_settings, [message_event(n) for n in range(1, 11)])
        async with pg.transaction():
            await pg.execute("SELECT pg_advisory_xact_lock_shared($1)", REPLAY_SWAP_KEY)
            first = asyncio.create_task(run_replay(query_settings))
            await wait_for_swap_waiting(pg)
            with pytest.raises(ReplayBusyError):
                await run_replay(query_settings)
        await first
        assert await pg.fetchval("SELECT count(*) FROM messages") == 10


class TestInterruption:
    async def test_killed_replay_leaves_live_models_and_the_next_one_succeeds(
        self,
        stream: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
        tmp_path: Path,
    ) -> None:
        async with running_projector(nats_client, query_settings):
            last = await publish_many(stream, query_settings, history(300))
            await wait_for_checkpoint(pg, last)
        before = await live_tables(pg)
        env = {
            **os.environ,
            "CHATLOG_NATS_URL": query_settings.nats_url,
            "CHATLOG_DATABASE_URL": query_settings.database_url,
            "CHATLOG_STREAM": query_settings.stream,
            "CHATLOG_SUBJECT_PREFIX": query_settings.subject_prefix,
        }
        chatlog = Path(sys.executable).parent / "chatlog"
        # Holding the swap lock shared (as a projector batch does) stops the replay right
        # before its swap, when the shadow is complete: the latest point a kill can hit.
        async with pg.transaction():
            await pg.execute("SELECT pg_advisory_xact_lock_shared($1)", REPLAY_SWAP_KEY)
            process = subprocess.Popen(
                [chatlog, "replay", "--batch-size", "100"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            try:
                await wait_for_swap_waiting(pg)
                process.send_signal(signal.SIGKILL)
                process.wait(10)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        assert await pg.fetchval("SELECT to_regnamespace($1)", SHADOW_SCHEMA) is not None
        assert await live_tables(pg) == before

        result = await run_replay(query_settings)
        assert result.checkpoint == last
        assert await live_tables(pg) == before

    async def test_cancelled_replay_drops_its_shadow(
        self, stream: JetStreamContext, query_settings: QuerySettings, pg: asyncpg.Connection
    ) -> None:
        await publish_many(stream, query_settings, [message_event(n) for n in range(1, 201)])
        async with pg.transaction():
            await pg.execute("SELECT pg_advisory_xact_lock_shared($1)", REPLAY_SWAP_KEY)
            task = asyncio.create_task(Replay(query_settings, batch_size=50).run())
            await wait_for_swap_waiting(pg)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await pg.fetchval("SELECT to_regnamespace($1)", SHADOW_SCHEMA) is None
        assert await pg.fetchval("SELECT count(*) FROM messages") == 0


async def wait_for_swap_waiting(conn: asyncpg.Connection, timeout: float = 30) -> None:
    """Wait until a replay waits for the swap lock, its shadow built."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await conn.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    ):
        assert asyncio.get_running_loop().time() < deadline, "the replay never reached its swap"
        await asyncio.sleep(0.02)


class TestSwapUnderLoad:
    async def test_reads_stay_consistent_and_no_live_event_is_lost(
        self,
        stream: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
        client: httpx.AsyncClient,
    ) -> None:
        initial = [message_event(n, chat_id=CHATS[n % 4]) for n in range(1, 3001)]
        async with running_projector(nats_client, query_settings):
            start = await publish_many(stream, query_settings, initial)
            await wait_for_checkpoint(pg, start)
            stop = asyncio.Event()
            published = [start]

            async def publisher() -> None:
                n = 10_000
                while not stop.is_set():
                    n += 1
                    event = message_event(n, chat_id=CHATS[n % 4])
                    published.append((await publish(stream, query_settings, event)).seq)
                    await asyncio.sleep(0.002)

            reads: list[tuple[int, int]] = []

            async def reader() -> None:
                while not stop.is_set():
                    response = await client.get("/v1/chats", params={"limit": 50})
                    assert response.status_code == 200, response.text
                    seq = int(response.headers["X-Chatlog-Seq"])
                    count = sum(c["message_count"] for c in response.json()["items"])
                    # Every event is a new message, one sequence each: data and checkpoint agree.
                    assert count == len(initial) + (seq - start), (count, seq)
                    reads.append((seq, count))

            tasks = [asyncio.create_task(publisher()), asyncio.create_task(reader())]
            try:
                result = await run_replay(query_settings, batch_size=200)
                await asyncio.sleep(0.3)
            finally:
                stop.set()
                await asyncio.gather(*tasks)
            await wait_for_checkpoint(pg, published[-1])
        assert result.swapped
        assert start < result.checkpoint <= published[-1]
        assert len(reads) > 10
        assert reads == sorted(reads)  # neither the checkpoint nor a count went backwards
        assert await pg.fetchval("SELECT count(*) FROM messages") == len(published) - 1 + len(
            initial
        )
        assert (await run_replay(query_settings, verify=True)).differences == []
