"""Progress of a long command: a rich bar on a terminal, else a plain line every few seconds."""

import sys
import time
from types import TracebackType
from typing import Final, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_PLAIN_EVERY: Final = 5.0
"""Seconds between two plain progress lines."""


class EventProgress:
    """Shows events done of a total (which may grow), events/s and the time left."""

    def __init__(self, description: str, *, terminal: bool | None = None) -> None:
        self.description = description
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self._started = time.monotonic()
        self._last_line = 0.0
        self._done = 0
        self._printed = 0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Self:
        self._started = time.monotonic()
        if self.terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>9,.0f} events/s"),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=Console(),
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=None, rate=0.0)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif exc_type is None and self._done and self._done != self._printed:
            self._line(self._done, self._done)

    def __call__(self, done: int, total: int) -> None:
        """Record progress: `done` events of `total`."""
        self._done = done
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total, rate=self._rate(done))
            return
        now = time.monotonic()
        if now - self._last_line >= _PLAIN_EVERY:
            self._last_line = now
            self._line(done, total)

    def _rate(self, done: int) -> float:
        elapsed = time.monotonic() - self._started
        return done / elapsed if elapsed > 0 else 0.0

    def _line(self, done: int, total: int) -> None:
        self._printed = done
        rate = self._rate(done)
        left = f"{(total - done) / rate:,.0f} s" if rate > 0 else "?"
        print(  # noqa: T201 - the plain-line mode of a command-line progress bar
            f"{self.description}: {done:,}/{total:,} events, {rate:,.0f} events/s, {left} left",
            flush=True,
        )
