"""What every benchmark section needs: servers, processes, load, statistics."""

import asyncio
import itertools
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import psutil

from chatlog.servers import NatsServer

BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent


@dataclass
class Servers:
    """A pinned nats-server of the benchmark's own, and a fresh database on the machine's."""

    nats_url: str
    database_url: str
    admin_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"

    @contextmanager
    def scratch_database(self) -> Iterator[str]:
        """Another fresh database on the same server, dropped after (even on Ctrl-C)."""
        name = f"chatlog_bench_{uuid.uuid4().hex[:8]}"
        asyncio.run(_sql(self.admin_url, f'CREATE DATABASE "{name}"'))
        try:
            yield self.admin_url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            asyncio.run(_sql(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def servers() -> Iterator[Servers]:
    admin = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"chatlog_bench_{uuid.uuid4().hex[:8]}"
    store = Path(tempfile.mkdtemp(prefix="chatlog-bench-"))
    nats_server = NatsServer(store / "nats").start()
    asyncio.run(_sql(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield Servers(nats_server.url, admin.rsplit("/", 1)[0] + f"/{name}", admin)
    finally:
        nats_server.stop()
        asyncio.run(_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        shutil.rmtree(store, ignore_errors=True)


async def _sql(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


class PeakRSS:
    """Samples the resident memory of a process tree in the background; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.cpu_seconds = 0.0
        """User + system CPU time of the tree, as last sampled."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
                rss = max(p.memory_info().rss for p in tree)
                cpu = sum(sum(p.cpu_times()[:2]) for p in tree)
            except psutil.Error:
                continue
            self.peak = max(self.peak, rss)
            self.cpu_seconds = max(self.cpu_seconds, cpu)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    rss: PeakRSS
    log: Path
    problems: list[str] = field(default_factory=list)
    """Once stopped: the error and warning lines of its log (the log file itself is removed)."""

    def stop(self) -> int:
        """Stop (SIGINT, then SIGKILL) and return the peak RSS seen."""
        if self.popen.poll() is None:
            self.popen.send_signal(2)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        peak = self.rss.stop()
        if self.log.exists():
            self.problems = log_problems(self.log)
            self.log.unlink()
        return peak


def chatlog_env(servers: Servers, database_url: str, token: str) -> dict[str, str]:
    """The settings every chatlog process of one system needs: its stream, prefix, projection."""
    return {
        "CHATLOG_DATABASE_URL": database_url,
        "CHATLOG_NATS_URL": servers.nats_url,
        "CHATLOG_STREAM": f"BENCH_{token.upper()}",
        "CHATLOG_SUBJECT_PREFIX": f"bench.{token}",
        "CHATLOG_PROJECTION_NAME": f"bench_{token}",
        "CHATLOG_LOG_LEVEL": "INFO",
    }


def log_problems(log: Path) -> list[str]:
    """The lines of a process's log that report an error or a warning (for the report)."""
    words = ("ERROR", "Traceback", "WARNING", "CRITICAL")
    text = log.read_text(errors="replace") if log.exists() else ""
    return [line for line in text.splitlines() if any(word in line for word in words)]


def start(args: list[str], env: dict[str, str], name: str) -> Process:
    log = Path(tempfile.mkstemp(prefix=f"chatlog-bench-{name}-", suffix=".log")[1])
    popen = subprocess.Popen(
        args,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=BENCH_DIR.parent,
    )
    return Process(popen, PeakRSS(popen.pid), log)


def wait_http(url: str, process: Process, timeout: float = 30, method: str = "GET") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"process exited: {process.log.read_text()[-2000:]}")
        try:
            httpx.request(method, url, timeout=1)
        except httpx.TransportError:
            time.sleep(0.1)
        else:
            return
    raise RuntimeError(f"{url} did not answer: {process.log.read_text()[-2000:]}")


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_RUN_IDS = itertools.count(random.randrange(1, 8000))
"""Every webhook.lua run's BASE (its update ids start at BASE * 1e10; kept under 1e14)."""


def wrk(
    url: str,
    seconds: float,
    connections: int = 32,
    script: str | None = "webhook.lua",
    headers: dict[str, str] | None = None,
) -> Load:
    """Drive `url` with wrk from a separate process; latency percentiles from wrk itself."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        args += ["-s", str(BENCH_DIR / script)]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    extra = ["--", str(next(_RUN_IDS))] if script is not None else []
    out = subprocess.run([*args, url, *extra], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\b", out, re.MULTILINE).groups()  # type: ignore[union-attr]
        return float(value) * _UNITS[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    count = int(errors.group(1)) if errors else 0
    if socket_errors:
        count += sum(int(g) for g in socket_errors.groups())
    return Load(rps, pct("50"), pct("99"), count)


@dataclass
class Series:
    """Repeated measurements of one thing; reported as medians."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, **figures: float) -> None:
        for key, value in figures.items():
            self.values.setdefault(key, []).append(value)

    def median(self, key: str) -> float:
        return statistics.median(self.values[key])


def ensure_wrk() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk (make bench installs it)")
