"""The projector's pull requests by hand: lost answers, a restarting server, a deleted consumer."""

import asyncio
from collections.abc import AsyncIterator, Sequence

import asyncpg
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from chatlog.servers import NatsServer
from query_service import projector as projector_module
from query_service.config import QuerySettings
from query_service.consumer_reader import ConsumerReader
from query_service.projections import SeqEvent
from query_service.pull_inbox import ack_fields
from query_service.subscribers import subscribe
from shared.stream import ensure_stream
from tests.query_service.conftest import (
    assert_exact,
    message_event,
    publish_many,
    running_projector,
    wait_for_checkpoint,
)

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def reconnecting(private_nats: NatsServer) -> AsyncIterator[NatsClient]:
    """A connection to the private server that reconnects for ever, like the projector's."""
    client = await nats.connect(
        private_nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
    )
    yield client
    await client.close()


class TestLostAnswers:
    async def test_a_request_never_answered_is_given_up_after_its_expiry(
        self, stream: object, nats_client: NatsClient, query_settings: QuerySettings
    ) -> None:
        reader = await subscribe(nats_client.jetstream(), query_settings)
        try:

            async def lost(batch: int, expires: float | None = None) -> int:
                reader._pulls.requests_made += 1  # sent, but the server never hears of it
                return reader._pulls.requests_made

            reader._pulls.request = lost  # type: ignore[method-assign]
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await asyncio.wait_for(reader.first_piece(10), 10) == []
            waited = loop.time() - started
            assert query_settings.projector_fetch_timeout < waited < 5
        finally:
            await reader.unsubscribe()

    async def test_a_late_delivery_joins_the_next_batch(self, nats_client: NatsClient) -> None:
        """A delivery for a request given up is unacknowledged: dropping it would hold the
        consumer's window until its ack wait, so the next batch takes it."""
        reader = ConsumerReader(nats_client, "S", "c", batch_size=5, expires=0.1)
        sent: list[int] = []

        async def request(batch: int, expires: float | None = None) -> int:
            sent.append(batch)
            reader._pulls.requests_made += 1
            return reader._pulls.requests_made

        reader._pulls.request = request  # type: ignore[method-assign]
        assert await asyncio.wait_for(reader.first_piece(5), 5) == []  # given up
        late = Msg(_client=nats_client, subject="s", reply="$JS.ACK.S.c.1.7.7.0.0")
        fields = ack_fields(late.reply)
        assert fields is not None
        reader.delivered(late, fields)
        reader.ended(1, None)  # its end, after it was given up: nothing to do
        assert await reader.first_piece(5) == [(late, 7)]
        assert sent == [5]  # taken from the buffer, no new request


def restart(server: NatsServer, *, crash: bool) -> None:
    """Stop the server (a crash: SIGKILL, so it tells its clients nothing) and start it again."""
    if crash:
        assert server._process is not None
        server._process.kill()
        server._process.wait()
    server.stop()
    server.start()


@pytest.mark.fault
class TestNatsRestarts:
    @pytest.mark.parametrize("crash", [False, True], ids=["stop", "crash"])
    async def test_projector_resumes_after_a_restart_during_an_idle_pull(
        self,
        *,
        private_nats: NatsServer,
        reconnecting: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
        crash: bool,
    ) -> None:
        """The server restarts while the projector's long-poll request is open on it: the
        request is lost with the server (a stopping server ends it with a 409 status, a crashed
        one says nothing), and the projector must ask again by itself."""
        settings = query_settings.model_copy(
            update={"nats_url": private_nats.url, "projector_fetch_timeout": 5.0}
        )
        js = reconnecting.jetstream()
        async with running_projector(reconnecting, settings):
            await publish_many(js, settings, [message_event(n) for n in range(1, 101)])
            await wait_for_checkpoint(pg, 100)
            await asyncio.sleep(0.3)  # the next request is open, waiting for events
            await asyncio.to_thread(restart, private_nats, crash=crash)
            await asyncio.sleep(1)
            await publish_many(js, settings, [message_event(n) for n in range(101, 201)])
            await wait_for_checkpoint(pg, 200, timeout=20)
        await assert_exact(pg, 200)

    @pytest.mark.parametrize("crash", [False, True], ids=["stop", "crash"])
    async def test_projector_resumes_after_a_restart_in_the_middle_of_a_batch(
        self,
        *,
        private_nats: NatsServer,
        reconnecting: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch,
        crash: bool,
    ) -> None:
        """The server restarts while a batch is being written: its acks may be lost, its
        events come again and are skipped, and nothing is applied twice or left out."""
        settings = query_settings.model_copy(update={"nats_url": private_nats.url})
        js = reconnecting.jetstream()
        await ensure_stream(js, settings)
        total = 170
        await publish_many(js, settings, [message_event(n) for n in range(1, total + 1)])
        real_project = projector_module.project_events
        writing = asyncio.Event()
        applied: list[int] = []

        async def slow_once(conn: asyncpg.Connection, events: Sequence[SeqEvent]) -> None:
            if not writing.is_set():
                writing.set()
                await asyncio.sleep(1.5)  # the server goes away meanwhile
            await real_project(conn, events)
            applied.extend(seq for seq, _ in events)

        monkeypatch.setattr(projector_module, "project_events", slow_once)
        async with running_projector(reconnecting, settings):
            await asyncio.wait_for(writing.wait(), 10)
            await asyncio.to_thread(restart, private_nats, crash=crash)
            await wait_for_checkpoint(pg, total, timeout=30)
        await assert_exact(pg, total)
        assert sorted(set(applied)) == list(range(1, total + 1))


class TestDeletedConsumer:
    async def test_projector_creates_its_consumer_again(
        self,
        stream: object,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
    ) -> None:
        """Someone deletes the durable consumer under a running projector: its pull requests are
        refused, and it creates the consumer again (from the start; the checkpoint skips)."""
        js = nats_client.jetstream()
        async with running_projector(nats_client, query_settings):
            await publish_many(js, query_settings, [message_event(n) for n in range(1, 61)])
            await wait_for_checkpoint(pg, 60)
            await js.delete_consumer(query_settings.stream, query_settings.projection_name)
            await asyncio.sleep(0.5)
            await publish_many(js, query_settings, [message_event(n) for n in range(61, 121)])
            await wait_for_checkpoint(pg, 120, timeout=20)
        await assert_exact(pg, 120)
