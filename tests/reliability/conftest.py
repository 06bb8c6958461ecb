"""The reliability suite: every test here is marked ``slow`` (CI runs them all; ``-m 'not
slow'`` leaves them out of a quick local run)."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)
