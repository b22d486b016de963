"""Projector catch-up throughput against raw nats-py fetch + ack, on the same stream.

Usage: python bench/projector_throughput.py [events] [runs]   (default 20,000 events, 3 runs)

Starts a throwaway nats-server; uses the PostgreSQL at CHATLOG_BENCH_ADMIN_URL (default the
machine's, postgresql://postgres@127.0.0.1:5432/postgres), where it creates and drops a database.
Runs both sides `runs` times, interleaved (raw, projector, projector, raw, raw, ...: each side goes
first as often as the other), because the machine's speed drifts over minutes; prints every rate,
the median of each side and the ratio of the medians.
"""

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import nats
from nats.js.api import AckPolicy, ConsumerConfig

from chatlog.servers import NatsServer
from query_service.config import QuerySettings
from query_service.db import migrate_async
from query_service.projector import Projector
from query_service.subscribers import consume, gap_check, subscribe
from shared.codec import encode_event
from shared.events import ChatInfo, MessageData, MessageReceived, Sender
from shared.stream import ensure_stream
from shared.subjects import event_subject

ADMIN = os.environ.get("CHATLOG_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def event(n: int) -> MessageReceived:
    chat = -1001000000000 - n % 50
    text = f"message {n} " + "lorem ipsum " * 40
    data = MessageData(
        chat=ChatInfo(id=chat, type="supergroup", title="Bench"),
        message_id=n,
        sender=Sender(id=n % 300, name="Someone", username="someone"),
        sent_at=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=n),
        kind="text",
        text=text,
        original={"update_id": n, "message": {"message_id": n, "text": text, "chat": {"id": chat}}},
    )
    now = datetime.now(UTC)
    return MessageReceived(
        event_id=f"bench:{n}",
        occurred_at=now,
        recorded_at=now,
        bot_id="bench",
        source="api",
        data=data,
    )


async def raw_fetch_ack(js, stream: str, subject: str, total: int, batch: int) -> float:
    durable = f"raw{uuid.uuid4().hex[:8]}"
    sub = await js.pull_subscribe(
        subject,
        durable=durable,
        stream=stream,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=batch),
    )
    seen, started = 0, time.perf_counter()
    while seen < total:
        msgs = await sub.fetch(batch, timeout=5)
        for msg in msgs:
            await msg.ack()
        seen += len(msgs)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    await js.delete_consumer(stream, durable)
    return total / elapsed


async def projector_run(nc, settings: QuerySettings, total: int, last_seq: int) -> float:
    admin = await asyncpg.connect(ADMIN)
    name = f"bench_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        await migrate_async(url)
        run = settings.model_copy(update={"database_url": url, "projection_name": name})
        projector = Projector(
            run.asyncpg_dsn, name, gap_is_empty=gap_check(nc.jetstream(), run.stream)
        )
        subscription = await subscribe(nc.jetstream(), run)
        watch = await asyncpg.connect(run.asyncpg_dsn)
        started = time.perf_counter()
        task = asyncio.create_task(consume(subscription, projector, run))
        while (await watch.fetchval("SELECT seq FROM projection_checkpoints") or 0) < last_seq:  # noqa: ASYNC110 - polling the database
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        count = await watch.fetchval("SELECT count(*) FROM messages")
        assert count == total, count
        await watch.close()
        await projector.close()
        await subscription.unsubscribe()
        return total / elapsed
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def settle(admin_url: str = ADMIN, pause: float = 1) -> None:
    """Let PostgreSQL write out the previous run's pages, so that no run pays for another's."""
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute("CHECKPOINT")
    finally:
        await admin.close()
    await asyncio.sleep(pause)


async def main(total: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            settings = QuerySettings(
                _env_file=None, nats_url=server.url, stream="BENCH", subject_prefix="bench.events"
            )
            await ensure_stream(js, settings)
            events = [event(n) for n in range(1, total + 1)]
            last = 0
            for start in range(0, total, 1000):
                acks = await asyncio.gather(
                    *(
                        js.publish(
                            event_subject("bench.events", "bench", e.data.chat.id, e.type),
                            *encode_event(e)[:1],
                            headers=encode_event(e)[1],
                        )
                        for e in events[start : start + 1000]
                    )
                )
                last = max(last, *(a.seq for a in acks))
            batch = settings.projector_batch_size
            results: dict[str, list[float]] = {"raw": [], "projector": []}
            for run in range(runs):
                order = ("raw", "projector") if run % 2 == 0 else ("projector", "raw")
                for kind in order:
                    await settle()
                    if kind == "raw":
                        rate = await raw_fetch_ack(js, "BENCH", "bench.events.>", total, batch)
                    else:
                        rate = await projector_run(nc, settings, total, last)
                    results[kind].append(rate)
            medians = {kind: statistics.median(rates) for kind, rates in results.items()}
            for kind, rates in results.items():
                print(
                    f"{kind:>9}: median {medians[kind]:,.0f} ev/s   ("
                    + ", ".join(f"{r:,.0f}" for r in rates)
                    + ")"
                )
            ratio = medians["projector"] / medians["raw"]
            print(
                f"projector / raw fetch+ack: {ratio:.2f} (medians of {runs} interleaved runs,"
                f" batch {batch}, {total:,} events)"
            )
            await nc.close()
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 20_000,
            max(3, int(sys.argv[2])) if len(sys.argv) > 2 else 3,
        )
    )
