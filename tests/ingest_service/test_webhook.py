"""The Telegram webhook against a real NATS server."""

import asyncio
import json

import httpx
import pytest
from nats.js import JetStreamContext

from ingest_service.config import IngestSettings
from shared import codec
from shared.codec import HEADER_EVENT_TYPE, HEADER_EVENT_VERSION, HEADER_MSG_ID
from tests.conftest import FIXTURES
from tests.ingest_service.conftest import BOT, SECRET, stream_count

pytestmark = pytest.mark.asyncio

UPDATES = sorted((FIXTURES / "updates").glob("*.json"))
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}


def post(client: httpx.AsyncClient, body: bytes, bot: str = BOT, **headers: str):
    return client.post(f"/telegram/{bot}/webhook", content=body, headers={**HEADERS, **headers})


def is_problem(response: httpx.Response, status: int) -> bool:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"]
    return True


async def test_every_fixture_lands_or_is_ignored(
    client: httpx.AsyncClient, js: JetStreamContext, ingest_settings: IngestSettings
) -> None:
    stored = 0
    seq_of: dict[int, int] = {}  # some fixtures are the same update, serialised differently
    for path in UPDATES:
        body = path.read_bytes()
        update = json.loads(body)
        response = await post(client, body)
        assert response.status_code == 200, (path.name, response.text)
        answer = response.json()
        if "ignored" in answer:
            assert answer["ignored"]
            assert await stream_count(js, ingest_settings.stream) == stored, path.name
            continue
        event_id = f"tg:{BOT}:{update['update_id']}"
        if update["update_id"] in seq_of:
            assert answer == {"event_id": event_id, "seq": seq_of[update["update_id"]],
                              "duplicate": True}  # fmt: skip
            continue
        stored += 1
        seq_of[update["update_id"]] = stored
        assert answer == {"event_id": event_id, "seq": stored, "duplicate": False}
        message = await js.get_msg(ingest_settings.stream, answer["seq"])
        assert message.headers is not None
        event = codec.decode_event(message.data or b"", message.headers)
        assert message.headers[HEADER_MSG_ID] == answer["event_id"]
        assert message.headers[HEADER_EVENT_TYPE] == event.type
        assert message.headers[HEADER_EVENT_VERSION] == "1"
        chat_id = event.data.chat.id
        assert message.subject == f"{ingest_settings.subject_prefix}.{BOT}.{chat_id}.{event.type}"
        assert event.data.original == update
    assert stored > 40
    assert await stream_count(js, ingest_settings.stream) == stored


async def test_retried_update_is_stored_once(
    client: httpx.AsyncClient, js: JetStreamContext, ingest_settings: IngestSettings
) -> None:
    body = (FIXTURES / "updates/message_private_text.json").read_bytes()
    first = (await post(client, body)).json()
    again = (await post(client, body)).json()
    assert first["duplicate"] is False
    assert again == {**first, "duplicate": True}
    assert await stream_count(js, ingest_settings.stream) == 1


class TestBadInput:
    """Each answers a clear problem, and the stream is unchanged."""

    BODY = (FIXTURES / "updates/message_private_text.json").read_bytes()

    async def test_wrong_secret(self, client: httpx.AsyncClient, js: JetStreamContext,
                                ingest_settings: IngestSettings) -> None:  # fmt: skip
        response = await post(client, self.BODY, **{"X-Telegram-Bot-Api-Secret-Token": "nope"})
        assert is_problem(response, 401)
        assert await stream_count(js, ingest_settings.stream) == 0

    async def test_missing_secret(self, client: httpx.AsyncClient) -> None:
        response = await client.post(f"/telegram/{BOT}/webhook", content=self.BODY)
        assert is_problem(response, 401)

    async def test_other_bots_secret(self, client: httpx.AsyncClient) -> None:
        response = await post(client, self.BODY, bot="bot-2")
        assert is_problem(response, 401)

    async def test_unknown_bot(self, client: httpx.AsyncClient, js: JetStreamContext,
                               ingest_settings: IngestSettings) -> None:  # fmt: skip
        response = await post(client, self.BODY, bot="nobody")
        assert is_problem(response, 404)
        assert "nobody" in response.json()["detail"]
        assert await stream_count(js, ingest_settings.stream) == 0

    async def test_oversized_body_declared(self, client: httpx.AsyncClient, js: JetStreamContext,
                                           ingest_settings: IngestSettings) -> None:  # fmt: skip
        big = b'{"update_id": 1, "pad": "' + b"x" * (ingest_settings.max_body_bytes + 1) + b'"}'
        response = await post(client, big)
        assert is_problem(response, 413)
        assert await stream_count(js, ingest_settings.stream) == 0

    async def test_oversized_body_streamed_is_not_read_whole(
        self, client: httpx.AsyncClient, ingest_settings: IngestSettings
    ) -> None:
        sent = 0
        chunk = b"x" * 65536

        async def body():
            nonlocal sent
            yield b'{"update_id": 1, "pad": "'
            for _ in range(200):  # 13 MB offered
                sent += len(chunk)
                yield chunk

        response = await client.post(f"/telegram/{BOT}/webhook", content=body(), headers=HEADERS)
        assert is_problem(response, 413)
        assert sent < 200 * len(chunk)  # the server stopped reading early

    async def test_invalid_json(self, client: httpx.AsyncClient, js: JetStreamContext,
                                ingest_settings: IngestSettings) -> None:  # fmt: skip
        response = await post(client, b'{"update_id": 1, "message": ')
        assert is_problem(response, 400)
        assert await stream_count(js, ingest_settings.stream) == 0

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            (b"[1, 2]", "<root>"),
            (b'{"message": {}}', "update_id"),
            (b'{"update_id": 5, "message": {"message_id": 1, "date": 1}}', "message.chat"),
            (
                (
                    b'{"update_id": 5, "message": {"message_id": 1, "date": 1, "text": [1],'
                    b' "chat": {"id": 1, "type": "private"}}}'
                ),
                "message (text)",
            ),
        ],
    )
    async def test_not_an_update(self, client: httpx.AsyncClient, js: JetStreamContext,
                                 ingest_settings: IngestSettings, body: bytes,
                                 field: str) -> None:  # fmt: skip
        response = await post(client, body)
        assert is_problem(response, 422)
        assert field in [e["field"] for e in response.json()["errors"]]
        assert field in response.json()["detail"]
        assert await stream_count(js, ingest_settings.stream) == 0

    async def test_unknown_route_and_method(self, client: httpx.AsyncClient) -> None:
        assert is_problem(await client.get("/nope"), 404)
        assert is_problem(await client.get(f"/telegram/{BOT}/webhook"), 405)


async def test_concurrent_distinct_updates_all_land_once(
    client: httpx.AsyncClient, js: JetStreamContext, ingest_settings: IngestSettings
) -> None:
    template = json.loads((FIXTURES / "updates/message_group_text.json").read_bytes())
    bodies = []
    for i in range(200):
        update = json.loads(json.dumps(template))
        update["update_id"] = 10_000 + i
        update["message"]["message_id"] = 50_000 + i
        bodies.append(json.dumps(update).encode())
    responses = await asyncio.gather(*(post(client, body) for body in bodies))
    assert [r.status_code for r in responses] == [200] * 200
    seqs = sorted(r.json()["seq"] for r in responses)
    assert seqs == list(range(1, 201))
    assert not any(r.json()["duplicate"] for r in responses)
    assert await stream_count(js, ingest_settings.stream) == 200


async def test_health(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
