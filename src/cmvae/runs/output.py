"""What runs print: a rich console sized for pipes, and durations in words."""

from __future__ import annotations

from typing import Any


def make_console(stderr: bool = False) -> Any:
    """A :class:`rich.console.Console`; piped or captured output is not wrapped at 80 columns."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:  # pipes and captured output: do not wrap table rows at 80 columns
        console.width = max(console.width, 120)
    return console


def fmt_duration(seconds: float) -> str:
    """``3725`` -> ``"1 h 02 min 05 s"``."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h} h {m:02d} min {s:02d} s"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"
