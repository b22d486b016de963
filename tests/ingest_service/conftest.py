"""Fixtures of the ingest service's tests: the app on a real NATS server, and an HTTP client."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from nats.js import JetStreamContext

from ingest_service.config import IngestSettings
from ingest_service.main import create_app
from shared.config import ChatlogSettings

BOT = "bot_1"
SECRET = "s3cret-token"
API_KEY = "test-api-key"


def make_settings(base: ChatlogSettings, **overrides: object) -> IngestSettings:
    values: dict[str, object] = {
        "nats_url": base.nats_url,
        "stream": base.stream,
        "subject_prefix": base.subject_prefix,
        "telegram_secrets": {BOT: SECRET, "bot-2": "other"},
        "api_keys": [API_KEY],
        "nats_reconnect_wait": 0.2,
        "publish_timeout": 1.0,
    }
    values.update(overrides)
    return IngestSettings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


@asynccontextmanager
async def running_app(settings: IngestSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client


@pytest.fixture
def ingest_settings(settings: ChatlogSettings) -> IngestSettings:
    return make_settings(settings)


@pytest_asyncio.fixture
async def client(
    ingest_settings: IngestSettings, js: JetStreamContext
) -> AsyncIterator[httpx.AsyncClient]:
    """The ingest app, started (stream ensured) against the test NATS server."""
    async with running_app(ingest_settings) as http:
        yield http


async def stream_count(js: JetStreamContext, stream: str) -> int:
    info = await js.stream_info(stream)
    return int(info.state.messages)


HEADERS_OK = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
