"""The read models as SQLAlchemy tables: chats, messages, checkpoints and parked events.

They match what the migrations create, server defaults included: `chatlog replay` creates its
shadow tables from this metadata (a test compares both).
"""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of the read-model tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Chat(Base):
    """One chat of one bot: its latest known identity and a summary of its history."""

    __tablename__ = "chats"

    bot_id: Mapped[str] = mapped_column(Text, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    username: Mapped[str | None] = mapped_column(Text)
    info_message_id: Mapped[int] = mapped_column(BigInteger)
    """Message id of the event the identity was taken from (the greatest wins)."""
    info_seq: Mapped[int] = mapped_column(BigInteger)
    """Stream sequence of that event, breaking ties between events of one message."""
    message_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    first_message_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_message_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_message_id: Mapped[int] = mapped_column(BigInteger)
    last_message_preview: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_chats_activity", last_message_at.desc(), bot_id.desc(), chat_id.desc()),
        Index("ix_chats_bot_activity", bot_id, last_message_at.desc(), chat_id.desc()),
    )


class ChatMessage(Base):
    """One message, as its newest known version (by edit date), with the original object."""

    __tablename__ = "messages"

    bot_id: Mapped[str] = mapped_column(Text, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    thread_id: Mapped[int | None] = mapped_column(BigInteger)
    sender_id: Mapped[int | None] = mapped_column(BigInteger)
    sender_name: Mapped[str | None] = mapped_column(Text)
    sender_username: Mapped[str | None] = mapped_column(Text)
    sender_is_bot: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    edited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    reply_to_message_id: Mapped[int | None] = mapped_column(BigInteger)
    original: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """The original object of the MessageReceived (of the newest edit until that arrives)."""
    seq: Mapped[int] = mapped_column(BigInteger)
    """Stream sequence of the version shown (ties of edit dates go to the greater one)."""
    received_seq: Mapped[int | None] = mapped_column(BigInteger)
    """Sequence of the MessageReceived; NULL while only edits of the message have arrived."""

    __table_args__ = (Index("ix_messages_thread", bot_id, chat_id, thread_id, message_id),)


class ProjectionCheckpoint(Base):
    """How far a projection got: every event at or below `seq` is applied (a low-water mark)."""

    __tablename__ = "projection_checkpoints"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    unknown_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Events of a type or version this code does not know, counted and skipped."""
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ParkedEvent(Base):
    """An event the projector could not apply, kept with the reason for an operator."""

    __tablename__ = "parked_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    subject: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    parked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
