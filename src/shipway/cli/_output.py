"""Terminal output: tables and colour for people, `--json` for scripts, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    no_wrap: Sequence[str] = (),
    *,
    compact: bool = False,
    caption: str | None = None,
) -> None:
    """A Rich table; columns named in `no_wrap` are kept whole and the rest wrap around them.

    `compact`: no vertical rules and single spaces between columns, for tables with many
    short columns that would not fit 80 columns with full borders."""
    if not rows:  # a line, not the frame of an empty table
        what = f"{title[0].lower()}{title[1:]}" if title else "entries"
        console.print(f"[dim]No {what}.[/dim]", highlight=False)
        return
    t = Table(title=title, header_style="bold cyan", caption=caption)
    if compact:
        t.box, t.pad_edge, t.collapse_padding = box.SIMPLE_HEAD, False, True
    for col in columns:
        t.add_column(col, no_wrap=col in no_wrap)
    for row in rows:
        t.add_row(*(fmt(v) for v in row))
    console.print(t)


def fmt(value: Any) -> str:
    if value is None:
        return "[dim]-[/dim]"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def short(digest: str | None, n: int = 12) -> str:
    return digest[:n] if digest else "-"


def run_cli(app: typer.Typer) -> int:
    """Run the app; a ShipwayError becomes one red line and its exit code, never a traceback."""
    from shipway.errors import ShipwayError

    try:
        # Outside standalone mode click returns, rather than raises, typer.Exit's code.
        code = app(standalone_mode=False)
    except ShipwayError as exc:
        err_console.print(f"[bold red]Error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        err_console.print("[red]Interrupted.[/red]")
        return 130
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        usage, abort = _click_errors()
        if isinstance(exc, usage):
            exc.show(file=sys.stderr)  # type: ignore[attr-defined]
            return int(exc.exit_code)  # type: ignore[attr-defined]
        if isinstance(exc, abort):
            return 1
        raise
    return code if isinstance(code, int) else 0


def _click_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """Click's usage-error and abort classes: typer >= 0.22 vendors its own click
    (``typer._click``), older typer uses the click package; either may raise."""
    import importlib

    usage: list[type[Exception]] = []
    abort: list[type[Exception]] = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        usage.append(module.ClickException)
        if hasattr(module, "Abort"):
            abort.append(module.Abort)
    return tuple(usage), tuple(abort)
