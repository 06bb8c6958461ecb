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
    ("serve-web", "serve_web"),
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


def _given(argv: list[str], param: object) -> str | None:
    """The value the user gave for the option ``param`` on the command line (its last
    occurrence: click keeps the last), or None (an argument, an environment variable)."""
    opts = [o for o in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ()))
            if o.startswith("-")]  # fmt: skip
    found: str | None = None
    for i, tok in enumerate(argv):
        for opt in opts:
            if tok == opt and i + 1 < len(argv):
                found = argv[i + 1]
            elif opt.startswith("--") and tok.startswith(opt + "="):
                found = tok[len(opt) + 1 :]
            elif not opt.startswith("--") and tok.startswith(opt) and len(tok) > len(opt):
                found = tok[len(opt) :]  # -o/tmp/x
    return found


def _usage_line(exc: Exception, argv: list[str]) -> str:
    """One line for a click usage error, naming the value given and where help is."""
    msg = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    if isinstance(exc, typer.BadParameter):
        value = _given(argv, exc.param)
        if value is not None and value not in msg:
            msg += f" (got {value!r})"
        return msg
    ctx = getattr(exc, "ctx", None)
    sub = f" {ctx.info_name}" if ctx is not None and ctx.parent is not None else ""
    return f"{msg} (see `auren{sub} --help`)"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = app(args=args, standalone_mode=False)
    except ConfigError as exc:
        print(f"auren: {exc}", file=sys.stderr)
        return 2
    except _ClickException as exc:  # a bad flag value or other usage error: one line
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `auren`: the help text
            exc.show()  # type: ignore[attr-defined]
            return int(exc.exit_code)  # type: ignore[attr-defined]
        print(f"auren: {_usage_line(exc, args)}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2) or 2)
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
