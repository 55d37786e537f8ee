"""Progress bars (rich) for the command line's long work: audit export, replay, demo.

The bar goes to standard error, so standard output stays what a script reads (JSON lines, tables); on a
terminal it is shown while the work runs and removed when it is done, and elsewhere (a pipe, CI) nothing
is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported when a bar is made, so the CLI starts light
    from rich.console import Console
    from rich.progress import Progress


def progress_bar(what: str, *, console: Console | None = None) -> Progress:
    """A bar for one kind of work: `what` done of the total, elapsed time, time left."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn(f"{what} {{task.description}}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console or Console(stderr=True),
                    transient=True)
