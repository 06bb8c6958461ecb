"""Settings precedence (flags > env > auren.toml > defaults) and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from auren_core.backends import redact_url
from auren_core.config import ConfigError, load_settings


@pytest.fixture
def toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "auren.toml"
    monkeypatch.setenv("AUREN_CONFIG", str(path))
    for var in ("AUREN_REDIS_URL", "AUREN_STREAM", "AUREN_PG_DSN", "AUREN_BUDGET_USD_PER_HOUR"):
        monkeypatch.delenv(var, raising=False)
    return path


def test_defaults(toml: Path) -> None:
    s = load_settings()
    assert s.redis_url is None and s.stream == "auren:events" and s.active_window_s == 300


def test_precedence_flag_env_toml(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml.write_text(
        'stream = "from:toml"\nbudget_usd_per_hour = 2.5\n[tool_costs]\nsearch = 0.01\n'
    )
    s = load_settings()
    assert s.stream == "from:toml" and s.budget_usd_per_hour == 2.5
    assert s.tool_costs == {"search": 0.01}
    monkeypatch.setenv("AUREN_STREAM", "from:env")
    assert load_settings().stream == "from:env"
    assert load_settings(stream="from:flag").stream == "from:flag"
    # None means "flag not given": the environment still wins over nothing
    assert load_settings(stream=None).stream == "from:env"


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"redis_url": "http://x"}, "redis_url"),
        ({"pg_dsn": "mysql://x"}, "pg_dsn"),
        ({"budget_usd_per_hour": -1}, "budget_usd_per_hour"),
        ({"stream": "a\x1bb"}, "stream"),
    ],
)
def test_bad_values_are_one_line_errors(toml: Path, kw: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(**kw)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_malformed_toml(toml: Path) -> None:
    toml.write_text("stream = [unterminated\n")
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_settings()


def test_env_redis_url(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUREN_REDIS_URL", "rediss://:s3cret@cache.example:6380/2")
    s = load_settings()
    assert s.redis_url == "rediss://:s3cret@cache.example:6380/2"
    assert "s3cret" not in redact_url(s.redis_url)
