"""`chatlog replay` throughput: fill a stream with N events, replay them, print events/s.

Usage: python -m bench.replay_throughput [events] [--batch-size N] [--phases]
(default 1,000,000 events, batch 4,000)

Starts a throwaway nats-server; uses the PostgreSQL at CHATLOG_BENCH_ADMIN_URL (default the
machine's, postgresql://postgres@127.0.0.1:5432/postgres), where it creates and drops a database.
The events are the projector bench's (1.6 KB, 50 chats), published with core NATS publishes
(fire and forget, then checked against the stream's count) so that filling stays quick.
`--phases` also times the same stream read alone and read + decoded, to show what limits replay.
"""

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import nats
import orjson

from bench.projector_throughput import event
from chatlog.servers import NatsServer
from query_service.config import QuerySettings
from query_service.db import migrate_async
from query_service.projector import decode_batch
from query_service.replay import Replay
from query_service.stream_reader import StreamReader
from shared.codec import HEADER_MSG_ID, encode_event
from shared.stream import ensure_stream
from shared.subjects import event_subject

ADMIN = os.environ.get("CHATLOG_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PREFIX = "bench.events"


async def fill(nc, js, total: int, stream: str = "BENCH", prefix: str = PREFIX) -> int:
    """Publish `total` distinct events: one encoded template, its ids and texts varied.

    Returns the stream's last sequence.
    """
    body, headers = encode_event(event(1))
    del headers[HEADER_MSG_ID]  # one template: the same id would be deduplicated
    template = orjson.loads(body)
    started = time.perf_counter()
    for n in range(1, total + 1):
        raw = dict(template)
        data = dict(template["data"])
        chat = -1001000000000 - n % 50
        data["chat"] = {**data["chat"], "id": chat}
        data["message_id"] = n
        data["text"] = f"message {n} " + "lorem ipsum " * 40
        data["sender"] = {**data["sender"], "id": n % 300}
        raw["event_id"] = f"bench:{n}"
        raw["data"] = data
        subject = event_subject(prefix, "bench", chat, "MessageReceived")
        await nc.publish(subject, orjson.dumps(raw), headers=headers)
        if n % 20_000 == 0:
            await nc.flush()
    await nc.flush()
    deadline = time.monotonic() + 60
    while (info := await js.stream_info(stream)).state.messages < total:
        if time.monotonic() > deadline:
            raise SystemExit(f"the stream holds {info.state.messages:,} events, not {total:,}")
        await asyncio.sleep(0.2)
    print(f"filled {info.state.messages:,} events in {time.perf_counter() - started:,.1f} s")
    return info.state.last_seq


async def read_only(nc, total: int, batch: int, *, decode: bool) -> float:
    reader = StreamReader(nc, "BENCH", f"{PREFIX}.>", batch)
    await reader.open(1)
    started, seen = time.perf_counter(), 0
    while seen < total:
        items = await reader.fetch()
        if decode:
            decode_batch(items)
        seen += len(items)
    elapsed = time.perf_counter() - started
    await reader.close()
    return total / elapsed


async def replay_run(settings: QuerySettings, total: int, batch: int) -> None:
    admin = await asyncpg.connect(ADMIN)
    name = f"bench_replay_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    last_line = [0.0]

    def progress(done: int, of: int) -> None:
        now = time.perf_counter()
        if now - last_line[0] > 10:
            last_line[0] = now
            print(f"  {done:,}/{of:,}")

    try:
        await migrate_async(url)
        run = settings.model_copy(update={"database_url": url})
        result = await Replay(run, batch_size=batch, progress=progress).run()
        check = await asyncpg.connect(run.asyncpg_dsn)
        count = await check.fetchval("SELECT count(*) FROM messages")
        await check.close()
        assert count == total, count
        assert result.events == total, result.events
        print(
            f"replay: {result.events:,} events in {result.seconds:,.1f} s ="
            f" {result.rate:,.0f} events/s (batch {batch})"
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main(total: int, batch: int, phases: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            settings = QuerySettings(
                _env_file=None, nats_url=server.url, stream="BENCH", subject_prefix=PREFIX
            )
            await ensure_stream(js, settings)
            await fill(nc, js, total)
            if phases:
                raw = await read_only(nc, total, batch, decode=False)
                print(f"read only: {raw:,.0f} events/s")
                decoded = await read_only(nc, total, batch, decode=True)
                print(f"read + decode: {decoded:,.0f} events/s")
            await replay_run(settings, total, batch)
            await nc.close()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("events", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=4000)
    parser.add_argument("--phases", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.batch_size, args.phases))
