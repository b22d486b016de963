"""NATS away: 503 with Retry-After and nothing accepted; back: the same update, stored once."""

import asyncio
import dataclasses
import json

import httpx
import nats
import pytest
from nats.js.api import RetentionPolicy

from chatlog.servers import NatsServer
from ingest_service.config import IngestSettings
from shared.config import ChatlogSettings
from shared.errors import StreamConfigError
from shared.stream import stream_config
from tests.conftest import FIXTURES
from tests.ingest_service.conftest import HEADERS_OK, make_settings, running_app

pytestmark = [pytest.mark.asyncio, pytest.mark.fault]

BODY = (FIXTURES / "updates/message_text_cyrillic_emoji.json").read_bytes()


async def until_ready(client: httpx.AsyncClient, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while (await client.get("/readyz")).status_code != 200:
            await asyncio.sleep(0.1)


async def test_nats_down_then_back(private_nats: NatsServer, settings: ChatlogSettings) -> None:
    config = make_settings(settings, nats_url=private_nats.url)
    async with running_app(config) as client:
        assert (await client.post("/telegram/bot_1/webhook", content=BODY,
                                  headers=HEADERS_OK)).status_code == 200  # fmt: skip
        private_nats.stop()
        await asyncio.sleep(0.3)
        update = json.loads(BODY)
        update["update_id"] += 1
        update["message"]["message_id"] += 1
        body = json.dumps(update).encode()
        down = await client.post("/telegram/bot_1/webhook", content=body, headers=HEADERS_OK)
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert int(down.headers["retry-after"]) >= 1
        assert (await client.get("/readyz")).status_code == 503

        private_nats.start()
        await until_ready(client)
        retried = await client.post("/telegram/bot_1/webhook", content=body, headers=HEADERS_OK)
        assert retried.status_code == 200
        again = await client.post("/telegram/bot_1/webhook", content=body, headers=HEADERS_OK)
        assert again.json() == {**retried.json(), "duplicate": True}

    nc = await nats.connect(private_nats.url)
    info = await nc.jetstream().stream_info(config.stream)
    assert info.state.messages == 2  # the first update, and the retried one exactly once
    await nc.close()


async def test_refuses_to_start_on_an_incompatible_stream(
    private_nats: NatsServer, settings: ChatlogSettings
) -> None:
    config: IngestSettings = make_settings(settings, nats_url=private_nats.url)
    nc = await nats.connect(private_nats.url)
    wrong = dataclasses.replace(stream_config(config), retention=RetentionPolicy.WORK_QUEUE)
    await nc.jetstream().add_stream(config=wrong)
    await nc.close()
    with pytest.raises(StreamConfigError, match="retention"):
        async with running_app(config):
            pass


async def test_stream_gone_refuses_with_503(
    client: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    """JetStream refusing the publish (no stream answers) is a 503, never a 200."""
    nc = await nats.connect(ingest_settings.nats_url)
    await nc.jetstream().delete_stream(ingest_settings.stream)
    response = await client.post("/telegram/bot_1/webhook", content=BODY, headers=HEADERS_OK)
    assert response.status_code == 503
    assert "retry" in response.json()["detail"]
    assert (await client.get("/readyz")).status_code == 503
    await nc.close()
