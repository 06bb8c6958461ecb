"""Costs from genai-prices: same figures as the library, unknown is None (never 0)."""

from __future__ import annotations

import time

import genai_prices
import pytest

from auren_core import pricing
from auren_core.pricing import price


def _lib(model: str, provider: str | None, inp: int, out: int, cached: int = 0) -> float:
    usage = genai_prices.Usage(
        input_tokens=inp, output_tokens=out, cache_read_tokens=cached or None
    )
    return float(genai_prices.calc_price(usage, model, provider_id=provider).total_price)


@pytest.mark.parametrize(
    ("model", "provider", "inp", "out", "cached"),
    [
        ("gpt-4o-mini", "openai", 1000, 500, 0),
        ("gpt-4o-mini", "openai", 5000, 120, 2048),
        ("gpt-4o", "openai", 1, 1, 0),
        ("claude-3-5-haiku-latest", "anthropic", 12345, 678, 1000),
        ("gpt-4o-mini", "openai", 0, 0, 0),
    ],
)
def test_cost_matches_the_price_library(
    model: str, provider: str, inp: int, out: int, cached: int
) -> None:
    cost, source = price(model, provider, inp, out, cached)
    assert source == pricing.SOURCE
    assert cost == pytest.approx(_lib(model, provider, inp, out, cached), rel=1e-9, abs=1e-15)


def test_tiered_price_goes_through_the_library() -> None:
    # gemini-2.5-pro charges more above 200k input tokens: not a linear rate
    small, _ = price("gemini-2.5-pro", "google", 100_000, 1000)
    big, _ = price("gemini-2.5-pro", "google", 300_000, 1000)
    assert small == pytest.approx(_lib("gemini-2.5-pro", "google", 100_000, 1000))
    assert big == pytest.approx(_lib("gemini-2.5-pro", "google", 300_000, 1000))
    assert big is not None and small is not None
    assert big / 300_000 > small / 100_000  # the per-token rate went up


def test_litellm_style_model_name_and_provider_fallbacks() -> None:
    direct, _ = price("gpt-4o-mini", "openai", 1000, 100)
    assert price("openai/gpt-4o-mini", "litellm", 1000, 100)[0] == pytest.approx(direct)
    assert price("openai/gpt-4o-mini", None, 1000, 100)[0] == pytest.approx(direct)
    # a provider genai-prices does not know: the model name still identifies it
    assert price("gpt-4o-mini", "my-proxy", 1000, 100)[0] == pytest.approx(direct)


@pytest.mark.parametrize("model", ["auren-local-7b", "", None, "no/such-model-anywhere"])
def test_unknown_model_is_none_never_zero(model: str | None) -> None:
    assert price(model, "openai", 1000, 100) == (None, pricing.UNKNOWN)


def test_cached_tokens_are_cheaper_and_capped_at_input() -> None:
    full, _ = price("gpt-4o-mini", "openai", 4096, 10, 0)
    half, _ = price("gpt-4o-mini", "openai", 4096, 10, 2048)
    assert full is not None and half is not None and half < full
    # more cached than input is nonsense: treated as all input cached
    assert price("gpt-4o-mini", "openai", 100, 10, 10_000)[0] == pytest.approx(
        _lib("gpt-4o-mini", "openai", 100, 10, 100)
    )


def test_bad_counts_do_not_raise() -> None:
    assert price("gpt-4o-mini", "openai", -5, -1, -3) == price("gpt-4o-mini", "openai", 0, 0, 0)


def test_lookup_is_cached_cheap() -> None:
    price("gpt-4o-mini", "openai", 1, 1)
    price("auren-local-7b", "openai", 1, 1)
    t0 = time.perf_counter()
    for i in range(2000):
        price("gpt-4o-mini", "openai", 1000 + i, 100 + i, i)
        price("auren-local-7b", "openai", 1000 + i, 100, 0)
    per_call_us = (time.perf_counter() - t0) / 4000 * 1e6
    # the library's own calc_price takes ~100 us per call; cached resolution is far below
    assert per_call_us < 50, per_call_us
