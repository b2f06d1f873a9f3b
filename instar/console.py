"""What every stage shares at its edges: argument parsing, rich progress and error reporting."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

console = Console(stderr=True)
T = TypeVar("T")


class StageError(Exception):
    """A problem a user can fix (bad input, missing file): printed without a traceback."""


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The argument parser of `python -m stages.<prog>` (or of a dotted module: a script)."""
    return argparse.ArgumentParser(
        prog=f"python -m {prog if '.' in prog else 'stages.' + prog}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def run(main: Callable[[], None]) -> None:
    """Run a stage's main; turn known errors into one red line and a non-zero exit."""
    from instar.params.core import ParamsError

    start = time.perf_counter()
    try:
        main()
    except ParamsError as e:
        console.print(f"[bold red]params error:[/] {e.message}", highlight=False)
        raise SystemExit(2) from None
    except StageError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        raise SystemExit(1) from None
    console.print(f"[dim]done in {time.perf_counter() - start:.1f}s[/]")


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a rich progress bar (plain lines when stderr is not a terminal)."""
    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(
        *columns, console=console, transient=False, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task(description, total=total)
        n = 0
        for n, item in enumerate(items, 1):  # noqa: B007 - n is read after the loop
            yield item
            bar.advance(task)
    if not console.is_terminal:
        console.print(f"{description}: {n}")
