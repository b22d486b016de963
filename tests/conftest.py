"""Generic fixtures: a real NATS server, a real PostgreSQL, and private servers for fault tests.

`CHATLOG_TEST_NATS_URL` and `CHATLOG_TEST_DATABASE_URL` point the tests at running servers (CI
uses the machine's); without them the session starts throwaway servers of its own. Either way every
test gets its own stream and subject prefix, and every session its own freshly created database.
"""

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from chatlog.servers import NatsServer, PostgresServer
from shared.config import ChatlogSettings

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "telegram"
"""Real Telegram updates and exports, beside the repository (read-only)."""


@contextlib.contextmanager
def postgres_folder() -> Iterator[Path]:
    """A folder for a PostgreSQL server's data, outside pytest's temporary tree.

    As root, PostgreSQL runs as another user, who must traverse every parent folder; pytest keeps
    its `pytest-of-<user>` folder at mode 0700 and resets it whenever any pytest session starts,
    so a concurrent session would shut our server out of its own data.
    """
    folder = Path(tempfile.mkdtemp(prefix="chatlog-test-pg-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def unique(prefix: str) -> str:
    """A name no other test or session uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A NATS server with JetStream: the one named by CHATLOG_TEST_NATS_URL, or a throwaway one."""
    if url := os.environ.get("CHATLOG_TEST_NATS_URL"):
        yield url
        return
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL server's maintenance database, where test databases are created and dropped."""
    if url := os.environ.get("CHATLOG_TEST_DATABASE_URL"):
        yield url
        return
    with postgres_folder() as folder:
        server = PostgresServer(folder).start()
        yield server.url
        server.stop()


def database_url_for(admin_url: str, name: str) -> str:
    """The URL of database `name` on the same server as `admin_url`."""
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest_asyncio.fixture(scope="session")
async def make_database(postgres_admin_url: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Create fresh, empty databases on demand; all are dropped when the session ends."""
    created: list[str] = []

    async def make() -> str:
        name = unique("chatlog_test_")
        conn = await asyncpg.connect(postgres_admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        created.append(name)
        return database_url_for(postgres_admin_url, name)

    yield make
    conn = await asyncpg.connect(postgres_admin_url)
    try:
        for name in created:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="session")
async def database_url(make_database: Callable[[], Awaitable[str]]) -> str:
    """This session's own database."""
    return await make_database()


@pytest.fixture
def settings(nats_url: str) -> ChatlogSettings:
    """Settings with a stream and subject prefix of this test's own."""
    token = unique("")
    return ChatlogSettings(
        _env_file=None,  # type: ignore[call-arg]
        nats_url=nats_url,
        stream=f"TEST_{token}",
        subject_prefix=f"test.{token}",
    )


@pytest_asyncio.fixture
async def nats_client(nats_url: str) -> AsyncIterator[NatsClient]:
    """A connection to the test NATS server."""
    client = await nats.connect(nats_url)
    yield client
    await client.drain()


@pytest_asyncio.fixture
async def js(nats_client: NatsClient, settings: ChatlogSettings) -> AsyncIterator[JetStreamContext]:
    """JetStream on the test server; this test's stream is deleted afterwards if it was made."""
    context = nats_client.jetstream()
    yield context
    with contextlib.suppress(NotFoundError):
        await context.delete_stream(settings.stream)


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS server of this test's own, which the test may stop and start again."""
    server = NatsServer(tmp_path / "private-nats").start()
    yield server
    server.stop()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, which the test may stop and start again."""
    with postgres_folder() as folder:
        server = PostgresServer(folder).start()
        yield server
        server.stop()
