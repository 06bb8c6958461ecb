from auren_tui.cli import entry

entry()
