"""What the query API answers: chats, messages, pages and the projection's status."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class _Schema(BaseModel):
    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)


class SenderView(_Schema):
    """Who sent a message."""

    id: int | None
    name: str | None
    username: str | None
    is_bot: bool


class MessageView(_Schema):
    """One message as the read model holds it (its newest version)."""

    bot_id: str
    chat_id: int
    message_id: int
    thread_id: int | None
    sender: SenderView | None
    sent_at: datetime
    edited_at: datetime | None
    kind: str
    text: str | None
    reply_to_message_id: int | None


class MessagePage(_Schema):
    """A page of a chat's history, newest first."""

    items: list[MessageView]
    next_cursor: str | None
    """Pass as `before` for older messages; null at the oldest."""
    prev_cursor: str | None
    """Pass as `after` for newer messages; null at the newest."""


class ChatView(_Schema):
    """One chat's summary."""

    bot_id: str
    chat_id: int
    type: str
    title: str | None
    username: str | None
    message_count: int
    first_message_at: datetime
    last_message_at: datetime
    last_message_preview: str | None


class ChatPage(_Schema):
    """A page of chats, most recently active first."""

    items: list[ChatView]
    next_cursor: str | None
    """Pass as `cursor` for the next page; null at the end."""


class ProjectionStatus(_Schema):
    """How far the read models are behind the stream."""

    name: str
    checkpoint: int
    """Every event at or below this stream sequence is applied."""
    stream_last_seq: int | None
    """The stream's last sequence; null when NATS cannot be reached."""
    lag_events: int | None
    lag_seconds: float | None
    """Age of the oldest event not yet applied; 0 when caught up."""
    parked: int
    """Events parked because they could not be applied."""
    unknown: int
    """Events of unknown type or version, counted and skipped."""
    updated_at: datetime | None
    """When the checkpoint last moved."""
