"""Dashboard panes: each renders the frozen state handed down to it, nothing more."""

from .agents import AgentsTable
from .base import Pane
from .collab import CollabMatrix
from .economics import Economics
from .eventlog import EventLog, LogFilter
from .flows import FlowsPane
from .health import HealthLine, TitleBar
from .knowledge import KnowledgeHeatmap
from .tiers import TierFlow

__all__ = [
    "AgentsTable",
    "CollabMatrix",
    "Economics",
    "EventLog",
    "FlowsPane",
    "HealthLine",
    "KnowledgeHeatmap",
    "LogFilter",
    "Pane",
    "TierFlow",
    "TitleBar",
]
