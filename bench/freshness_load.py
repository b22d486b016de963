"""Freshness load generator (its own process): write a webhook, then read it back through the API.

python -m bench.freshness_load --ingest URL --query URL --rate 1000 --seconds 3 --rounds 3

Open loop: update i is due at start + i / rate, whatever happened to the earlier ones; a late
start is recorded as "behind schedule". For each update: POST the webhook (a ~1 KB Telegram
update, as bench/webhook.lua), take the time of its 200 and its `seq`, then GET the chat's newest
message with `min_seq=seq&wait=5` (the API answers once the read models have that seq) and take
the time of that 200. Freshness = read 200 - write 200: it includes one read round trip.

HTTP/1.1 keep-alive over plain asyncio protocols (uvloop): httpx costs too much CPU at 2,000
requests/s on two cores shared with everything measured. Prints one JSON line, per round.
"""

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import orjson

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
    uvloop = None

CHATS = 20
_PAD = "lorem ipsum " * 60


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        status = int(head[9:12])
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : line_end if line_end >= 0 else None])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
        elif b"transfer-encoding: chunked" in head:
            parsed = _chunked(self.buffer, end + 4)
            if parsed is None:
                return
            body, used = parsed
            del self.buffer[:used]
        else:
            body = b""
            del self.buffer[: end + 4]
        waiter.set_result((status, body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)  # type: ignore[union-attr]
        return await self.waiter


def _chunked(buffer: bytearray, at: int) -> tuple[bytes, int] | None:
    """A chunked body starting at `at`, and where it ends; None while incomplete."""
    parts = []
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        start, stop = line_end + 2, line_end + 2 + size
        if len(buffer) < stop + 2:
            return None
        if size == 0:
            return b"".join(parts), stop + 2  # no trailers: uvicorn sends none
        parts.append(bytes(buffer[start:stop]))
        at = stop + 2


class _Pool:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.idle: list[_Connection] = []
        self.opened = 0

    async def acquire(self, *, fresh: bool = False) -> _Connection:
        while self.idle and not fresh:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        _, conn = await asyncio.get_running_loop().create_connection(
            _Connection, self.host, self.port
        )
        self.opened += 1
        return conn

    def release(self, conn: _Connection) -> None:
        if not conn.closed:
            self.idle.append(conn)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send on an idle connection; if the server had just closed it, once more on a new one.

        (uvicorn closes a keep-alive connection idle for 5 s; both requests are idempotent: the
        webhook is deduplicated by its update id.)
        """
        for fresh in (False, True):
            conn = await self.acquire(fresh=fresh)
            try:
                answer = await conn.request(data)
            except ConnectionError:
                if conn.transport is not None:
                    conn.transport.close()
                if fresh or conn.buffer:
                    raise
                continue
            except BaseException:
                if conn.transport is not None:
                    conn.transport.close()
                raise
            self.release(conn)
            return answer
        raise AssertionError  # unreachable: the second try returns or raises


def _webhook(update_id: int, chat: int, secret: str, bot: str) -> bytes:
    body = orjson.dumps({
        "update_id": update_id,
        "message": {
            "message_id": update_id, "date": 1764750000,
            "chat": {"id": chat, "type": "supergroup", "title": "Bench chat"},
            "from": {"id": 5, "is_bot": False, "first_name": "Ann", "username": "ann"},
            "text": _PAD,
        },
    })  # fmt: skip
    return (
        f"POST /telegram/{bot}/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nX-Telegram-Bot-Api-Secret-Token: {secret}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _read(bot: str, chat: int, seq: int, key: str) -> bytes:
    return (
        f"GET /v1/bots/{bot}/chats/{chat}/messages?limit=1&min_seq={seq}&wait=5 HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n"
    ).encode()


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main(args: argparse.Namespace) -> dict:
    ingest, query = _Pool(args.ingest), _Pool(args.query)
    # Open connections ahead, so that the first second does not pay for them.
    for pool in (ingest, query):
        conns = await asyncio.gather(*(pool.acquire() for _ in range(args.connections)))
        for conn in conns:
            pool.release(conn)
    per_round = round(args.rate * args.seconds)
    warm = round(args.rate * args.warmup)
    total = warm + per_round * args.rounds
    base = time.time_ns() // 1000  # update ids unique across runs on the same stream
    fresh: list[list[float]] = [[] for _ in range(args.rounds)]
    writes: list[list[float]] = [[] for _ in range(args.rounds)]
    behind: list[list[float]] = [[] for _ in range(args.rounds)]
    sent_at: list[list[float]] = [[] for _ in range(args.rounds)]
    errors: list[Counter] = [Counter() for _ in range(args.rounds)]

    async def one(i: int, due: float) -> None:
        sent = time.perf_counter()
        r = (i - warm) // per_round if i >= warm else None
        chat = -1001000000000 - i % CHATS
        try:
            status, body = await ingest.request(_webhook(base + i, chat, args.secret, args.bot))
            written = time.perf_counter()
            if status != 200:
                if r is not None:
                    errors[r][f"write {status}"] += 1
                return
            seq = orjson.loads(body)["seq"]
            status, _ = await query.request(_read(args.bot, chat, seq, args.key))
            read = time.perf_counter()
        except (OSError, ValueError, KeyError) as exc:
            if r is not None:
                errors[r][type(exc).__name__] += 1
            return
        if r is None:
            return
        if status != 200:
            errors[r][f"read {status}"] += 1
            return
        fresh[r].append(read - written)
        writes[r].append(written - sent)
        behind[r].append(sent - due)
        sent_at[r].append(sent)

    tasks = set()
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    start = time.perf_counter() + 0.05
    for i in range(total):
        due = start + i / args.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=15)
    cpu = (time.process_time() - cpu_started) / (time.perf_counter() - wall_started)
    rounds = []
    for r in range(args.rounds):
        span = (max(sent_at[r]) - min(sent_at[r])) if len(sent_at[r]) > 1 else 0.0
        rounds.append({
            "updates": per_round,
            "ok": len(fresh[r]),
            "errors": sum(errors[r].values()),
            "error_kinds": dict(errors[r]),
            "achieved_rate": (len(sent_at[r]) - 1) / span if span else 0.0,
            "p50_ms": _pct(fresh[r], 50) * 1000,
            "p99_ms": _pct(fresh[r], 99) * 1000,
            "max_ms": max(fresh[r], default=float("nan")) * 1000,
            "write_p50_ms": _pct(writes[r], 50) * 1000,
            "write_p99_ms": _pct(writes[r], 99) * 1000,
            "behind_p99_ms": _pct(behind[r], 99) * 1000,
            "behind_max_ms": max(behind[r], default=float("nan")) * 1000,
            "mean_ms": statistics.fmean(fresh[r]) * 1000 if fresh[r] else float("nan"),
        })  # fmt: skip
    return {"rate": args.rate, "seconds": args.seconds, "rounds": rounds,
            "connections_opened": {"ingest": ingest.opened, "query": query.opened},
            "unfinished": len(tasks), "cpu_share": cpu}  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ingest", required=True, help="base URL of chatlog ingest")
    parser.add_argument("--query", required=True, help="base URL of chatlog query")
    parser.add_argument("--rate", type=float, default=1000, help="updates per second")
    parser.add_argument("--seconds", type=float, default=10, help="seconds per measured round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1, help="seconds at the rate, not counted")
    parser.add_argument("--connections", type=int, default=32, help="opened ahead, per service")
    parser.add_argument("--bot", default="bench")
    parser.add_argument("--secret", default="bench-secret")
    parser.add_argument("--key", default="bench-key")
    options = parser.parse_args()
    if uvloop is not None:
        uvloop.install()
    sys.stdout.write(orjson.dumps(asyncio.run(main(options))).decode() + "\n")
