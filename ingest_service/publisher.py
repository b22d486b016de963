"""Publishes events to JetStream and reports its acknowledgement."""

from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from shared.codec import encode_event
from shared.events import MessageEdited, MessageReceived
from shared.stream import MAX_EVENT_BYTES
from shared.subjects import event_subject


@dataclass(frozen=True, slots=True)
class Published:
    """JetStream's acknowledgement of an event."""

    event_id: str
    seq: int
    duplicate: bool


class PublishFailedError(Exception):
    """Raised when JetStream did not acknowledge an event (down, slow, or refusing)."""


class EventTooLargeError(Exception):
    """Raised when an encoded event is over the stream's message size."""


class EventPublisher:
    """One per process: publishes over the process's single NATS connection, concurrently."""

    def __init__(self, nc: NatsClient, *, stream: str, subject_prefix: str, timeout: float) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._stream = stream
        self._prefix = subject_prefix
        self._timeout = timeout

    async def publish(self, event: MessageReceived | MessageEdited) -> Published:
        """Publish with `Nats-Msg-Id` = event id and wait for the stream's acknowledgement.

        Raises:
            EventTooLargeError: the event is over the stream's message size.
            PublishFailedError: no acknowledgement; the event may or may not be stored, and a
                retry with the same event id is deduplicated, so the client should retry.
        """
        body, headers = encode_event(event)
        if len(body) > MAX_EVENT_BYTES - 4096:  # headroom for headers
            raise EventTooLargeError(f"the event is {len(body)} bytes encoded")
        if not self._nc.is_connected:
            # While reconnecting, nats-py would buffer the publish and time out later; fail now.
            raise PublishFailedError("not connected to NATS")
        subject = event_subject(self._prefix, event.bot_id, event.data.chat.id, event.type)
        try:
            ack = await self._js.publish(
                subject, body, timeout=self._timeout, stream=self._stream, headers=headers
            )
        except (TimeoutError, NatsError) as exc:
            raise PublishFailedError(f"{type(exc).__name__}: {exc}") from exc
        return Published(event_id=event.event_id, seq=ack.seq, duplicate=bool(ack.duplicate))
