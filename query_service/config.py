"""Settings of the query service: its database, its HTTP port and how the projector batches."""

from typing import Annotated

from pydantic import Field

from shared.config import ChatlogSettings

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/chatlog"


class QuerySettings(ChatlogSettings):
    """Settings of `chatlog project`, `chatlog query` and `chatlog migrate` (`CHATLOG_*`)."""

    database_url: str = DEFAULT_DATABASE_URL
    """PostgreSQL URL (`postgresql://...`); the code picks the asyncpg driver itself."""
    query_port: Annotated[int, Field(ge=1, le=65535)] = 8001
    """Port of the query HTTP API."""
    query_host: str = "127.0.0.1"
    """Interface the query HTTP API listens on."""
    query_pool_size: Annotated[int, Field(ge=1, le=100)] = 10
    """Most connections the query HTTP API holds open to PostgreSQL."""
    projection_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")] = "read_models"
    """Name of the projection: its checkpoint row and its durable JetStream consumer."""
    projector_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    """Events per batch; also the consumer's max_ack_pending (one batch outstanding)."""
    projector_fetch_timeout: Annotated[float, Field(gt=0)] = 5.0
    """Seconds one fetch waits for the first event of a batch when the stream is idle."""
    projector_ack_wait: Annotated[float, Field(gt=0)] = 30.0
    """Seconds the server waits for an ack before redelivering (kept alive while retrying)."""
    projector_retry_max_backoff: Annotated[float, Field(gt=0)] = 5.0
    """Longest pause between retries of a batch that failed transiently."""
    projector_standby_poll: Annotated[float, Field(gt=0)] = 2.0
    """Seconds between tries of a standby projector instance to take over the projection."""
    projector_park_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    """Attempts at applying one event alone before it is parked."""
    consistency_max_wait: Annotated[float, Field(ge=0, le=60)] = 10.0
    """Cap on the `wait` of a read with `min_seq`, in seconds."""

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the asyncpg driver, for SQLAlchemy."""
        return to_asyncpg_url(self.database_url)

    @property
    def asyncpg_dsn(self) -> str:
        """The database URL as asyncpg itself takes it."""
        scheme, sep, rest = self.database_url.partition("://")
        return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else rest


def to_asyncpg_url(url: str) -> str:
    """`postgresql://...` (or `postgres://`, `postgresql+x://`) as `postgresql+asyncpg://...`."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgres"):
        msg = f"not a PostgreSQL URL: {url!r}"
        raise ValueError(msg)
    return f"postgresql+asyncpg://{rest}"
