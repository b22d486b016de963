"""POST /v1/messages: API keys, idempotency keys, validation, against a real NATS server."""

import httpx
import pytest
from nats.js import JetStreamContext

from ingest_service.config import IngestSettings
from shared import codec
from shared.events import EventSource, MessageReceived
from tests.ingest_service.conftest import API_KEY, BOT, running_app, stream_count

pytestmark = pytest.mark.asyncio

MESSAGE = {
    "bot_id": BOT,
    "chat": {"id": -1001234, "type": "supergroup", "title": "Team"},
    "message_id": 77,
    "sent_at": "2026-12-03T10:00:00+00:00",
    "text": "Reply from the bot 🤖",
    "sender": {"id": 42, "name": "Helper Bot", "username": "helper_bot", "is_bot": True},
    "reply_to_message_id": 76,
}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def write(client: httpx.AsyncClient, body: object, key: str | None = "key-1", **headers: str):
    sent = {**AUTH, **headers}
    if key is not None:
        sent["Idempotency-Key"] = key
    return client.post("/v1/messages", json=body, headers=sent)


async def test_records_a_message(
    client: httpx.AsyncClient, js: JetStreamContext, ingest_settings: IngestSettings
) -> None:
    response = await write(client, MESSAGE)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["seq"] == 1
    assert answer["duplicate"] is False
    assert answer["event_id"].startswith(f"api:{BOT}:")
    stored = await js.get_msg(ingest_settings.stream, 1)
    event = codec.decode_event(stored.data or b"", stored.headers)
    assert isinstance(event, MessageReceived)
    assert event.source == EventSource.API
    assert event.event_id == answer["event_id"]
    assert event.data.chat.id == -1001234
    assert event.data.text == MESSAGE["text"]
    assert event.data.sender is not None
    assert event.data.sender.is_bot is True
    assert stored.subject == f"{ingest_settings.subject_prefix}.{BOT}.-1001234.MessageReceived"


async def test_same_idempotency_key_is_one_event(
    client: httpx.AsyncClient, js: JetStreamContext, ingest_settings: IngestSettings
) -> None:
    first = (await write(client, MESSAGE, key="same")).json()
    again = (await write(client, MESSAGE, key="same")).json()
    other = (await write(client, MESSAGE, key="other")).json()
    assert again == {**first, "duplicate": True}
    assert other["event_id"] != first["event_id"]
    assert await stream_count(js, ingest_settings.stream) == 2


class TestRefusals:
    async def test_no_api_key(self, client: httpx.AsyncClient, js: JetStreamContext,
                              ingest_settings: IngestSettings) -> None:  # fmt: skip
        response = await client.post("/v1/messages", json=MESSAGE, headers={"Idempotency-Key": "k"})
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert await stream_count(js, ingest_settings.stream) == 0

    async def test_wrong_api_key(self, client: httpx.AsyncClient) -> None:
        response = await write(client, MESSAGE, Authorization="Bearer wrong")
        assert response.status_code == 401

    async def test_no_idempotency_key(self, client: httpx.AsyncClient, js: JetStreamContext,
                                      ingest_settings: IngestSettings) -> None:  # fmt: skip
        response = await write(client, MESSAGE, key=None)
        assert response.status_code == 400
        assert "Idempotency-Key" in response.json()["detail"]
        assert await stream_count(js, ingest_settings.stream) == 0

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"message_id": "seventy"}, "body.message_id"),
            ({"sent_at": "2026-12-03T10:00:00"}, "body.sent_at"),  # no time zone
            ({"bot_id": "bad.bot"}, "body.bot_id"),
            ({"chat": None}, "body.chat"),
            ({"surprise": 1}, "body.surprise"),
        ],
    )
    async def test_invalid_body_names_the_field(
        self, client: httpx.AsyncClient, js: JetStreamContext, ingest_settings: IngestSettings,
        change: dict[str, object], field: str,
    ) -> None:  # fmt: skip
        response = await write(client, {**MESSAGE, **change})
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert field in [e["field"] for e in response.json()["errors"]]
        assert await stream_count(js, ingest_settings.stream) == 0

    async def test_no_keys_configured_refuses_all(self, ingest_settings: IngestSettings) -> None:
        closed = ingest_settings.model_copy(update={"api_keys": []})
        async with running_app(closed) as client:
            response = await write(client, MESSAGE)
        assert response.status_code == 401
