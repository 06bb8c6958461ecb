"""The demo specialists' own tools (CrewAI BaseTools; importing this imports crewai)."""

from __future__ import annotations

import hashlib
from typing import Any

from crewai.tools import BaseTool
from pydantic import BaseModel, Field

from .. import emitter as api

__all__ = ["BiomarkerLookupTool", "RecordHypothesisTool"]


class _MarkerInput(BaseModel):
    marker: str = Field(description="Biomarker name, e.g. hrv, cortisol, ferritin, sleep_score")


class BiomarkerLookupTool(BaseTool):
    """The user's latest value for a biomarker (a deterministic lab stand-in for the demo)."""

    name: str = "biomarker_lookup"
    description: str = "Latest lab or wearable value for one biomarker of the user."
    args_schema: type[BaseModel] = _MarkerInput

    def _run(self, marker: str, **_: Any) -> str:
        h = int.from_bytes(hashlib.blake2b(marker.encode(), digest_size=2).digest(), "big")
        ranges = {
            "hrv": ("ms", 35, 85),
            "cortisol": ("ug/dL", 6, 23),
            "ferritin": ("ng/mL", 20, 250),
            "sleep_score": ("/100", 55, 92),
        }
        unit, lo, hi = ranges.get(marker.lower(), ("units", 1, 100))
        value = lo + h % (hi - lo + 1)
        return f"{marker}: {value} {unit} (7-day median)"


class _HypothesisInput(BaseModel):
    hypothesis_id: str
    status: str = Field(description="formed, updated, validated or rejected")
    confidence: float = Field(ge=0, le=1)
    statement: str


class RecordHypothesisTool(BaseTool):
    """Publishes a ``hypothesis`` event for the agent that holds the tool."""

    name: str = "record_hypothesis"
    description: str = "Record that you formed, updated, validated or rejected a hypothesis."
    args_schema: type[BaseModel] = _HypothesisInput
    agent_id: str

    def _run(
        self, hypothesis_id: str, status: str, confidence: float, statement: str, **_: Any
    ) -> str:
        if status not in ("formed", "updated", "validated", "rejected"):
            return f"status must be formed, updated, validated or rejected, not {status!r}"
        api.hypothesis(
            hypothesis_id,
            status,  # type: ignore[arg-type]
            agent=self.agent_id,
            confidence=confidence,
            statement=statement,
        )
        return f"hypothesis {hypothesis_id} {status} (confidence {confidence:.2f})"
