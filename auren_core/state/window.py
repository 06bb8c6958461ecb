"""Rolling-window accumulators: time buckets with running totals and amortised expiry.

Every windowed number is kept twice: per bucket (``BUCKET_S`` seconds of event
time) and as a running total. When the window moves, :class:`Expiry` subtracts
the buckets that fell out, so reading a total costs O(1) however many agents,
items or events there are, and memory is bounded by the window. An event whose
bucket already expired when it arrives (late, out of order) only counts in the
lifetime figures.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from .. import rules

__all__ = [
    "BUCKET_S",
    "Expiry",
    "KeyedCounts",
    "LogHistogram",
    "NestedCounts",
    "Sums",
]

BUCKET_S = 10.0
K = TypeVar("K", bound=Hashable)


class _Droppable(Protocol):
    def drop(self, b: int) -> None: ...


class Expiry:
    """Which accumulators hold which bucket, so the window can move in O(expired)."""

    __slots__ = ("cutoff", "due")

    def __init__(self) -> None:
        self.due: dict[int, list[_Droppable]] = {}
        # buckets with an index <= cutoff are gone
        self.cutoff: int = -(2**62)

    def schedule(self, b: int, acc: _Droppable) -> None:
        lst = self.due.get(b)
        if lst is None:
            self.due[b] = [acc]
        else:
            lst.append(acc)

    def advance(self, cutoff: int) -> None:
        if cutoff <= self.cutoff:
            return
        due = self.due
        if due:
            if cutoff - self.cutoff <= len(due):
                gone = [b for b in range(self.cutoff + 1, cutoff + 1) if b in due]
            else:
                gone = sorted(b for b in due if b <= cutoff)
            for b in gone:
                for acc in due.pop(b):
                    acc.drop(b)
        self.cutoff = cutoff


class Sums:
    """A fixed vector of float sums per bucket plus the running window total."""

    __slots__ = ("_lb", "_lbk", "buckets", "dropped", "expiry", "n", "tot")

    def __init__(self, n: int, expiry: Expiry) -> None:
        self.n = n
        self.dropped = 0  # buckets dropped so far: ``tot`` changed without an addition
        self.tot: list[float] = [0.0] * n
        self.buckets: dict[int, list[float]] = {}
        self.expiry = expiry
        self._lb: int | None = None  # the last bucket used: most events land in it
        self._lbk: list[float] = []

    def at(self, b: int) -> list[float]:
        if b == self._lb:
            return self._lbk
        bk = self.buckets.get(b)
        if bk is None:
            bk = self.buckets[b] = [0.0] * self.n
            self.expiry.schedule(b, self)
        self._lb = b
        self._lbk = bk
        return bk

    def drop(self, b: int) -> None:
        if b == self._lb:
            self._lb = None
        bk = self.buckets.pop(b, None)
        if bk is not None:
            self.dropped += 1
            tot = self.tot
            for i, v in enumerate(bk):
                tot[i] -= v
            # float subtraction leaves dust: snap an emptied window back to zero
            if not self.buckets:
                self.tot = [0.0] * self.n

    def __bool__(self) -> bool:
        return bool(self.buckets)


class KeyedCounts(Generic[K]):
    """Windowed counts per key, with a cap on distinct keys (overflow is counted)."""

    __slots__ = ("buckets", "expiry", "max_keys", "overflow", "tot", "ver")

    def __init__(self, expiry: Expiry, max_keys: int = 5000) -> None:
        self.ver = 0  # changes whenever ``tot`` does (lets readers cache derived views)
        self.tot: dict[K, int] = {}
        self.buckets: dict[int, dict[K, int]] = {}
        self.expiry = expiry
        self.max_keys = max_keys
        self.overflow = 0  # additions refused because the key cap was reached (lifetime)

    def add(self, b: int, key: K, n: int = 1) -> bool:
        self.ver += 1
        tot = self.tot
        cur = tot.get(key)
        if cur is None:
            if len(tot) >= self.max_keys:
                self.overflow += n
                return False
            tot[key] = n
        else:
            tot[key] = cur + n
        bk = self.buckets.get(b)
        if bk is None:
            bk = self.buckets[b] = {}
            self.expiry.schedule(b, self)
        bk[key] = bk.get(key, 0) + n
        return True

    def drop(self, b: int) -> None:
        bk = self.buckets.pop(b, None)
        if not bk:
            return
        self.ver += 1
        tot = self.tot
        for k, v in bk.items():
            left = tot.get(k, 0) - v
            if left > 0:
                tot[k] = left
            else:
                tot.pop(k, None)
        # a dict keeps its table when emptied: thousands of idle agents' tools and partners
        # held kilobytes each for nothing
        if not tot:
            self.tot = {}
        if not self.buckets:
            self.buckets = {}


_LO_MS = rules.HIST_LO_MS
_INV_LO = 1.0 / _LO_MS
_INV_LOG_R = 1.0 / math.log(rules.HIST_RATIO)
_MAX_BIN = rules.HIST_MAX_BIN


class LogHistogram:
    """Latency bins ~5% wide (:mod:`auren_core.rules`, "Percentiles"), windowed through
    :class:`KeyedCounts`."""

    LO_MS = rules.HIST_LO_MS
    RATIO = rules.HIST_RATIO
    MAX_BIN = rules.HIST_MAX_BIN

    __slots__ = ("counts",)

    def __init__(self, expiry: Expiry) -> None:
        self.counts: KeyedCounts[int] = KeyedCounts(expiry, max_keys=self.MAX_BIN + 2)

    bin_of = staticmethod(rules.bin_of)
    value_of = staticmethod(rules.bin_value)

    def add(self, bucket: int, ms: float) -> None:
        # rules.bin_of, inlined (same formula): this runs for every tier of every lookup
        if ms > _LO_MS:
            b = int(math.log(ms * _INV_LO) * _INV_LOG_R) + 1 if ms < 1e12 else _MAX_BIN
            self.counts.add(bucket, b if b < _MAX_BIN else _MAX_BIN)
        else:
            self.counts.add(bucket, 0)

    def quantiles(self, qs: tuple[float, ...]) -> tuple[float | None, ...]:
        return rules.quantiles(self.counts.tot, qs)


class NestedCounts:
    """Windowed counts per (row, column), readable per row (knowledge item x agent)."""

    __slots__ = (
        "buckets",
        "cells",
        "expiry",
        "max_cells",
        "max_cols",
        "max_rows",
        "overflow",
        "row_tot",
        "tot",
    )

    def __init__(
        self,
        expiry: Expiry,
        max_rows: int = 5000,
        max_cols: int = 500,
        max_cells: int = 50_000,
    ) -> None:
        self.cells = 0
        self.max_cells = max_cells
        self.tot: dict[str, dict[str, int]] = {}
        self.row_tot: dict[str, int] = {}
        self.buckets: dict[int, dict[tuple[str, str], int]] = {}
        self.expiry = expiry
        self.max_rows = max_rows
        self.max_cols = max_cols
        self.overflow = 0

    def add(self, b: int, row: str, col: str) -> bool:
        cols = self.tot.get(row)
        if cols is None:
            if len(self.tot) >= self.max_rows:
                self.overflow += 1
                return False
            cols = self.tot[row] = {}
        cur = cols.get(col)
        if cur is None:
            if len(cols) >= self.max_cols or self.cells >= self.max_cells:
                self.overflow += 1
                if not cols:
                    del self.tot[row]
                return False
            cols[col] = 1
            self.cells += 1
        else:
            cols[col] = cur + 1
        rt = self.row_tot
        rt[row] = rt.get(row, 0) + 1
        bk = self.buckets.get(b)
        if bk is None:
            bk = self.buckets[b] = {}
            self.expiry.schedule(b, self)
        key = (row, col)
        bk[key] = bk.get(key, 0) + 1
        return True

    def drop(self, b: int) -> None:
        bk = self.buckets.pop(b, None)
        if not bk:
            return
        tot, rt = self.tot, self.row_tot
        for (row, col), v in bk.items():
            cols = tot.get(row)
            if cols is None:
                continue
            left = cols.get(col, 0) - v
            if left > 0:
                cols[col] = left
            elif col in cols:
                del cols[col]
                self.cells -= 1
                if not cols:
                    del tot[row]
            rleft = rt.get(row, 0) - v
            if rleft > 0:
                rt[row] = rleft
            else:
                rt.pop(row, None)
