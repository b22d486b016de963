"""Reads of the chat history: rows from the repository become pages with opaque cursors."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from query_service import repository
from query_service.cursors import (
    chat_cursor,
    message_cursor,
    read_chat_cursor,
    read_message_cursor,
)
from query_service.exceptions import BadCursorError, NotFoundError
from query_service.schemas import ChatPage, ChatView, MessagePage, MessageView, SenderView


def message_view(row: Any) -> MessageView:  # noqa: ANN401 - a SQLAlchemy row
    """A message row as the API shows it."""
    has_sender = row.sender_id is not None or row.sender_name is not None
    return MessageView(
        bot_id=row.bot_id,
        chat_id=row.chat_id,
        message_id=row.message_id,
        thread_id=row.thread_id,
        sender=SenderView(
            id=row.sender_id,
            name=row.sender_name,
            username=row.sender_username,
            is_bot=row.sender_is_bot,
        )
        if has_sender
        else None,
        sent_at=row.sent_at,
        edited_at=row.edited_at,
        kind=row.kind,
        text=row.text,
        reply_to_message_id=row.reply_to_message_id,
    )


def chat_view(row: Any) -> ChatView:  # noqa: ANN401 - a SQLAlchemy row
    """A chat row as the API shows it."""
    return ChatView(
        bot_id=row.bot_id,
        chat_id=row.chat_id,
        type=row.type,
        title=row.title,
        username=row.username,
        message_count=row.message_count,
        first_message_at=row.first_message_at,
        last_message_at=row.last_message_at,
        last_message_preview=row.last_message_preview,
    )


async def chat_page(
    conn: AsyncConnection, limit: int, bot_id: str | None, cursor: str | None
) -> ChatPage:
    """A page of chats by last activity."""
    after = read_chat_cursor(cursor) if cursor else None
    rows, more = await repository.list_chats(conn, limit, bot_id, after)
    last = rows[-1] if rows and more else None
    return ChatPage(
        items=[chat_view(row) for row in rows],
        next_cursor=chat_cursor(last.last_message_at, last.bot_id, last.chat_id) if last else None,
    )


async def chat(conn: AsyncConnection, bot_id: str, chat_id: int) -> ChatView:
    """One chat's summary.

    Raises:
        NotFoundError: no such chat.
    """
    row = await repository.get_chat(conn, bot_id, chat_id)
    if row is None:
        raise NotFoundError(f"no chat {chat_id} of bot {bot_id}")
    return chat_view(row)


async def message_page(
    conn: AsyncConnection,
    bot_id: str,
    chat_id: int,
    *,
    limit: int,
    before: str | None,
    after: str | None,
    thread_id: int | None,
) -> MessagePage:
    """A page of a chat's messages, newest first, with cursors both ways.

    Raises:
        BadCursorError: a bad cursor, or both `before` and `after`.
        NotFoundError: no such chat.
    """
    if before is not None and after is not None:
        raise BadCursorError("give `before` or `after`, not both")
    before_id = read_message_cursor(before) if before is not None else None
    after_id = read_message_cursor(after) if after is not None else None
    page = await repository.list_messages(
        conn, bot_id, chat_id, limit=limit, before=before_id, after=after_id, thread_id=thread_id
    )
    if not page.rows and await repository.get_chat(conn, bot_id, chat_id) is None:
        raise NotFoundError(f"no chat {chat_id} of bot {bot_id}")
    rows = page.rows
    return MessagePage(
        items=[message_view(row) for row in rows],
        next_cursor=message_cursor(rows[-1].message_id) if rows and page.has_older else None,
        prev_cursor=message_cursor(rows[0].message_id) if rows and page.has_newer else None,
    )


async def message(conn: AsyncConnection, bot_id: str, chat_id: int, message_id: int) -> MessageView:
    """One message.

    Raises:
        NotFoundError: no such message.
    """
    row = await repository.get_message(conn, bot_id, chat_id, message_id)
    if row is None:
        raise NotFoundError(f"no message {message_id} in chat {chat_id} of bot {bot_id}")
    return message_view(row)
