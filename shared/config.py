"""Settings every chatlog process reads: where NATS is and what the event stream looks like."""

import re
from datetime import timedelta
from typing import Annotated, Final, Literal

from pydantic import Field, SecretStr, StringConstraints, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BOT_ID_PATTERN: Final = r"^[A-Za-z0-9_-]+$"
"""Bot ids become NATS subject tokens, so only these characters are accepted."""

BotId = Annotated[str, StringConstraints(pattern=BOT_ID_PATTERN, min_length=1, max_length=64)]
"""A bot's id as used in URLs, subjects and read models."""

_SUBJECT_PREFIX_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")

DEFAULT_NATS_URL: Final = "nats://127.0.0.1:4222"


class ChatlogSettings(BaseSettings):
    """Settings common to every chatlog process, read from `CHATLOG_*` variables and `.env`."""

    model_config = SettingsConfigDict(
        env_prefix="CHATLOG_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
    )

    nats_url: str = DEFAULT_NATS_URL
    """NATS server(s), comma-separated."""
    stream: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$")] = "CHAT_EVENTS"
    """JetStream stream name: the event store."""
    subject_prefix: str = "chatlog.events"
    """Subject prefix of events; the stream captures `<prefix>.>`."""
    stream_replicas: Annotated[int, Field(ge=1, le=5)] = 1
    """Stream replicas: 1 on one server, 3 in a cluster."""
    stream_duplicate_window: timedelta = timedelta(minutes=2)
    """How long JetStream remembers `Nats-Msg-Id`s to drop duplicates (held in server memory)."""
    stream_max_age: timedelta = timedelta(0)
    """Age past which events expire; 0 keeps them for ever (the stream is the source of truth)."""
    api_keys: list[SecretStr] = Field(default_factory=list)
    """API keys accepted as `Authorization: Bearer <key>` (JSON list); none refuses the API."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Log level of every process (any case)."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("subject_prefix")
    @classmethod
    def _check_subject_prefix(cls, value: str) -> str:
        if not _SUBJECT_PREFIX_PATTERN.fullmatch(value):
            msg = "must be dot-separated tokens of letters, digits, '_' or '-'"
            raise ValueError(msg)
        return value

    @property
    def nats_servers(self) -> list[str]:
        """The NATS URLs as a list, for the client."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]
