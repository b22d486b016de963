"""The query HTTP API: auth, problem+json errors, pagination and the consistency token."""

import asyncio
from datetime import timedelta

import asyncpg
import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from query_service.config import QuerySettings
from tests.query_service.conftest import (
    BOT,
    CHAT,
    T0,
    message_event,
    project_directly,
    publish,
    running_projector,
)

pytestmark = pytest.mark.asyncio

MESSAGES = f"/v1/bots/{BOT}/chats/{CHAT}/messages"
PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert "x-chatlog-seq" in response.headers
    return body


class TestReadYourWrites:
    async def test_read_with_min_seq_sees_the_write_on_the_first_call(
        self,
        js: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        client: httpx.AsyncClient,
    ) -> None:
        async with running_projector(nats_client, query_settings):
            for message_id in range(1, 4):
                ack = await publish(js, query_settings, message_event(message_id))
                response = await client.get(
                    f"{MESSAGES}/{message_id}", params={"min_seq": ack.seq, "wait": 5}
                )
                assert response.status_code == 200, response.text
                assert int(response.headers["x-chatlog-seq"]) >= ack.seq
                assert response.json()["text"] == f"message {message_id}"
            header = await client.get(MESSAGES, headers={"X-Chatlog-Min-Seq": str(ack.seq)})
            assert header.status_code == 200
            assert len(header.json()["items"]) == 3

    async def test_min_seq_not_reached_in_time_is_a_503_with_the_current_seq(
        self, client: httpx.AsyncClient, pg: asyncpg.Connection
    ) -> None:
        await project_directly(pg, [message_event(1)])
        started = asyncio.get_running_loop().time()
        response = await client.get(MESSAGES, params={"min_seq": 99, "wait": 0.3})
        assert asyncio.get_running_loop().time() - started < 2
        body = assert_problem(response, 503)
        assert body["seq"] == 1
        assert body["min_seq"] == 99
        assert response.headers["x-chatlog-seq"] == "1"
        assert response.headers["retry-after"] == "1"

    async def test_wait_is_capped(
        self, query_settings: QuerySettings, client: httpx.AsyncClient
    ) -> None:
        assert query_settings.consistency_max_wait == 10
        started = asyncio.get_running_loop().time()
        response = await client.get(MESSAGES, params={"min_seq": 5, "wait": 0.2})
        assert_problem(response, 503)
        assert asyncio.get_running_loop().time() - started < 2


class TestErrors:
    async def test_missing_or_wrong_api_key_is_401(self, client: httpx.AsyncClient) -> None:
        missing = await client.get("/v1/chats", headers={"Authorization": ""})
        assert_problem(missing, 401)
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await client.get("/v1/chats", headers={"Authorization": "Bearer nope"})
        assert_problem(wrong, 401)

    async def test_unknown_chat_and_message_are_404(
        self, client: httpx.AsyncClient, pg: asyncpg.Connection
    ) -> None:
        await project_directly(pg, [message_event(1)])
        assert_problem(await client.get(f"/v1/bots/{BOT}/chats/123"), 404)
        assert_problem(await client.get(f"/v1/bots/{BOT}/chats/123/messages"), 404)
        missing = await client.get(f"{MESSAGES}/999")
        assert assert_problem(missing, 404)["detail"] == (
            f"no message 999 in chat {CHAT} of bot {BOT}"
        )
        assert missing.headers["x-chatlog-seq"] == "1"

    async def test_bad_cursor_is_400(self, client: httpx.AsyncClient) -> None:
        for cursor in ["%%%", "bm90IGpzb24", "eyJ4IjogMX0", "eyJtIjogInMifQ"]:
            assert_problem(await client.get(MESSAGES, params={"before": cursor}), 400)
        assert_problem(await client.get("/v1/chats", params={"cursor": "eyJtIjogMX0"}), 400)
        both = await client.get(MESSAGES, params={"before": "eyJtIjogMX0", "after": "eyJtIjogMX0"})
        assert_problem(both, 400)

    async def test_limit_over_the_cap_is_422(self, client: httpx.AsyncClient) -> None:
        body = assert_problem(await client.get(MESSAGES, params={"limit": 201}), 422)
        assert "limit" in str(body["detail"])
        assert_problem(await client.get("/v1/chats", params={"limit": 0}), 422)

    async def test_health_and_readiness(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/healthz", headers={"Authorization": ""})).status_code == 200
        ready = await client.get("/readyz", headers={"Authorization": ""})
        assert ready.json() == {"status": "ready"}


class TestShapes:
    async def test_message_and_chat_json(
        self, client: httpx.AsyncClient, pg: asyncpg.Connection
    ) -> None:
        edited = T0 + timedelta(days=1)
        await project_directly(
            pg,
            [
                message_event(5, thread_id=9),
                message_event(5, text="fixed", edited_at=edited, thread_id=9),
            ],
        )
        message = (await client.get(f"{MESSAGES}/5")).json()
        assert message == {
            "bot_id": BOT, "chat_id": CHAT, "message_id": 5, "thread_id": 9,
            "sender": {"id": 42, "name": "Ada", "username": "ada", "is_bot": False},
            "sent_at": "2025-01-01T00:00:05Z", "edited_at": "2025-01-02T00:00:00Z",
            "kind": "text", "text": "fixed", "reply_to_message_id": None,
        }  # fmt: skip
        chat = (await client.get(f"/v1/bots/{BOT}/chats/{CHAT}")).json()
        assert chat == {
            "bot_id": BOT, "chat_id": CHAT, "type": "supergroup", "title": "Test group",
            "username": None, "message_count": 1, "first_message_at": "2025-01-01T00:00:05Z",
            "last_message_at": "2025-01-01T00:00:05Z", "last_message_preview": "fixed",
        }  # fmt: skip

    async def test_chats_by_last_activity_with_a_cursor(
        self, client: httpx.AsyncClient, pg: asyncpg.Connection
    ) -> None:
        # Chat n's last message is message n, so activity grows with n.
        events = [message_event(n, chat_id=-n) for n in range(1, 8)]
        events.append(message_event(3, chat_id=-3, bot_id="other_bot"))
        await project_directly(pg, events)
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 3, "bot_id": BOT}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/v1/chats", params=params)).json()
            seen += [chat["chat_id"] for chat in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [-7, -6, -5, -4, -3, -2, -1]
        everyone = (await client.get("/v1/chats", params={"limit": 200})).json()
        assert len(everyone["items"]) == 8
        assert everyone["next_cursor"] is None

    async def test_thread_filter(self, client: httpx.AsyncClient, pg: asyncpg.Connection) -> None:
        await project_directly(pg, [message_event(n, thread_id=n % 2) for n in range(1, 11)])
        page = (await client.get(MESSAGES, params={"thread_id": 1})).json()
        assert [m["message_id"] for m in page["items"]] == [9, 7, 5, 3, 1]

    async def test_projection_status(
        self, client: httpx.AsyncClient, pg: asyncpg.Connection
    ) -> None:
        await project_directly(pg, [message_event(1), message_event(2)])
        status = (await client.get("/v1/projections")).json()
        assert status["name"] == "read_models"
        assert status["checkpoint"] == 2
        assert status["parked"] == 0
        assert status["unknown"] == 0
        # This test's stream was never created: the stream side is unknown, not an error.
        assert status["stream_last_seq"] is None


class TestPagination:
    async def test_ten_thousand_messages_both_directions(
        self, client: httpx.AsyncClient, pg: asyncpg.Connection
    ) -> None:
        total = 10_000
        await project_directly(pg, [message_event(n) for n in range(1, total + 1)], chunk=2000)
        older: list[int] = []
        page = (await client.get(MESSAGES, params={"limit": 100})).json()
        assert page["prev_cursor"] is None
        while True:
            older += [m["message_id"] for m in page["items"]]
            if page["next_cursor"] is None:
                break
            page = (
                await client.get(MESSAGES, params={"limit": 100, "before": page["next_cursor"]})
            ).json()
        assert older == list(range(total, 0, -1))
        assert page["prev_cursor"] is not None
        # Walk back up, from the oldest page's newer side.
        newer: list[int] = [m["message_id"] for m in page["items"]]
        page = (
            await client.get(MESSAGES, params={"limit": 100, "after": page["prev_cursor"]})
        ).json()
        while True:
            newer = [m["message_id"] for m in page["items"]] + newer
            if page["prev_cursor"] is None:
                break
            page = (
                await client.get(MESSAGES, params={"limit": 100, "after": page["prev_cursor"]})
            ).json()
        assert newer == list(range(total, 0, -1))


async def test_api_starts_and_reads_without_nats(query_settings: QuerySettings) -> None:
    """NATS unreachable at start: the API still starts (bounded wait) and serves reads."""
    from chatlog.servers import free_port  # noqa: PLC0415
    from query_service.main import create_app  # noqa: PLC0415

    settings = query_settings.model_copy(update={"nats_url": f"nats://127.0.0.1:{free_port()}"})
    app = create_app(settings)
    async with asyncio.timeout(20), app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://q", headers={"Authorization": "Bearer test-key"}
        ) as http:
            assert (await http.get("/readyz")).status_code == 200
            assert (await http.get("/v1/chats")).status_code == 200
            status = (await http.get("/v1/projections")).json()
            assert status["stream_last_seq"] is None
