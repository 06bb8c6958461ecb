"""Typer glue for :mod:`auren_core.durations`: a flag value that is not a duration stops
the command before it does anything, with one line naming the flag (``typer.BadParameter``,
printed by :func:`auren_tui.cli.main`)."""

from __future__ import annotations

from collections.abc import Callable

import typer

from auren_core.durations import DurationError, parse_duration

__all__ = ["METAVAR", "as_duration"]

METAVAR = "DURATION"


def as_duration(*, allow_zero: bool = False) -> Callable[[str | float], float]:
    """A Typer ``parser=`` for a duration flag (seconds as float; defaults pass through)."""

    def parse(value: str | float) -> float:
        if isinstance(value, int | float):  # a default given in seconds
            return float(value)
        try:
            return parse_duration(value, allow_zero=allow_zero)
        except DurationError as exc:
            raise typer.BadParameter(str(exc)) from None

    return parse
