"""The event stream's definition, and making sure the server has it before a service starts."""

import dataclasses
import logging
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import BadRequestError, NotFoundError

from shared.config import ChatlogSettings
from shared.errors import StreamConfigError
from shared.subjects import stream_subjects

MAX_EVENT_BYTES: Final = 1024 * 1024
"""Largest event the stream accepts (1 MiB)."""

_log = logging.getLogger(__name__)


def stream_config(settings: ChatlogSettings) -> StreamConfig:
    """The stream chatlog needs: file storage, limits retention, dedupe window, 1 MiB messages."""
    return StreamConfig(
        name=settings.stream,
        description="chatlog events: the source of truth for every read model",
        subjects=stream_subjects(settings.subject_prefix),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=settings.stream_max_age.total_seconds(),
        duplicate_window=settings.stream_duplicate_window.total_seconds(),
        max_msg_size=MAX_EVENT_BYTES,
        num_replicas=settings.stream_replicas,
    )


async def ensure_stream(js: JetStreamContext, settings: ChatlogSettings) -> StreamInfo:
    """Create the stream, or bring an existing one to our config; idempotent and race-safe.

    Raises:
        StreamConfigError: the existing stream cannot hold chatlog's events as they must be kept
            (other storage or retention, a mirror, sealed), or the server refused the change.
    """
    wanted = stream_config(settings)
    try:
        info = await js.stream_info(settings.stream)
    except NotFoundError:
        try:
            return await js.add_stream(config=wanted)
        except BadRequestError as exc:
            # Another process may have created it between our look and our add: look again.
            try:
                info = await js.stream_info(settings.stream)
            except NotFoundError:
                raise StreamConfigError(
                    f"cannot create stream {settings.stream!r}: {exc.description}"
                ) from exc
    _refuse_incompatible(info.config, wanted)
    merged = _merged(info.config, wanted)
    if merged is None:
        return info
    _log.info("updating stream %s to chatlog's config", settings.stream)
    try:
        return await js.update_stream(config=merged)
    except BadRequestError as exc:
        raise StreamConfigError(
            f"stream {settings.stream!r} exists and cannot be updated to chatlog's config: "
            f"{exc.description}"
        ) from exc


def _refuse_incompatible(have: StreamConfig, wanted: StreamConfig) -> None:
    problems = []
    if have.storage != wanted.storage:
        problems.append(f"storage is {_name(have.storage)}, chatlog needs {_name(wanted.storage)}")
    if have.retention != wanted.retention:
        problems.append(
            f"retention is {_name(have.retention)}, chatlog needs {_name(wanted.retention)}"
            " (any other policy deletes events)"
        )
    if have.mirror is not None:
        problems.append("it is a mirror, which cannot take publishes")
    if have.sealed:
        problems.append("it is sealed")
    if problems:
        raise StreamConfigError(
            f"stream {wanted.name!r} exists with an incompatible config: {'; '.join(problems)}. "
            "Use another CHATLOG_STREAM, or migrate the events into a stream of the right kind."
        )


def _merged(have: StreamConfig, wanted: StreamConfig) -> StreamConfig | None:
    """The existing config with our settings applied, or None when nothing needs to change."""
    subjects = list(have.subjects or [])
    changes: dict[str, object] = {}
    missing = [s for s in wanted.subjects or [] if s not in subjects]
    if missing:
        changes["subjects"] = subjects + missing
    for field in ("max_age", "duplicate_window", "max_msg_size", "num_replicas"):
        if getattr(have, field) != getattr(wanted, field):
            changes[field] = getattr(wanted, field)
    return dataclasses.replace(have, **changes) if changes else None  # type: ignore[arg-type]


def _name(value: object) -> str:
    return str(getattr(value, "value", value))
