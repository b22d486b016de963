"""Freshness: from the ingest's 200 to the message being readable through the query API.

The real three processes (`chatlog ingest`, `chatlog project`, `chatlog query`) on a fresh
database and stream; the load comes from bench/freshness_load.py in a process of its own, at a
steady rate (open loop), one warm-up second then `runs` measured rounds back to back; medians of
the rounds' percentiles.
"""

import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid

import asyncpg

from bench.harness import BENCH_DIR, VENV_BIN, Servers, chatlog_env, start, wait_http
from chatlog.servers import free_port
from query_service.db import migrate_async

SECRET, KEY, BOT = "bench-secret", "bench-key", "bench"


async def _wait_projector(url: str, name: str, process) -> None:
    """Until the projector has made its checkpoint row (it is connected and leads)."""
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise RuntimeError(f"chatlog project exited: {process.log.read_text()[-2000:]}")
            if await conn.fetchval("SELECT 1 FROM projection_checkpoints WHERE name = $1", name):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the projector did not start: {process.log.read_text()[-2000:]}")
    finally:
        await conn.close()


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def run(
    servers: Servers, *, runs: int, seconds: float, rate: float = 1000, warmup: float = 1
) -> dict[str, object]:
    ingest_port, query_port = free_port(), free_port()
    with servers.scratch_database() as url:
        asyncio.run(migrate_async(url))
        env = {
            **chatlog_env(servers, url, f"f{uuid.uuid4().hex[:8]}"),
            "CHATLOG_TELEGRAM_SECRETS": json.dumps({BOT: SECRET}),
            "CHATLOG_API_KEYS": json.dumps([KEY]),
            "CHATLOG_INGEST_PORT": str(ingest_port),
            "CHATLOG_QUERY_PORT": str(query_port),
        }
        chatlog = str(VENV_BIN / "chatlog")
        processes = {}
        try:
            for name in ("ingest", "project", "query"):
                processes[name] = start([chatlog, name], env, name)
            wait_http(f"http://127.0.0.1:{ingest_port}/readyz", processes["ingest"])
            wait_http(f"http://127.0.0.1:{query_port}/readyz", processes["query"])
            asyncio.run(_wait_projector(url, env["CHATLOG_PROJECTION_NAME"], processes["project"]))
            load = subprocess.run(
                [sys.executable, "-m", "bench.freshness_load",
                 "--ingest", f"http://127.0.0.1:{ingest_port}",
                 "--query", f"http://127.0.0.1:{query_port}",
                 "--rate", str(rate), "--seconds", str(seconds), "--rounds", str(runs),
                 "--warmup", str(warmup), "--bot", BOT, "--secret", SECRET, "--key", KEY],
                capture_output=True, text=True, check=False, cwd=BENCH_DIR.parent,
                timeout=60 + (warmup + seconds * runs) * 3,
            )  # fmt: skip
        finally:
            rss = {name: process.stop() / 2**20 for name, process in processes.items()}
    if load.returncode != 0:
        raise RuntimeError(f"the load generator failed: {load.stderr[-2000:]}")
    found = json.loads(load.stdout.strip().splitlines()[-1])
    rounds = found["rounds"]
    for number, found_round in enumerate(rounds, 1):
        r = {k: float("nan") if v is None else v for k, v in found_round.items()}
        print(f"  freshness round {number}/{runs}: {r['ok']:,}/{r['updates']:,} read back,"
              f" p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms,"
              f" achieved {r['achieved_rate']:,.0f}/s, behind schedule p99"
              f" {r['behind_p99_ms']:.1f} ms max {r['behind_max_ms']:.1f} ms,"
              f" errors {r['errors']}", flush=True)  # fmt: skip
    keys = ("p50_ms", "p99_ms", "max_ms", "write_p50_ms", "write_p99_ms", "achieved_rate",
            "behind_p99_ms", "behind_max_ms")  # fmt: skip
    medians = {k: _median([r[k] for r in rounds if r[k] is not None]) for k in keys}
    problems = {name: p.problems[:10] for name, p in processes.items() if p.problems}
    return {
        "rate": rate,
        "seconds_per_round": seconds,
        "medians": medians,
        "errors": sum(r["errors"] for r in rounds),
        "error_kinds": [r["error_kinds"] for r in rounds],
        "updates": sum(r["updates"] for r in rounds),
        "read_back": sum(r["ok"] for r in rounds),
        "unfinished": found["unfinished"],
        "load_generator_cpu": found["cpu_share"],
        "connections_opened": found["connections_opened"],
        "rss_mb": rss,
        "cpu_seconds": {name: p.rss.cpu_seconds for name, p in processes.items()},
        "problems": problems,
    }
