"""Projector catch-up and replay, on one pre-filled stream of N events.

Projector: the real `chatlog project` process catches up on the stream from an empty database; it
is timed from the moment its consumer starts (its log line "projecting ...", timestamped to the
millisecond by the process itself) to the moment the checkpoint row reaches the stream's last
sequence (polled every 10 ms); the wall time from process start is reported too. Against, on the
same stream and in the same rounds:

- raw fetch + ack: nats-py `fetch(batch)` and one `ack` per message (`raw_fetch_ack` of
  bench/projector_throughput.py), the projector's batch size;
- COPY: the same events' rows (decoded from the stream between batches, untimed) bulk inserted
  into a fresh `messages` table with asyncpg's `copy_records_to_table`, 5,000 rows a batch; only
  the COPY calls are timed. It writes `messages` alone (no `chats`, no checkpoint).

The three sides run `runs` times, interleaved, each side first as often as the others; medians.

Replay: the real `chatlog replay` process on a freshly migrated database, timed from process start
to its exit (and its own figure, which starts after connecting), `runs` times; medians.
"""

import asyncio
import re
import statistics
import time
import uuid
from datetime import datetime

import asyncpg
import nats
import orjson
from nats.js.api import AckPolicy, ConsumerConfig

from bench.harness import VENV_BIN, Servers, chatlog_env, start
from bench.projector_throughput import raw_fetch_ack, settle
from bench.replay_throughput import fill
from query_service.config import QuerySettings
from query_service.db import migrate_async
from shared.stream import ensure_stream

COPY_BATCH = 5000
PROJECTOR_BATCH = 500  # the projector's default batch size (CHATLOG_PROJECTOR_BATCH_SIZE)
_COLUMNS = (
    "bot_id", "chat_id", "message_id", "thread_id", "sender_id", "sender_name", "sender_username",
    "sender_is_bot", "sent_at", "edited_at", "kind", "text", "reply_to_message_id", "original",
    "seq", "received_seq",
)  # fmt: skip
_LOG_TIME = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) INFO .*projecting ", re.MULTILINE
)
_REPLAY_LINE = re.compile(r"([\d,]+) events in ([\d.,]+) s \(([\d,]+) events/s\)")


async def _checkpoint(conn: asyncpg.Connection, name: str) -> int:
    return await conn.fetchval("SELECT seq FROM projection_checkpoints WHERE name = $1", name) or 0


def _consumer_started(log_text: str) -> float | None:
    """The epoch time of the projector's "projecting ..." line (local time, milliseconds)."""
    found = _LOG_TIME.search(log_text)
    if found is None:
        return None
    local = time.mktime(time.strptime(found.group(1), "%Y-%m-%d %H:%M:%S"))
    return local + int(found.group(2)) / 1000


def projector_cli(servers: Servers, env: dict[str, str], total: int, last_seq: int) -> dict:
    """`chatlog project` from an empty database to the stream's last sequence."""
    with servers.scratch_database() as url:
        asyncio.run(migrate_async(url))
        run_env = {**env, "CHATLOG_DATABASE_URL": url,
                   "CHATLOG_PROJECTION_NAME": f"bench_{uuid.uuid4().hex[:8]}"}  # fmt: skip
        started = time.time()
        process = start([str(VENV_BIN / "chatlog"), "project"], run_env, "project")
        try:
            ended, count = asyncio.run(_await_checkpoint(url, run_env, last_seq, process))
            consumer = _consumer_started(process.log.read_text(errors="replace"))
        finally:
            peak = process.stop()
            asyncio.run(_drop_consumer(servers, env, run_env["CHATLOG_PROJECTION_NAME"]))
    if count != total:
        raise RuntimeError(f"the projector wrote {count:,} messages, not {total:,}")
    timed_from = consumer if consumer is not None else started
    return {
        "rate": total / (ended - timed_from),
        "seconds": ended - timed_from,
        "wall_seconds": ended - started,
        "timed_from": "consumer start" if consumer is not None else "process start",
        "rss_mb": peak / 2**20,
        "problems": process.problems,
    }


async def _await_checkpoint(url: str, env: dict[str, str], last_seq: int, process) -> tuple:
    conn = await asyncpg.connect(url)
    try:
        name = env["CHATLOG_PROJECTION_NAME"]
        while await _checkpoint(conn, name) < last_seq:
            if process.popen.poll() is not None:
                raise RuntimeError(f"chatlog project exited: {process.log.read_text()[-2000:]}")
            await asyncio.sleep(0.01)
        ended = time.time()
        return ended, await conn.fetchval("SELECT count(*) FROM messages")
    finally:
        await conn.close()


async def _drop_consumer(servers: Servers, env: dict[str, str], durable: str) -> None:
    nc = await nats.connect(servers.nats_url)
    try:
        await nc.jetstream().delete_consumer(env["CHATLOG_STREAM"], durable)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


async def raw_side(servers: Servers, env: dict[str, str], total: int) -> dict:
    nc = await nats.connect(servers.nats_url)
    try:
        subject = env["CHATLOG_SUBJECT_PREFIX"] + ".>"
        rate = await raw_fetch_ack(
            nc.jetstream(), env["CHATLOG_STREAM"], subject, total, PROJECTOR_BATCH
        )
    finally:
        await nc.close()
    return {"rate": rate}


def _row(seq: int, body: bytes) -> tuple:
    """The `messages` row of a MessageReceived, as the projector makes it."""
    raw = orjson.loads(body)
    data = raw["data"]
    sender = data.get("sender") or {}
    original = data.get("original")
    return (
        raw["bot_id"], data["chat"]["id"], data["message_id"], data.get("thread_id"),
        sender.get("id"), sender.get("name"), sender.get("username"),
        sender.get("is_bot", False), datetime.fromisoformat(data["sent_at"]),
        None if data.get("edited_at") is None else datetime.fromisoformat(data["edited_at"]),
        data["kind"], data.get("text"), data.get("reply_to_message_id"),
        None if original is None else orjson.dumps(original).decode(), seq, seq,
    )  # fmt: skip


async def copy_side(servers: Servers, env: dict[str, str], total: int, url: str) -> dict:
    """COPY the stream's rows into a fresh `messages`, 5,000 at a time; only COPY is timed."""
    await migrate_async(url)
    nc = await nats.connect(servers.nats_url)
    conn = await asyncpg.connect(url)
    js = nc.jetstream()
    durable = f"copy{uuid.uuid4().hex[:8]}"
    try:
        sub = await js.pull_subscribe(
            env["CHATLOG_SUBJECT_PREFIX"] + ".>",
            durable=durable,
            stream=env["CHATLOG_STREAM"],
            config=ConsumerConfig(ack_policy=AckPolicy.NONE),
        )
        seen, timed = 0, 0.0
        while seen < total:
            msgs = await sub.fetch(COPY_BATCH, timeout=5)
            rows = [_row(msg.metadata.sequence.stream, msg.data) for msg in msgs]
            began = time.perf_counter()
            await conn.copy_records_to_table("messages", records=rows, columns=_COLUMNS)
            timed += time.perf_counter() - began
            seen += len(msgs)
        await sub.unsubscribe()
        await js.delete_consumer(env["CHATLOG_STREAM"], durable)
        count = await conn.fetchval("SELECT count(*) FROM messages")
        if count != total:
            raise RuntimeError(f"COPY wrote {count:,} rows, not {total:,}")
    finally:
        await conn.close()
        await nc.close()
    return {"rate": total / timed, "seconds": timed}


def replay_cli(servers: Servers, env: dict[str, str], total: int) -> dict:
    """`chatlog replay` into a freshly migrated database: wall time from process start to exit."""
    with servers.scratch_database() as url:
        asyncio.run(migrate_async(url))
        started = time.perf_counter()
        process = start(
            [str(VENV_BIN / "chatlog"), "replay", "--no-progress"],
            {**env, "CHATLOG_DATABASE_URL": url},
            "replay",
        )
        try:
            code = process.popen.wait()
            seconds = time.perf_counter() - started
            output = process.log.read_text(errors="replace")
        finally:
            peak = process.stop()
        if code != 0:
            raise RuntimeError(f"chatlog replay exited {code}: {output[-2000:]}")
        count = asyncio.run(_count(url))
    if count != total:
        raise RuntimeError(f"the replay wrote {count:,} messages, not {total:,}")
    own = _REPLAY_LINE.search(output)
    return {
        "seconds": seconds,
        "rate": total / seconds,
        "own_seconds": float(own.group(2).replace(",", "")) if own else None,
        "rss_mb": peak / 2**20,
        "problems": process.problems,
    }


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM messages")
    finally:
        await conn.close()


async def _fill(servers: Servers, env: dict[str, str], total: int) -> int:
    nc = await nats.connect(servers.nats_url)
    try:
        js = nc.jetstream()
        settings = QuerySettings(
            _env_file=None,
            nats_url=servers.nats_url,
            stream=env["CHATLOG_STREAM"],
            subject_prefix=env["CHATLOG_SUBJECT_PREFIX"],
        )
        await ensure_stream(js, settings)
        return await fill(nc, js, total, env["CHATLOG_STREAM"], env["CHATLOG_SUBJECT_PREFIX"])
    finally:
        await nc.close()


def _medians(samples: list[dict]) -> dict[str, float]:
    """The median of each numeric figure over the samples that have it."""
    numeric: dict[str, list[float]] = {}
    for sample in samples:
        for key, value in sample.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                numeric.setdefault(key, []).append(value)
    return {key: statistics.median(values) for key, values in numeric.items()}


def run(
    servers: Servers,
    *,
    events: int,
    runs: int,
    projector: bool = True,
    replay: bool = True,
    pause: float = 1.0,
) -> dict[str, dict]:
    """Fill one stream with `events` events, then measure the projector and/or the replay."""
    env = chatlog_env(servers, servers.database_url, f"c{uuid.uuid4().hex[:8]}")
    last_seq = asyncio.run(_fill(servers, env, events))
    results: dict[str, dict] = {}
    if projector:
        sides = ["projector", "raw fetch+ack", "COPY"]
        samples: dict[str, list[dict]] = {side: [] for side in sides}
        for round_ in range(runs):
            for side in sides[round_ % 3 :] + sides[: round_ % 3]:
                asyncio.run(settle(servers.admin_url, pause))
                if side == "projector":
                    sample = projector_cli(servers, env, events, last_seq)
                elif side == "raw fetch+ack":
                    sample = asyncio.run(raw_side(servers, env, events))
                else:
                    with servers.scratch_database() as url:
                        sample = asyncio.run(copy_side(servers, env, events, url))
                samples[side].append(sample)
                rate = sample["rate"]
                print(f"  projector round {round_ + 1}/{runs} {side}: {rate:,.0f} events/s",
                      flush=True)  # fmt: skip
        med = {side: _medians(s) for side, s in samples.items()}
        results["projector"] = {
            "events": events,
            "batch": PROJECTOR_BATCH,
            "copy_batch": COPY_BATCH,
            "timed_from": samples["projector"][0]["timed_from"],
            "medians": med,
            "rss_mb": max(s["rss_mb"] for s in samples["projector"]),
            "ratios": {
                "projector_vs_raw_fetch_ack": med["projector"]["rate"]
                / med["raw fetch+ack"]["rate"],
                "projector_vs_copy": med["projector"]["rate"] / med["COPY"]["rate"],
            },
            "problems": sorted({p for s in samples["projector"] for p in s["problems"]})[:20],
        }
    if replay:
        samples_r = []
        for round_ in range(runs):
            asyncio.run(settle(servers.admin_url, pause))
            sample = replay_cli(servers, env, events)
            samples_r.append(sample)
            print(f"  replay round {round_ + 1}/{runs}: {events:,} events in"
                  f" {sample['seconds']:.1f} s = {sample['rate']:,.0f} events/s",
                  flush=True)  # fmt: skip
        med_r = _medians(samples_r)
        results["replay"] = {
            "events": events,
            "medians": med_r,
            "rss_mb": max(s["rss_mb"] for s in samples_r),
            "problems": sorted({p for s in samples_r for p in s["problems"]})[:20],
        }
    return results
