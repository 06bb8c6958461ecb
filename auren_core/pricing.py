"""LLM call costs from a maintained price library (genai-prices).

``price(model, provider, input_tokens, output_tokens, cached_tokens)`` returns
``(cost_usd, cost_source)``. A model the library does not know gets
``(None, "unknown")`` -- never 0, so an unknown price is never mistaken for a
free call. ``input_tokens`` counts the whole prompt, cached part included (the
OpenAI and CrewAI convention, and genai-prices' too); ``cached_tokens`` is the
part of it read from the provider's prompt cache (billed at the cache price).

Model resolution (the expensive part, including failed look-ups) is cached, so
the instrumentation's handler pays a dictionary look-up and a few multiplies.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

__all__ = ["SOURCE", "UNKNOWN", "embedding_usd_per_token", "price", "resolve"]

SOURCE: Final = "genai-prices"
UNKNOWN: Final = "unknown"

_lock = threading.Lock()


@lru_cache(maxsize=512)
def resolve(model: str, provider: str | None) -> tuple[Any, Any] | None:
    """``(provider_info, model_info)`` from genai-prices, or None when unknown.

    Tries the given provider, then a ``provider/model`` prefix (litellm style),
    then the library's own provider inference from the model name.
    """
    from genai_prices import data_snapshot

    snap = data_snapshot.get_snapshot()
    model = model.strip()
    if not model:
        return None
    attempts: list[tuple[str, str | None]] = []
    if provider:
        attempts.append((model, provider.lower()))
    if "/" in model:
        prefix, rest = model.split("/", 1)
        attempts.append((rest, prefix.lower()))
        attempts.append((rest, None))
    attempts.append((model, None))
    for ref, prov in attempts:
        try:
            with _lock:  # the snapshot's own look-up cache is a plain dict
                return snap.find_provider_model(ref, None, prov, None)  # type: ignore[no-any-return]
        except LookupError:
            continue
    return None


def _library_cost(found: tuple[Any, Any], inp: int, out: int, cached: int, when: datetime) -> float:
    from genai_prices import Usage

    prov, info = found
    usage = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cached or None)
    return float(info.calc_price(usage, prov, genai_request_timestamp=when).total_price)


@lru_cache(maxsize=512)
def _rates(model: str, provider: str | None, day: str) -> tuple[float, float, float] | None:
    """Per-token (input, cached input, output) USD rates for one UTC day.

    Derived from the library itself with unit usages, so the figures are its
    figures. Only used when the model's price is linear in token counts
    (no tiers); ``None`` means: ask the library for every call.
    """
    from genai_prices.types import TieredPrices

    found = resolve(model, provider)
    if found is None:
        return None
    when = datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)
    prices = found[1].get_prices(when)
    if any(isinstance(v, TieredPrices) for v in vars(prices).values()):
        return None
    m = 1_000_000
    r_in = _library_cost(found, m, 0, 0, when) / m
    r_cached = _library_cost(found, m, 0, m, when) / m
    r_out = _library_cost(found, 0, m, 0, when) / m
    return r_in, r_cached, r_out


_day: tuple[int, str] = (-1, "")


def _today() -> str:
    """Today's UTC date, recomputed once a minute (the handler calls this per event)."""
    global _day
    minute = int(time.time() // 60)
    if _day[0] != minute:
        _day = (minute, datetime.now(tz=UTC).date().isoformat())
    return _day[1]


def _cost(model: str, provider: str | None, inp: int, out: int, cached: int) -> float | None:
    rates = _rates(model, provider, _today())
    if rates is not None:
        r_in, r_cached, r_out = rates
        return (inp - cached) * r_in + cached * r_cached + out * r_out
    found = resolve(model, provider)
    if found is None:
        return None
    return _library_cost(found, inp, out, cached, datetime.now(tz=UTC))


def price(
    model: str | None,
    provider: str | None,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
) -> tuple[float | None, str]:
    """Cost in USD of one call and where the figure comes from. Never raises."""
    if not model:
        return None, UNKNOWN
    try:
        cost = _cost(
            model,
            provider or None,
            max(0, int(input_tokens)),
            max(0, int(output_tokens)),
            min(max(0, int(cached_tokens)), max(0, int(input_tokens))),
        )
    except Exception:
        return None, UNKNOWN
    if cost is None:
        return None, UNKNOWN
    return cost, SOURCE


def embedding_usd_per_token(model: str | None) -> float | None:
    """USD per input token of an embedding model (``text-embedding-3-small``,
    ``openai/text-embedding-3-small`` or an embedder name such as
    ``openai:text-embedding-3-small``), from genai-prices; None when no model is given or
    the library does not know it (never 0 for an unknown price)."""
    if not model or not model.strip():
        return None
    provider: str | None = None
    name = model.strip()
    if ":" in name:
        provider, name = name.split(":", 1)
    if provider is None and "/" not in name and name.startswith("text-embedding-"):
        provider = "openai"  # OpenAI's embedding names; the library wants the provider
    m = 1_000_000
    cost, _ = price(name, provider, m, 0)
    return None if cost is None else cost / m
