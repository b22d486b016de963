"""Settings of the ingest service."""

from typing import Annotated

from pydantic import Field, SecretStr

from shared.config import BotId, ChatlogSettings


class IngestSettings(ChatlogSettings):
    """What `chatlog ingest` reads from `CHATLOG_*` variables."""

    telegram_secrets: dict[BotId, SecretStr] = Field(default_factory=dict)
    """JSON object: bot id -> the secret token given to setWebhook; none refuses every webhook."""
    ingest_host: str = "127.0.0.1"
    """Interface the HTTP server binds to."""
    ingest_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    """HTTP port of the ingest service."""
    ingest_workers: Annotated[int, Field(ge=1)] = 1
    """uvicorn worker processes."""
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    """Largest request body accepted; larger ones answer 413."""
    publish_timeout: Annotated[float, Field(gt=0)] = 2.0
    """Seconds to wait for JetStream's acknowledgement before answering 503."""
    retry_after_seconds: Annotated[int, Field(ge=1)] = 5
    """`Retry-After` of a 503 answer."""
    nats_reconnect_wait: Annotated[float, Field(gt=0)] = 0.5
    """Seconds between reconnection attempts while NATS is away."""
