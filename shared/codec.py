"""How events travel: JSON bodies plus NATS headers, and upcasting of older versions on read."""

from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson
from pydantic import ValidationError

from shared.errors import MalformedEventError, UnknownEventError
from shared.events import EVENT_TYPES, MessageEdited, MessageReceived

HEADER_MSG_ID: Final = "Nats-Msg-Id"
"""JetStream drops a second publish with the same id inside the stream's duplicate window."""
HEADER_EVENT_TYPE: Final = "Chatlog-Event-Type"
HEADER_EVENT_VERSION: Final = "Chatlog-Event-Version"

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the body of version N of an event type into the body of version N + 1."""

UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""Upcasters by (event type, version they read). A breaking change adds a version and one here."""

CURRENT_VERSIONS: Final[dict[str, int]] = {
    name: int(model.model_fields["version"].default) for name, model in EVENT_TYPES.items()
}


def event_headers(event: MessageReceived | MessageEdited) -> dict[str, str]:
    """The NATS headers of an event, so consumers can route without parsing the body."""
    return {
        HEADER_MSG_ID: event.event_id,
        HEADER_EVENT_TYPE: event.type,
        HEADER_EVENT_VERSION: str(event.version),
    }


def encode_event(event: MessageReceived | MessageEdited) -> tuple[bytes, dict[str, str]]:
    """The body and headers to publish an event with."""
    return event.model_dump_json().encode(), event_headers(event)


def decode_event(
    body: bytes, headers: Mapping[str, str] | None = None
) -> MessageReceived | MessageEdited:
    """Read an event from a stream message, upcasting older versions.

    Raises:
        UnknownEventError: the type or version is not one this code knows (count and skip it).
        MalformedEventError: the body is not a valid event of its type (park it).
    """
    event_type = headers.get(HEADER_EVENT_TYPE) if headers else None
    version = headers.get(HEADER_EVENT_VERSION) if headers else None
    model = EVENT_TYPES.get(event_type) if event_type else None
    if model is not None and version == str(CURRENT_VERSIONS[model.__name__]):
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            raise MalformedEventError(f"{event_type}: {_describe(exc)}") from exc
    return _decode_slow(body)


def _decode_slow(body: bytes) -> MessageReceived | MessageEdited:
    """Decode without trusting headers: read type and version from the body, then upcast."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedEventError(f"body is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise MalformedEventError("body is not a JSON object")
    event_type, version = raw.get("type"), raw.get("version")
    model = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        raise UnknownEventError(f"unknown event type {event_type!r}")
    if not isinstance(version, int) or isinstance(version, bool):
        raise MalformedEventError(f"{event_type}: version must be an integer, got {version!r}")
    current = CURRENT_VERSIONS[model.__name__]
    while version < current:
        upcaster = UPCASTERS.get((model.__name__, version))
        if upcaster is None:
            raise UnknownEventError(f"no upcaster for {event_type} version {version}")
        raw = upcaster(raw)
        version = raw["version"]
    if version != current:
        raise UnknownEventError(f"{event_type} version {version} is newer than this code knows")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise MalformedEventError(f"{event_type}: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )
