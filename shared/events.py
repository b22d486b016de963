"""The event contracts: the envelope, `MessageReceived` and `MessageEdited`.

Producers build events from Python (so nothing unknown gets in); consumers read them as tolerant
readers: unknown fields are ignored, so an additive change never breaks an older projector.
"""

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.config import BotId


class EventSource(StrEnum):
    """Where an event came from."""

    TELEGRAM = "telegram"
    API = "api"


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)


class ChatInfo(_Contract):
    """The chat a message belongs to, as it was when the message was recorded."""

    id: int
    """Telegram chat id (negative for groups and channels)."""
    type: str
    """`private`, `group`, `supergroup` or `channel` (or what a newer Bot API adds)."""
    title: str | None = None
    """Title of a group or channel; the name of the other person in a private chat."""
    username: str | None = None
    """Public username of the chat, if any."""


class Sender(_Contract):
    """Who sent a message: a user, a bot, or a chat (channel posts, anonymous admins)."""

    id: int | None = None
    """User id, or the sending chat's id."""
    name: str | None = None
    """Display name: first and last name, or the chat's title."""
    username: str | None = None
    """Public username, if any."""
    is_bot: bool = False
    """Whether the sender is a bot."""


class MessageData(_Contract):
    """The normalized fields the read models need, plus the original object, unchanged."""

    chat: ChatInfo
    """The chat."""
    message_id: int
    """Message id, unique and growing within its chat."""
    thread_id: int | None = None
    """Forum topic or reply thread id."""
    sender: Sender | None = None
    """Who sent it; None when Telegram does not say."""
    sent_at: AwareDatetime
    """When the message was sent (Telegram's `date`)."""
    edited_at: AwareDatetime | None = None
    """When the message was last edited (Telegram's `edit_date`)."""
    kind: str
    """Content kind: `text`, `photo`, `video`, ..., or a service kind such as `new_chat_members`."""
    text: str | None = None
    """Text, or the caption of a media message."""
    reply_to_message_id: int | None = None
    """The message this one replies to, in the same chat."""
    entities: list[dict[str, Any]] = Field(default_factory=list)
    """Entities of the text or caption (offsets in UTF-16 code units, as Telegram gives them)."""
    update_kind: str | None = None
    """The Update field the message came in (`message`, `edited_channel_post`, ...)."""
    business_connection_id: str | None = None
    """Business connection the message belongs to, for business messages."""
    original: dict[str, Any] | None = None
    """The original Telegram Update (or API request body), unchanged, for read models to come."""


class EventEnvelope(_Contract):
    """What every event carries."""

    event_id: str
    """Deterministic id: the same Telegram update or API idempotency key gives the same id."""
    type: str
    """Event type name."""
    version: int
    """Contract version of this event type."""
    occurred_at: AwareDatetime
    """When the fact happened (message sent or edited)."""
    recorded_at: AwareDatetime
    """When chatlog recorded it."""
    bot_id: BotId
    """The bot whose history this is."""
    source: EventSource
    """Where the event came from."""


class MessageReceived(EventEnvelope):
    """A message was sent in a chat the bot sees (or recorded through the API)."""

    type: Literal["MessageReceived"] = "MessageReceived"
    version: Literal[1] = 1
    data: MessageData
    """The message."""


class MessageEdited(EventEnvelope):
    """A message was edited; `data` is the message as it reads after the edit."""

    type: Literal["MessageEdited"] = "MessageEdited"
    version: Literal[1] = 1
    data: MessageData
    """The message after the edit."""


Event = Annotated[MessageReceived | MessageEdited, Field(discriminator="type")]
"""Any event this code knows."""

EVENT_TYPES: dict[str, type[MessageReceived | MessageEdited]] = {
    "MessageReceived": MessageReceived,
    "MessageEdited": MessageEdited,
}
"""Known event types by name."""
