"""The benches' terminal: step notes and progress bars on stderr (the reports themselves go to stdout)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def progress_bar(auto_refresh: bool = True) -> Progress:
    """A transient bar; ``auto_refresh=False`` starts no refresh thread (it would steal the GIL mid-timing)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, auto_refresh=auto_refresh)
