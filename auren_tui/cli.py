"""The ``auren`` command line (Typer).

Each command lives in ``auren_tui/commands/<name>.py`` as a function ``command`` with Typer
annotations; those modules import their heavy dependencies inside the function so that
``auren --help`` and ``auren top`` start fast and never import crewai or chromadb.

User mistakes (bad flag values, unreachable servers, unreadable files) end with one line on
stderr and a non-zero exit: commands raise :class:`auren_core.config.ConfigError` (or
``typer.BadParameter``) and :func:`main` prints it.
"""

from __future__ import annotations

import importlib
import sys

import typer

from auren_core.config import ConfigError

# click's exception base, wherever this Typer keeps click (recent ones vendor it)
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)

app = typer.Typer(
    name="auren",
    help="AUREN Observatory: real-time observability for multi-agent CrewAI systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """AUREN Observatory: real-time observability for multi-agent CrewAI systems."""


# (command name, module under auren_tui.commands)
COMMANDS: list[tuple[str, str]] = [
    ("top", "top"),
    ("serve-ws", "serve_ws"),
    ("serve-otlp", "serve_otlp"),
    ("export", "export"),
    ("persist", "persist"),
    ("demo", "demo"),
    ("token", "token"),
    ("doctor", "doctor"),
    ("embedded", "embedded"),
]

for _name, _module in COMMANDS:
    try:
        _mod = importlib.import_module(f"auren_tui.commands.{_module}")
    except ModuleNotFoundError as _exc:  # a command whose module has not landed yet
        if _exc.name != f"auren_tui.commands.{_module}":
            raise
        continue
    app.command(_name, help=(_mod.command.__doc__ or "").strip().split("\n")[0])(_mod.command)


def main(argv: list[str] | None = None) -> int:
    try:
        rv = app(args=argv, standalone_mode=False)
    except ConfigError as exc:
        print(f"auren: {exc}", file=sys.stderr)
        return 2
    except typer.BadParameter as exc:  # a bad flag value: one line naming the flag
        print(f"auren: {exc.format_message()}", file=sys.stderr)
        return 2
    except _ClickException as exc:  # other usage errors: click's usage, hint and exit code
        exc.show()  # type: ignore[attr-defined]
        return int(exc.exit_code)  # type: ignore[attr-defined]
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # a command that exits on its own
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return rv if isinstance(rv, int) else 0


def entry() -> None:  # console script
    sys.exit(main())


if __name__ == "__main__":
    entry()
