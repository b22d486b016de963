"""Fixtures of the query service: a migrated database per test, events, a running projector."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import PubAck

from query_service import projector as projector_module
from query_service import subscribers
from query_service.config import QuerySettings
from query_service.db import migrate_async
from query_service.main import create_app
from query_service.projections import project_events
from query_service.projector import Projector
from query_service.subscribers import consume, gap_check, subscribe
from shared.codec import encode_event
from shared.config import ChatlogSettings
from shared.events import ChatInfo, MessageData, MessageEdited, MessageReceived, Sender
from shared.stream import ensure_stream
from shared.subjects import event_subject
from shared.telegram import map_update
from tests.conftest import FIXTURES

BOT = "bot_1"
CHAT = -1001869112345
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def message_event(
    message_id: int,
    *,
    chat_id: int = CHAT,
    bot_id: str = BOT,
    text: str | None = None,
    edited_at: datetime | None = None,
    thread_id: int | None = None,
    title: str = "Test group",
    event_id: str | None = None,
) -> MessageReceived | MessageEdited:
    """A MessageReceived, or a MessageEdited when `edited_at` is given."""
    data = MessageData(
        chat=ChatInfo(id=chat_id, type="supergroup", title=title),
        message_id=message_id,
        thread_id=thread_id,
        sender=Sender(id=42, name="Ada", username="ada"),
        sent_at=T0 + timedelta(seconds=message_id % 10**9),
        edited_at=edited_at,
        kind="text",
        text=text if text is not None else f"message {message_id}",
        original={"message_id": message_id, "text": text, "edit_date": str(edited_at)},
    )
    cls = MessageEdited if edited_at else MessageReceived
    suffix = f"e{edited_at.timestamp():.0f}" if edited_at else ""
    return cls(
        event_id=event_id or f"test:{bot_id}:{chat_id}:{message_id}{suffix}",
        occurred_at=edited_at or data.sent_at,
        recorded_at=datetime.now(UTC),
        bot_id=bot_id,
        source="api",
        data=data,
    )


def fixture_event(name: str, bot_id: str = BOT) -> MessageReceived | MessageEdited:
    """The event of a real Telegram update from the shared fixtures."""
    event = map_update(bot_id, json.loads((FIXTURES / f"updates/{name}.json").read_bytes()))
    assert isinstance(event, MessageReceived | MessageEdited)
    return event


async def publish(
    js: JetStreamContext,
    settings: ChatlogSettings,
    event: MessageReceived | MessageEdited,
    *,
    msg_id: str | None = None,
) -> PubAck:
    """Publish `event` the way the ingest service does."""
    body, headers = encode_event(event)
    if msg_id is not None:
        headers["Nats-Msg-Id"] = msg_id
    subject = event_subject(settings.subject_prefix, event.bot_id, event.data.chat.id, event.type)
    return await js.publish(subject, body, headers=headers)


async def publish_many(
    js: JetStreamContext, settings: ChatlogSettings, events: list[Any], chunk: int = 500
) -> int:
    """Publish many events, `chunk` in flight at once; the last sequence."""
    last = 0
    for start in range(0, len(events), chunk):
        acks = await asyncio.gather(
            *(publish(js, settings, e) for e in events[start : start + chunk])
        )
        last = max(last, *(a.seq for a in acks))
    return last


@pytest_asyncio.fixture
async def database(make_database: Callable[[], Awaitable[str]]) -> str:
    """A fresh database of this test's own, migrated to head."""
    url = await make_database()
    await migrate_async(url)
    return url


@pytest.fixture
def query_settings(settings: ChatlogSettings, database: str) -> QuerySettings:
    """Query settings on this test's stream and database, with short timings for tests."""
    return QuerySettings(
        _env_file=None,  # type: ignore[call-arg]
        nats_url=settings.nats_url,
        stream=settings.stream,
        subject_prefix=settings.subject_prefix,
        database_url=database,
        projector_batch_size=50,
        projector_fetch_timeout=0.5,
        projector_ack_wait=2.0,
        projector_retry_max_backoff=0.2,
        projector_standby_poll=0.2,
        api_keys=["test-key"],
    )


@pytest_asyncio.fixture
async def pg(query_settings: QuerySettings) -> AsyncIterator[asyncpg.Connection]:
    """A connection to this test's database."""
    conn = await asyncpg.connect(query_settings.asyncpg_dsn)
    yield conn
    await conn.close()


@contextlib.asynccontextmanager
async def running_projector(
    nats_client: NatsClient, settings: QuerySettings
) -> AsyncIterator[Projector]:
    """A projector consuming in a task of its own until the block ends."""
    projector = Projector(
        settings.asyncpg_dsn,
        settings.projection_name,
        retry_max_backoff=settings.projector_retry_max_backoff,
        gap_is_empty=gap_check(nats_client.jetstream(), settings.stream),
    )
    subscription = await subscribe(nats_client.jetstream(), settings)
    task = asyncio.create_task(consume(subscription, projector, settings))
    try:
        yield projector
    finally:
        task.cancel()
        # Bounded, so that a stuck shutdown fails the test instead of hanging the session.
        with contextlib.suppress(asyncio.CancelledError, BaseException):
            await asyncio.wait_for(task, 10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(subscription.unsubscribe(), 5)
        await asyncio.wait_for(projector.close(), 5)


async def checkpoint(conn: asyncpg.Connection, name: str = "read_models") -> int:
    """The projection's checkpoint, 0 before the first batch."""
    return int(
        await conn.fetchval("SELECT seq FROM projection_checkpoints WHERE name = $1", name) or 0
    )


async def assert_exact(pg: asyncpg.Connection, total: int) -> None:
    """Messages 1..`total` of one chat, each applied once, nothing parked, the checkpoint at it."""
    assert await pg.fetchval("SELECT count(*) FROM messages") == total
    assert await pg.fetchval("SELECT message_count FROM chats") == total
    assert await pg.fetchval("SELECT count(*) FROM parked_events") == 0
    assert await checkpoint(pg) == total


async def wait_for_checkpoint(conn: asyncpg.Connection, seq: int, timeout: float = 20.0) -> None:
    """Wait until the checkpoint reaches `seq`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await checkpoint(conn) < seq:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"checkpoint {await checkpoint(conn)} never reached {seq}")
        await asyncio.sleep(0.02)


async def table_checksums(conn: asyncpg.Connection) -> dict[str, str]:
    """An md5 of each read-model table's full content, in key order."""
    return {
        "messages": await conn.fetchval(
            "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY bot_id, chat_id, message_id),"
            " '')) FROM messages t"
        ),
        "chats": await conn.fetchval(
            "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY bot_id, chat_id), ''))"
            " FROM chats t"
        ),
    }


@pytest_asyncio.fixture
async def stream(js: JetStreamContext, query_settings: QuerySettings) -> JetStreamContext:
    """JetStream with this test's stream created, for tests that publish before projecting."""
    await ensure_stream(js, query_settings)
    return js


@pytest_asyncio.fixture
async def client(query_settings: QuerySettings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the query app, its lifespan running, authorised with the test key."""
    app = create_app(query_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://query",
            headers={"Authorization": "Bearer test-key"},
        ) as http:
            yield http


async def project_directly(
    conn: asyncpg.Connection, events: list[Any], name: str = "read_models", chunk: int = 1000
) -> int:
    """Apply events numbered 1.. straight through the projection function; the checkpoint."""
    pairs = list(enumerate(events, 1))
    for start in range(0, len(pairs), chunk):
        async with conn.transaction():
            await project_events(conn, pairs[start : start + chunk])
    await conn.execute(
        "INSERT INTO projection_checkpoints (name, seq) VALUES ($1, $2)"
        " ON CONFLICT (name) DO UPDATE SET seq = GREATEST(projection_checkpoints.seq, $2)",
        name,
        len(pairs),
    )
    return len(pairs)


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 50 fetched in pieces of 20, 20 and 10, each fetched while the last is written."""
    monkeypatch.setattr(projector_module, "PIPELINE_CHUNK", 20)
    monkeypatch.setattr(subscribers, "PIPELINE_CHUNK", 20)
