"""Failures: crashes around the commit, transient errors in place, PostgreSQL going away."""

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from chatlog.servers import PostgresServer
from query_service import projector as projector_module
from query_service import subscribers
from query_service.config import QuerySettings
from query_service.db import migrate_async
from query_service.projections import SeqEvent
from query_service.projector import NOTIFY_CHANNEL, NotLeaderError, Projector, StreamEvent
from shared.codec import encode_event
from tests.conftest import database_url_for
from tests.query_service.conftest import (
    assert_exact,
    checkpoint,
    message_event,
    publish_many,
    running_projector,
    wait_for_checkpoint,
)

pytestmark = pytest.mark.asyncio


class Crash(BaseException):
    """The process dies here: nothing after this line runs, nothing catches it."""


class TestCrashes:
    async def test_failure_after_the_writes_before_commit(
        self,
        stream: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        total = 120
        await publish_many(stream, query_settings, [message_event(n) for n in range(1, total + 1)])
        real = projector_module.advance_checkpoint
        crashed = asyncio.Event()

        async def crash_once(conn: asyncpg.Connection, *args: Any) -> int:
            written = await conn.fetchval("SELECT count(*) FROM messages")
            if not crashed.is_set() and written:
                crashed.set()
                raise Crash
            return await real(conn, *args)

        monkeypatch.setattr(projector_module, "advance_checkpoint", crash_once)
        async with running_projector(nats_client, query_settings):
            await asyncio.wait_for(crashed.wait(), 10)
            await asyncio.sleep(0.1)
        assert await pg.fetchval("SELECT count(*) FROM messages") == 0
        assert await checkpoint(pg) == 0
        # A new process: the unacknowledged batch comes back after the ack wait.
        async with running_projector(nats_client, query_settings):
            await wait_for_checkpoint(pg, total)
        await assert_exact(pg, total)

    async def test_crash_between_commit_and_ack(
        self,
        stream: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        total = 120
        await publish_many(stream, query_settings, [message_event(n) for n in range(1, total + 1)])
        applied: list[int] = []
        real_project = projector_module.project_events

        async def counting(conn: asyncpg.Connection, events: Sequence[SeqEvent]) -> None:
            await real_project(conn, events)
            applied.extend(seq for seq, _ in events)

        real_ack = subscribers.ack_batch
        crashed = asyncio.Event()

        async def crash_once(messages: Sequence[Any], seq: int) -> None:
            if not crashed.is_set():
                crashed.set()
                raise Crash
            await real_ack(messages, seq)

        monkeypatch.setattr(projector_module, "project_events", counting)
        monkeypatch.setattr(subscribers, "ack_batch", crash_once)
        async with running_projector(nats_client, query_settings):
            await asyncio.wait_for(crashed.wait(), 10)
        first_batch = await checkpoint(pg)
        assert first_batch == query_settings.projector_batch_size
        async with running_projector(nats_client, query_settings):
            await wait_for_checkpoint(pg, total)
        await assert_exact(pg, total)
        # The redelivered batch was skipped, not applied again.
        assert sorted(applied) == list(range(1, total + 1))


class TestTransientFailures:
    @pytest.mark.parametrize("instances", [1, 2])
    async def test_failed_batch_is_applied_in_place_before_later_events(
        self,
        *,
        stream: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch,
        instances: int,
    ) -> None:
        total = 175
        await publish_many(stream, query_settings, [message_event(n) for n in range(1, total + 1)])
        real_project = projector_module.project_events
        loop = asyncio.get_running_loop()
        failing_until = loop.time() + 1.5 * query_settings.projector_ack_wait
        failures = 0

        async def flaky(conn: asyncpg.Connection, events: Sequence[SeqEvent]) -> None:
            nonlocal failures
            await real_project(conn, events)
            if loop.time() < failing_until:
                failures += 1
                raise ConnectionResetError("injected: connection lost before commit")

        monkeypatch.setattr(projector_module, "project_events", flaky)
        seen: list[int] = []
        violations: list[str] = []
        checker = await asyncpg.connect(query_settings.asyncpg_dsn)

        async def check(seq: int) -> None:
            seen.append(seq)
            # Every event at or below the checkpoint is applied (message n is event n here).
            covered = await checker.fetchval(
                "SELECT count(*) FROM messages WHERE received_seq <= $1", seq
            )
            if covered != seq:
                violations.append(f"checkpoint {seq} covers only {covered} events")

        listener = await asyncpg.connect(query_settings.asyncpg_dsn)
        queue: asyncio.Queue[int] = asyncio.Queue()
        await listener.add_listener(
            NOTIFY_CHANNEL, lambda *args: queue.put_nowait(int(str(args[-1]).rpartition(":")[2]))
        )
        try:
            async with running_projector(nats_client, query_settings):
                if instances == 2:
                    async with running_projector(nats_client, query_settings):
                        await wait_for_checkpoint(pg, total)
                else:
                    await wait_for_checkpoint(pg, total)
            while not queue.empty():
                await check(queue.get_nowait())
        finally:
            await listener.close()
            await checker.close()
        assert failures > 1
        assert violations == []
        assert seen == sorted(set(seen))
        if instances == 1:
            # The failing batch is retried in place and committed whole before anything after it.
            assert seen[0] == query_settings.projector_batch_size
        # With two instances, a retry drops the leader's connection and with it the advisory
        # lock: the standby may take over and fetch the events after the first batch, which stays
        # unacked with the old leader until its ack wait. The checkpoint then stops at the hole
        # (the `violations` check above) and batches are smaller, but nothing is skipped.
        await assert_exact(pg, total)


@pytest.mark.fault
class TestPostgresDown:
    async def test_projector_resumes_by_itself(
        self,
        stream: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        private_postgres: PostgresServer,
    ) -> None:
        admin = await asyncpg.connect(private_postgres.url)
        await admin.execute("CREATE DATABASE chatlog")
        await admin.close()
        url = database_url_for(private_postgres.url, "chatlog")
        await migrate_async(url)
        settings = query_settings.model_copy(update={"database_url": url})
        async with running_projector(nats_client, settings):
            await publish_many(stream, settings, [message_event(n) for n in range(1, 101)])
            pg = await asyncpg.connect(settings.asyncpg_dsn)
            await wait_for_checkpoint(pg, 100)
            await pg.close()
            await asyncio.to_thread(private_postgres.stop)
            await publish_many(stream, settings, [message_event(n) for n in range(101, 201)])
            await asyncio.sleep(2 * settings.projector_ack_wait)
            await asyncio.to_thread(private_postgres.start)
            pg = await asyncpg.connect(settings.asyncpg_dsn)
            try:
                await wait_for_checkpoint(pg, 200, timeout=30)
                await assert_exact(pg, 200)
            finally:
                await pg.close()


class TestHoles:
    async def test_checkpoint_stops_before_a_hole(
        self, query_settings: QuerySettings, pg: asyncpg.Connection
    ) -> None:
        """Another instance holds events 3-4: the checkpoint must not pass them."""
        batch = [
            StreamEvent(seq, "s", headers, body)
            for seq, (body, headers) in ((n, encode_event(message_event(n))) for n in (1, 2, 5, 6))
        ]
        first = Projector(query_settings.asyncpg_dsn, "read_models")
        try:
            assert await first.apply(batch) == 2
            assert await pg.fetchval("SELECT array_agg(message_id ORDER BY 1) FROM messages") == [
                1,
                2,
            ]
            later = [
                StreamEvent(n, "s", h, b)
                for n, (b, h) in ((n, encode_event(message_event(n))) for n in (3, 4, 5, 6))
            ]
            assert await first.apply(later) == 6
            assert await pg.fetchval("SELECT message_count FROM chats") == 6
        finally:
            await first.close()

    async def test_a_second_instance_stands_by(self, query_settings: QuerySettings) -> None:
        first = Projector(query_settings.asyncpg_dsn, "read_models")
        second = Projector(query_settings.asyncpg_dsn, "read_models")
        try:
            await first.wait_until_leader(0.05)
            with pytest.raises(NotLeaderError):
                await second.apply([StreamEvent(1, "s", *reversed(encode_event(message_event(1))))])
            waiting = asyncio.create_task(second.wait_until_leader(0.05))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            await first.close()
            await asyncio.wait_for(waiting, 5)
        finally:
            await first.close()
            await second.close()


@pytest.mark.fault
class TestQueryApiWhilePostgresRestarts:
    async def test_503_while_down_then_serves_again(
        self, query_settings: QuerySettings, private_postgres: PostgresServer
    ) -> None:
        """Reads answer 503 (problem+json) while PostgreSQL is down, and recover by themselves
        once it is back: at most one failed read per restart, no stale connection kept."""
        import httpx  # noqa: PLC0415

        from query_service.main import create_app  # noqa: PLC0415

        admin = await asyncpg.connect(private_postgres.url)
        await admin.execute("CREATE DATABASE chatlog")
        await admin.close()
        url = database_url_for(private_postgres.url, "chatlog")
        await migrate_async(url)
        settings = query_settings.model_copy(update={"database_url": url})
        pg = await asyncpg.connect(settings.asyncpg_dsn)
        await pg.execute("INSERT INTO projection_checkpoints (name, seq) VALUES ('read_models', 7)")
        await pg.close()
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://q",
                headers={"Authorization": "Bearer test-key"},
            ) as http:  # fmt: skip
                assert (await http.get("/v1/chats")).status_code == 200
                await asyncio.to_thread(private_postgres.stop)
                down = await http.get("/v1/chats")
                assert down.status_code == 503
                assert down.headers["content-type"] == "application/problem+json"
                assert (await http.get("/readyz")).status_code == 503
                await asyncio.to_thread(private_postgres.start)
                answers = [(await http.get("/v1/chats")).status_code for _ in range(6)]
                assert answers.count(503) <= 1, answers
                assert answers[-1] == 200
                assert (await http.get("/readyz")).status_code == 200


@pytest.mark.usefixtures("small_pieces")
class TestCrashesWithBatchesInPieces(TestCrashes):
    """The crash scenarios again, with every batch fetched and written in pieces."""


@pytest.mark.usefixtures("small_pieces")
class TestTransientFailuresWithBatchesInPieces(TestTransientFailures):
    """Retry in place (one and two instances) again, with every batch fetched in pieces."""
