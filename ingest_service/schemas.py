"""HTTP shapes of the ingest service. The webhook's Update is never the event contract."""

from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.config import BotId

MAX_TEXT_CHARS = 65_536
"""Longest text the write API takes (Telegram's own limit is 4,096)."""


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ChatIn(_Schema):
    """The chat of a recorded message."""

    id: int
    """Telegram chat id."""
    type: Annotated[str, Field(min_length=1, max_length=32)] = "private"
    """`private`, `group`, `supergroup` or `channel`."""
    title: Annotated[str, Field(max_length=256)] | None = None
    """Chat title."""
    username: Annotated[str, Field(max_length=64)] | None = None
    """Chat username."""


class SenderIn(_Schema):
    """Who sent a recorded message."""

    id: int | None = None
    """User or chat id."""
    name: Annotated[str, Field(max_length=256)] | None = None
    """Display name."""
    username: Annotated[str, Field(max_length=64)] | None = None
    """Username."""
    is_bot: bool = False
    """Whether the sender is a bot (true for the bot's own replies)."""


class RecordMessageRequest(_Schema):
    """A message recorded through the API, e.g. the bot's own reply."""

    bot_id: BotId
    """The bot whose history this is."""
    chat: ChatIn
    """The chat."""
    message_id: int
    """Message id as Telegram returned it (e.g. from sendMessage)."""
    sent_at: AwareDatetime
    """When it was sent, with a time zone."""
    text: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | None = None
    """Text or caption."""
    kind: Annotated[str, Field(min_length=1, max_length=32)] = "text"
    """Content kind."""
    thread_id: int | None = None
    """Forum topic or thread."""
    sender: SenderIn | None = None
    """Who sent it."""
    reply_to_message_id: int | None = None
    """The message it replies to."""
    entities: Annotated[list[dict[str, Any]], Field(max_length=1000)] = Field(default_factory=list)
    """Text entities, as Telegram gives them."""
    telegram_message: dict[str, Any] | None = None
    """The Message object Telegram returned, kept unchanged, if you have it."""


class Accepted(BaseModel):
    """The event is in the stream: `seq` is the consistency token for reads."""

    event_id: str
    seq: int
    duplicate: bool


class IgnoredUpdate(BaseModel):
    """The update is of a kind chatlog does not store; Telegram need not retry it."""

    ignored: str
