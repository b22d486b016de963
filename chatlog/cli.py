"""The `chatlog` command: one subcommand per process of the system."""

from typing import Annotated

import typer
import uvicorn

from ingest_service.config import IngestSettings

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
