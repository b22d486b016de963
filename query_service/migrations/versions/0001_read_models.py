"""Read models: chats, messages, projection checkpoints, parked events.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "chats",
        sa.Column("bot_id", sa.Text(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("username", sa.Text(), nullable=True),
        sa.Column("info_message_id", sa.BigInteger(), nullable=False),
        sa.Column("info_seq", sa.BigInteger(), nullable=False),
        sa.Column("message_count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("first_message_at", _TZ, nullable=False),
        sa.Column("last_message_at", _TZ, nullable=False),
        sa.Column("last_message_id", sa.BigInteger(), nullable=False),
        sa.Column("last_message_preview", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("bot_id", "chat_id", name=op.f("pk_chats")),
    )
    op.create_index(
        "ix_chats_activity",
        "chats",
        [sa.text("last_message_at DESC"), sa.text("bot_id DESC"), sa.text("chat_id DESC")],
    )
    op.create_index(
        "ix_chats_bot_activity",
        "chats",
        ["bot_id", sa.text("last_message_at DESC"), sa.text("chat_id DESC")],
    )
    op.create_table(
        "messages",
        sa.Column("bot_id", sa.Text(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("thread_id", sa.BigInteger(), nullable=True),
        sa.Column("sender_id", sa.BigInteger(), nullable=True),
        sa.Column("sender_name", sa.Text(), nullable=True),
        sa.Column("sender_username", sa.Text(), nullable=True),
        sa.Column("sender_is_bot", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("sent_at", _TZ, nullable=False),
        sa.Column("edited_at", _TZ, nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("reply_to_message_id", sa.BigInteger(), nullable=True),
        sa.Column("original", postgresql.JSONB(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("received_seq", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("bot_id", "chat_id", "message_id", name=op.f("pk_messages")),
    )
    op.create_index(
        "ix_messages_thread", "messages", ["bot_id", "chat_id", "thread_id", "message_id"]
    )
    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("unknown_count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_at", _TZ, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_projection_checkpoints")),
    )
    op.create_table(
        "parked_events",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("headers", postgresql.JSONB(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("parked_at", _TZ, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_parked_events")),
    )


def downgrade() -> None:
    op.drop_table("parked_events")
    op.drop_table("projection_checkpoints")
    op.drop_index("ix_messages_thread", table_name="messages")
    op.drop_table("messages")
    op.drop_index("ix_chats_bot_activity", table_name="chats")
    op.drop_index("ix_chats_activity", table_name="chats")
    op.drop_table("chats")
