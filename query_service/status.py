"""The projection's status: its checkpoint against the stream's last sequence."""

import logging
from datetime import UTC, datetime

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError

from query_service import repository
from query_service.db import FairPool
from query_service.schemas import ProjectionStatus

_log = logging.getLogger(__name__)


async def projection_status(
    pool: FairPool, name: str, nats: NatsClient | None, stream: str
) -> ProjectionStatus:
    """Checkpoint, lag and counters; the stream's side is null when NATS cannot be reached."""
    checkpoint, unknown, updated_at, parked = await repository.projection_row(pool, name)
    last_seq, lag_seconds = await _stream_side(nats, stream, checkpoint)
    return ProjectionStatus(
        name=name,
        checkpoint=checkpoint,
        stream_last_seq=last_seq,
        lag_events=None if last_seq is None else max(0, last_seq - checkpoint),
        lag_seconds=lag_seconds,
        parked=parked,
        unknown=unknown,
        updated_at=updated_at,
    )


async def _stream_side(
    nats: NatsClient | None, stream: str, checkpoint: int
) -> tuple[int | None, float | None]:
    if nats is None or not nats.is_connected:
        return None, None
    js = nats.jetstream(timeout=2)
    try:
        last_seq = (await js.stream_info(stream)).state.last_seq
        if last_seq <= checkpoint:
            return last_seq, 0.0
        oldest = await js.get_msg(stream, seq=checkpoint + 1)
    except (NatsError, JetStreamError, TimeoutError) as exc:
        _log.warning("cannot read the stream's state: %r", exc)
        return None, None
    if oldest.time is None:
        return last_seq, None
    return last_seq, max(0.0, (datetime.now(UTC) - oldest.time).total_seconds())
