"""Reads of the chat history: rows from the repository become JSON pages with opaque cursors.

Each read returns the JSON body and the checkpoint it reflects. The bodies are built as plain
dicts and serialised by orjson, in the shapes of `query_service.schemas` (which document them in
the OpenAPI schema; a test checks every body against them).
"""

from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import orjson

from query_service import repository
from query_service.cursors import (
    chat_cursor,
    message_cursor,
    read_chat_cursor,
    read_message_cursor,
)
from query_service.db import FairPool
from query_service.exceptions import BadCursorError, NotFoundError

SEQ_HEADER: Final = "X-Chatlog-Seq"
"""Response header: the checkpoint the answer reflects."""
_JSON_OPTIONS: Final = orjson.OPT_UTC_Z  # "...Z" for UTC, as Pydantic writes datetimes


@dataclass(frozen=True, slots=True)
class Answer:
    """A read's JSON body and the checkpoint its data reflects."""

    seq: int
    body: bytes


def message_view(bot_id: str, chat_id: int, row: asyncpg.Record) -> dict[str, Any]:
    """A message row as the API shows it (`MessageView`)."""
    sender_id, sender_name = row["sender_id"], row["sender_name"]
    return {
        "bot_id": bot_id,
        "chat_id": chat_id,
        "message_id": row["message_id"],
        "thread_id": row["thread_id"],
        "sender": {
            "id": sender_id,
            "name": sender_name,
            "username": row["sender_username"],
            "is_bot": row["sender_is_bot"],
        }
        if sender_id is not None or sender_name is not None
        else None,
        "sent_at": row["sent_at"],
        "edited_at": row["edited_at"],
        "kind": row["kind"],
        "text": row["text"],
        "reply_to_message_id": row["reply_to_message_id"],
    }


def chat_view(row: asyncpg.Record) -> dict[str, Any]:
    """A chat row as the API shows it (`ChatView`)."""
    return {name: row[name] for name in repository.CHAT_COLUMNS}


def at(seq: int) -> dict[str, str]:
    """The header naming the checkpoint `seq`, for an answer or an error."""
    return {SEQ_HEADER: str(seq)}


def dumps(value: object) -> bytes:
    """A JSON body, datetimes as Pydantic writes them."""
    return orjson.dumps(value, option=_JSON_OPTIONS)


async def chat_page(
    pool: FairPool, name: str, limit: int, bot_id: str | None, cursor: str | None
) -> Answer:
    """A page of chats by last activity (`ChatPage`).

    Raises:
        BadCursorError: not a cursor of this list.
    """
    after = read_chat_cursor(cursor) if cursor else None
    found = await repository.list_chats(pool, name, limit, bot_id, after)
    last = found.rows[-1] if found.rows and found.has_more else None
    return Answer(
        found.checkpoint,
        dumps(
            {
                "items": [chat_view(row) for row in found.rows],
                "next_cursor": chat_cursor(last["last_message_at"], last["bot_id"], last["chat_id"])
                if last
                else None,
            }
        ),
    )


async def chat(pool: FairPool, name: str, bot_id: str, chat_id: int) -> Answer:
    """One chat's summary (`ChatView`).

    Raises:
        NotFoundError: no such chat.
    """
    found = await repository.get_chat(pool, name, bot_id, chat_id)
    if found.row is None:
        raise NotFoundError(f"no chat {chat_id} of bot {bot_id}", headers=at(found.checkpoint))
    return Answer(found.checkpoint, dumps(chat_view(found.row)))


async def message_page(
    pool: FairPool,
    name: str,
    bot_id: str,
    chat_id: int,
    *,
    limit: int,
    before: str | None,
    after: str | None,
    thread_id: int | None,
) -> Answer:
    """A page of a chat's messages, newest first, with cursors both ways (`MessagePage`).

    Raises:
        BadCursorError: a bad cursor, or both `before` and `after`.
        NotFoundError: no such chat.
    """
    if before is not None and after is not None:
        raise BadCursorError("give `before` or `after`, not both")
    before_id = read_message_cursor(before) if before is not None else None
    after_id = read_message_cursor(after) if after is not None else None
    page = await repository.list_messages(
        pool,
        name,
        bot_id,
        chat_id,
        limit=limit,
        before=before_id,
        after=after_id,
        thread_id=thread_id,
    )
    rows = page.rows
    if not rows and not page.chat_found:
        raise NotFoundError(f"no chat {chat_id} of bot {bot_id}", headers=at(page.checkpoint))
    body = {
        "items": [message_view(bot_id, chat_id, row) for row in rows],
        "next_cursor": message_cursor(rows[-1]["message_id"]) if rows and page.has_older else None,
        "prev_cursor": message_cursor(rows[0]["message_id"]) if rows and page.has_newer else None,
    }
    return Answer(page.checkpoint, dumps(body))


async def message(pool: FairPool, name: str, bot_id: str, chat_id: int, message_id: int) -> Answer:
    """One message (`MessageView`).

    Raises:
        NotFoundError: no such message.
    """
    found = await repository.get_message(pool, name, bot_id, chat_id, message_id)
    if found.row is None:
        raise NotFoundError(
            f"no message {message_id} in chat {chat_id} of bot {bot_id}",
            headers=at(found.checkpoint),
        )
    return Answer(found.checkpoint, dumps(message_view(bot_id, chat_id, found.row)))
