"""`chatlog demo`: post a realistic sample history to a running ingest service."""

import json
import time
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import httpx

SAMPLE = "demo_updates.json"


def sample_requests(now: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The sample's updates and bot replies, with times relative to `now` made absolute."""
    raw = json.loads(resources.files("chatlog.samples").joinpath(SAMPLE).read_text("utf-8"))
    updates = []
    for number, update in enumerate(raw["updates"]):
        for value in update.values():
            for field in ("date", "edit_date"):
                if field in value:
                    value[field] = now + value[field]
        updates.append({"update_id": now * 100 + number, **update})
    replies = []
    for reply in raw["bot_replies"]:
        sent_at = datetime.fromtimestamp(now - reply.pop("offset"), UTC).isoformat()
        replies.append({**reply, "sent_at": sent_at})
    return updates, replies


def post_demo(ingest_url: str, bot_id: str, secret: str, api_key: str | None) -> int:
    """Post the sample; returns the highest stream sequence acknowledged."""
    updates, replies = sample_requests(int(time.time()))
    last_seq = 0
    with httpx.Client(base_url=ingest_url, timeout=10) as client:
        for update in updates:
            response = client.post(
                f"/telegram/{bot_id}/webhook",
                json=update,
                headers={"X-Telegram-Bot-Api-Secret-Token": secret},
            )
            response.raise_for_status()
            answer = response.json()
            kind = next(k for k in update if k != "update_id")
            print(f"{kind:<22} -> {answer}")  # noqa: T201 - the command's output
            last_seq = max(last_seq, answer.get("seq", 0))
        if api_key is None:
            print("no API key: skipped the bot's own replies (POST /v1/messages)")  # noqa: T201
            return last_seq
        for reply in replies:
            response = client.post(
                "/v1/messages",
                json={"bot_id": bot_id, "sender": {"name": "Dev Bot", "is_bot": True}, **reply},
                headers={
                    "Authorization": f"Bearer {api_key}",
                    "Idempotency-Key": f"demo-{reply['chat']['id']}-{reply['message_id']}",
                },
            )
            response.raise_for_status()
            print(f"{'bot reply (API)':<22} -> {response.json()}")  # noqa: T201
            last_seq = max(last_seq, response.json()["seq"])
    return last_seq
