"""Terminal output shared by the verbs: results on stdout, progress and errors on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

out = Console()
err = Console(stderr=True)


class progress:
    """A progress bar on stderr when it is a terminal, a no-op otherwise; yields `advance(done)`."""

    def __init__(self, total: int, what: str):
        self.bar = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=err, disable=not err.is_terminal)
        self.task = self.bar.add_task(what, total=total)

    def __enter__(self):
        self.bar.start()
        return lambda done: self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        self.bar.update(self.task, completed=self.bar.tasks[0].total)
        self.bar.stop()
