"""Ingest to query through real NATS and PostgreSQL: a write is readable at its seq, first try."""

import json

import httpx
import pytest
from nats.aio.client import Client as NatsClient

from query_service.config import QuerySettings
from tests.conftest import FIXTURES
from tests.ingest_service.conftest import API_KEY, BOT, HEADERS_OK, make_settings, running_app
from tests.query_service.conftest import running_projector

pytestmark = pytest.mark.asyncio


@pytest.mark.usefixtures("js")  # deletes this test's stream afterwards
async def test_every_stored_update_is_readable_at_its_seq(
    nats_client: NatsClient, query_settings: QuerySettings, client: httpx.AsyncClient
) -> None:
    ingest_settings = make_settings(query_settings, api_keys=[API_KEY, "test-key"])
    # Some fixtures share a chat and message id (a message and its edit, from one source): the
    # read shows the newest version by (edit_date, seq), as the design's projection rules say.
    newest: dict[tuple[int, int], tuple[int, int, str | None]] = {}
    async with (
        running_app(ingest_settings) as ingest,
        running_projector(nats_client, query_settings),
    ):
        for path in sorted((FIXTURES / "updates").glob("*.json")):
            update = json.loads(path.read_bytes())
            answer = (await ingest.post(f"/telegram/{BOT}/webhook", content=path.read_bytes(),
                                        headers=HEADERS_OK)).json()  # fmt: skip
            if "ignored" in answer:
                continue
            kind = next(k for k in update if k != "update_id")
            message = update[kind]
            chat_id, message_id = message["chat"]["id"], message["message_id"]
            version = (message.get("edit_date", -1), answer["seq"],
                       message.get("text", message.get("caption")))  # fmt: skip
            newest[chat_id, message_id] = max(newest.get((chat_id, message_id), version), version)
            read = await client.get(
                f"/v1/bots/{BOT}/chats/{chat_id}/messages/{message_id}",
                params={"min_seq": answer["seq"], "wait": 10},
            )
            assert read.status_code == 200, (path.name, read.text)  # first call, no retry
            assert int(read.headers["x-chatlog-seq"]) >= answer["seq"]
            assert read.json()["text"] == newest[chat_id, message_id][2], path.name

        # The bot's own reply, recorded through the write API, is readable at its seq too.
        reply = {
            "bot_id": BOT,
            "chat": {"id": 424242, "type": "private", "title": "Ann"},
            "message_id": 2,
            "sent_at": "2026-12-03T10:00:00Z",
            "text": "noted ✅",
            "sender": {"name": "Bot", "is_bot": True},
        }
        written = await ingest.post("/v1/messages", json=reply,
                                    headers={"Authorization": f"Bearer {API_KEY}",
                                             "Idempotency-Key": "e2e-reply"})  # fmt: skip
        assert written.status_code == 202
        history = await client.get(
            f"/v1/bots/{BOT}/chats/424242/messages",
            headers={"X-Chatlog-Min-Seq": str(written.json()["seq"])},
        )
        assert history.status_code == 200
        assert [m["text"] for m in history.json()["items"]] == ["noted ✅"]

    # Every chat the fixtures touched is listed, with counts that add up to the messages stored.
    chats = (await client.get("/v1/chats", params={"bot_id": BOT, "limit": 200})).json()["items"]
    assert sum(c["message_count"] for c in chats) == len(newest) + 1
