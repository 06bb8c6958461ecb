"""Settings: flags > environment (``AUREN_*``) > ``auren.toml`` > defaults.

pydantic-settings does the layering and validation; ``load_settings`` turns a
validation failure into a one-line :class:`ConfigError` the CLI can print.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "ConfigError",
    "RecommendationThresholds",
    "Settings",
    "TierCosts",
    "default_data_dir",
    "load_settings",
]

# AUREN_REDIS_URL=redis+cluster://HOST:PORT (any node) reads and writes a Valkey/Redis
# Cluster; AUREN_STREAM_SHARDS=N spreads the stream over N keys (streams/shards.py).


class ConfigError(Exception):
    """A user mistake in configuration: printed as one line, never a traceback."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "auren"


def _toml_path() -> Path:
    return Path(os.environ.get("AUREN_CONFIG", "auren.toml"))


class TierCosts(BaseModel):
    """``[tier_costs]``: what a memory load costs when its event carries no price
    (:func:`auren_core.rules.modelled_tier_costs`). USD per operation (one load reaching
    the tier) for each tier, and the embedding model whose input price (genai-prices)
    each semantic lookup pays. Defaults: 0 per operation - an *assumption* (self-hosted
    servers bill no request; docs/http-api.md gives managed-service figures to configure)
    - and no embedding model (a local embedder costs nothing).

    ``<tier>_gb_month``: USD per GB (1e9 bytes) stored per month, applied to the latest
    ``memory_tier_storage`` sizes (a monthly rate, not part of any window's cost). Default 0,
    the same *assumption* (self-hosted storage bills no one per GB)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    redis: float = Field(default=0.0, ge=0, le=1e6)
    postgresql: float = Field(default=0.0, ge=0, le=1e6)
    chromadb: float = Field(default=0.0, ge=0, le=1e6)
    embedding_model: str | None = None
    redis_gb_month: float = Field(default=0.0, ge=0, le=1e6)
    postgresql_gb_month: float = Field(default=0.0, ge=0, le=1e6)
    chromadb_gb_month: float = Field(default=0.0, ge=0, le=1e6)


class RecommendationThresholds(BaseModel):
    """``[recommendations]``: when each optimisation recommendation fires (the fields of
    :class:`auren_core.analytics.recommend.Thresholds`, same defaults; see that module)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_slow_serves: int = Field(default=3, ge=1, le=1_000_000)
    min_semantic: int = Field(default=3, ge=1, le=1_000_000)
    min_calls: int = Field(default=5, ge=1, le=1_000_000)
    short_output: int = Field(default=200, ge=1, le=10_000_000)
    together_share: float = Field(default=0.8, gt=0, le=1)
    min_runs: int = Field(default=3, ge=1, le=1_000_000)
    loop_repeats: int = Field(default=3, ge=2, le=1_000_000)

    def thresholds(self) -> Any:
        """As the analytics take them (an ``analytics.recommend.Thresholds``)."""
        from .analytics.recommend import Thresholds

        return Thresholds(**self.model_dump())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AUREN_", extra="ignore", validate_default=True, frozen=True
    )

    redis_url: str | None = None
    stream: str = "auren:events"
    stream_maxlen: int = Field(1_000_000, gt=0)
    # N > 1 spreads the stream over N keys (auren_core.streams.shards); 1 = the one key
    stream_shards: int = Field(1, ge=1, le=1024)
    pg_dsn: str | None = None
    chroma_path: Path | None = None
    chroma_url: str | None = None
    data_dir: Path = Field(default_factory=default_data_dir)
    # embedded servers: False refuses to start them (a configured-only deployment)
    embedded: bool = True
    # look for servers on localhost's default ports before falling back to embedded ones
    probe_local: bool = True
    budget_usd_per_hour: float | None = Field(None, gt=0)
    active_window_s: float = Field(300.0, gt=0)
    redact_queries: bool = False
    # per-call tool costs in USD, e.g. {"web_search": 0.005}
    tool_costs: dict[str, float] = Field(default_factory=dict)
    # memory tier prices per operation and the embedding model, e.g. {"chromadb": 1e-5}
    tier_costs: TierCosts = Field(default_factory=lambda: TierCosts())
    # alerts (budget, forecast, loops, stalls) POSTed here by top and serve-ws (docs/alerts.md)
    alert_webhook: str | None = None
    # when the analytics' optimisation recommendations fire (analytics/recommend.py)
    recommendations: RecommendationThresholds = Field(
        default_factory=lambda: RecommendationThresholds()
    )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        scheme = urlsplit(v).scheme
        if scheme not in (
            "redis", "rediss", "unix", "valkey", "valkeys",
            "redis+cluster", "rediss+cluster", "valkey+cluster", "valkeys+cluster",
        ):
            # the value given is named by load_settings (password redacted)
            raise ValueError(
                "must start with redis://, rediss://, unix:// or redis+cluster://"
            )
        return v

    @field_validator("pg_dsn")
    @classmethod
    def _check_pg_dsn(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if urlsplit(v).scheme not in ("postgres", "postgresql"):
            raise ValueError("must start with postgresql://")
        return v

    @field_validator("chroma_url")
    @classmethod
    def _check_chroma_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("must start with http:// or https://")
        return v

    @field_validator("alert_webhook")
    @classmethod
    def _check_alert_webhook(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        from .alerts import check_webhook_url

        return check_webhook_url(v)

    @field_validator("stream")
    @classmethod
    def _check_stream(cls, v: str) -> str:
        if not v or len(v) > 256 or any(ord(c) < 32 for c in v):
            raise ValueError("must be 1-256 printable characters")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=_toml_path()),
        )


def _shown(value: Any) -> str:
    """The value a user gave, as an error message shows it: quoted, a URL's password
    replaced by ``***``, cut at 200 characters."""
    if isinstance(value, str) and "://" in value:
        from .backends import redact_url

        value = redact_url(value)
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def load_settings(**overrides: Any) -> Settings:
    """Settings with ``overrides`` (CLI flags; ``None`` means "not given") on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = str(err["msg"]).removeprefix("Value error, ")
        shown = _shown(err.get("input"))
        raise ConfigError(f"invalid setting {where}: {msg} (got {shown})") from None
    except (OSError, ValueError) as exc:  # unreadable or malformed auren.toml
        raise ConfigError(f"cannot read configuration {_toml_path()}: {exc}") from None
