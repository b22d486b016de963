"""The `chatlog` command: one subcommand per process of the system."""

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import uvicorn

from chatlog.config import DevSettings

_loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
try:
    from uvloop import new_event_loop as _loop_factory
except ImportError:  # pragma: no cover - Windows or PyPy: no uvloop
    _loop_factory = None

T = TypeVar("T")


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop where it exists, as uvicorn does for the HTTP services.

    The projector and replay are loops of small socket reads and writes: asyncio's pure-Python
    selector transports cost them more CPU than the projection does (profiled with py-spy).
    """
    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        return runner.run(main)


if TYPE_CHECKING:
    from query_service.config import QuerySettings

app = typer.Typer(
    name="chatlog",
    help="Durable, consistent chat history for bots.",
    no_args_is_help=True,
    add_completion=False,
)

HostOption = Annotated[str | None, typer.Option(help="Interface to bind (default from settings).")]
PortOption = Annotated[int | None, typer.Option(help="Port (default from settings).")]
WorkersOption = Annotated[
    int | None, typer.Option(help="Worker processes (default from settings).")
]


@app.callback()
def main() -> None:
    """Durable, consistent chat history for bots: ingest, project, query."""


@app.command()
def ingest(host: HostOption = None, port: PortOption = None, workers: WorkersOption = None) -> None:
    """Serve Telegram webhooks and the write API; every accepted write is in JetStream."""
    from ingest_service.config import IngestSettings  # noqa: PLC0415 - load a service only when run

    settings = IngestSettings()
    uvicorn.run(
        "ingest_service.main:app_from_environment",
        factory=True,
        host=host or settings.ingest_host,
        port=port or settings.ingest_port,
        workers=workers or settings.ingest_workers,
        access_log=False,  # an access log costs ~40 % of the webhook's throughput
        log_level=settings.log_level.lower(),
    )


DataDirOption = Annotated[
    Path | None, typer.Option(help="Data folder (default CHATLOG_DATA_DIR or ./.chatlog).")
]


def _data_dir(given: Path | None) -> Path:
    return given or DevSettings().data_dir


@app.command()
def dev(
    data_dir: DataDirOption = None,
    ingest_port: Annotated[int, typer.Option(envvar="CHATLOG_INGEST_PORT")] = 8000,
    query_port: Annotated[int, typer.Option(envvar="CHATLOG_QUERY_PORT")] = 8001,
) -> None:
    """Run everything (NATS, PostgreSQL, migrate, ingest, query, projector) on this machine."""
    from chatlog.dev import run_dev  # noqa: PLC0415 - needs the dev extra's servers

    raise typer.Exit(run_dev(_data_dir(data_dir), ingest_port, query_port))


@app.command()
def demo(  # noqa: PLR0917 - typer options
    ingest_url: Annotated[str, typer.Option(help="Base URL of the ingest service.")] = (
        "http://127.0.0.1:8000"
    ),
    query_url: Annotated[str, typer.Option(help="Base URL of the query API (for the hint).")] = (
        "http://127.0.0.1:8001"
    ),
    bot: Annotated[str, typer.Option(help="Bot id to post as.")] = "devbot",
    secret: Annotated[str | None, typer.Option(help="Webhook secret (default: dev's).")] = None,
    api_key: Annotated[str | None, typer.Option(help="API key (default: dev's).")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Post a sample chat history (three chats, edits, replies, media) to a running ingest."""
    from chatlog.demo import post_demo  # noqa: PLC0415

    secrets_file = _data_dir(data_dir) / "dev-secrets.json"
    if secrets_file.exists():
        found = json.loads(secrets_file.read_text(encoding="utf-8"))
        secret = secret or found["webhook_secret"]
        api_key = api_key or found["api_key"]
    if secret is None:
        raise typer.BadParameter("give --secret (no chatlog dev data folder found)")
    last_seq = post_demo(ingest_url, bot, secret, api_key)
    typer.echo(f"\nposted; the last event is seq {last_seq}. Read the chats back with:")
    typer.echo(
        f"  curl -s '{query_url}/v1/chats?bot_id={bot}&min_seq={last_seq}'"
        f" -H 'Authorization: Bearer {api_key or '<key>'}'"
    )


def _query_settings() -> "QuerySettings":
    from query_service.config import QuerySettings  # noqa: PLC0415 - load a service only when run

    settings = QuerySettings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


@app.command()
def migrate() -> None:
    """Bring the read-model schema in CHATLOG_DATABASE_URL to the latest version."""
    from query_service.db import migrate as upgrade  # noqa: PLC0415

    settings = _query_settings()
    upgrade(settings.database_url)
    typer.echo("read-model schema is up to date")


@app.command()
def project() -> None:
    """Run the projector: apply the event stream to the read models, in batches."""
    from query_service.main import run_projector  # noqa: PLC0415

    settings = _query_settings()
    with contextlib.suppress(KeyboardInterrupt):
        run_async(run_projector(settings))


@app.command()
def query() -> None:
    """Serve the chat-history HTTP API on CHATLOG_QUERY_PORT."""
    from query_service.main import create_app  # noqa: PLC0415

    settings = _query_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.query_host,
        port=settings.query_port,
        access_log=False,
        log_level=settings.log_level.lower(),
    )


@app.command()
def replay(
    from_seq: Annotated[
        int, typer.Option(min=1, help="Stream sequence to start from (default: the first).")
    ] = 1,
    verify: Annotated[
        bool,
        typer.Option(
            help="Rebuild and compare with the live models; swap nothing, exit 1 if they differ."
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Events per fetch and per transaction.")
    ] = 4000,
    progress: Annotated[
        bool | None, typer.Option(help="Progress bar (default: on a terminal; else plain lines).")
    ] = None,
) -> None:
    """Rebuild the read models from the stream in a shadow schema, then swap it in atomically."""
    from chatlog.progress import EventProgress  # noqa: PLC0415
    from query_service.replay import ReplayBusyError, run_replay  # noqa: PLC0415

    settings = _query_settings()
    bar = EventProgress("verifying" if verify else "replaying", terminal=progress)
    try:
        with bar:
            result = run_async(
                run_replay(
                    settings, verify=verify, batch_size=batch_size, from_seq=from_seq, progress=bar
                )
            )
    except ReplayBusyError as exc:
        typer.echo(f"chatlog replay: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"{result.events:,} events in {result.seconds:,.1f} s ({result.rate:,.0f} events/s),"
        f" checkpoint {result.checkpoint}"
    )
    if not verify:
        typer.echo("the rebuilt read models are live")
        return
    if result.differences:
        typer.echo("the live read models differ from the replayed ones:")
        for line in result.differences:
            typer.echo(f"  {line}")
        raise typer.Exit(1)
    typer.echo("the live read models equal the replayed ones")
