"""The demo's traffic: who takes part in each user query, and what each agent does.

Pure and seeded, so tests can predict it. Traffic changes over time: bursts and quiet
spells, an agent that joins late, one that goes idle, an occasional failure and a loop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["KNOWLEDGE", "SPECIALISTS", "Query", "Specialist", "pause_after", "plan_query"]


@dataclass(frozen=True, slots=True)
class Specialist:
    role: str
    goal: str
    backstory: str
    markers: tuple[str, ...]
    joins_at: int = 0  # query number from which the agent takes part
    leaves_at: int | None = None  # after this query the agent goes idle


SPECIALISTS: tuple[Specialist, ...] = (
    Specialist(
        "Neuroscientist",
        "Explain cognitive and mood changes from the user's data",
        "A cognitive neuroscientist who links sleep, stress and performance.",
        ("cortisol", "hrv"),
    ),
    Specialist(
        "Sleep Specialist",
        "Find what limits the user's sleep quality",
        "A clinical sleep physiologist reading wearable sleep data.",
        ("sleep_score", "hrv"),
    ),
    Specialist(
        "Nutritionist",
        "Adjust nutrition to support recovery and sleep",
        "A sports dietitian focused on timing and protein.",
        ("ferritin",),
    ),
    Specialist(
        "Training Coach",
        "Balance training load and recovery",
        "A strength and conditioning coach who watches load ratios.",
        ("hrv",),
        leaves_at=24,
    ),
    Specialist(
        "Recovery Analyst",
        "Spot overreaching early",
        "A data scientist who models recovery from HRV and sleep.",
        ("hrv", "sleep_score"),
        joins_at=6,
    ),
)
COORDINATOR = "AUREN Coordinator"

# (item id, text, topic): seeded into PostgreSQL and ChromaDB at start
KNOWLEDGE: tuple[tuple[str, str, str], ...] = (
    ("sleep/sws-memory", "Slow-wave sleep consolidates declarative memory", "sleep"),
    ("sleep/caffeine", "Caffeine after 2 pm delays sleep onset and cuts deep sleep", "sleep"),
    ("sleep/wake-time", "A fixed wake time stabilises circadian rhythm", "sleep"),
    ("sleep/temperature", "Bedroom temperature near 18 C improves deep sleep", "sleep"),
    ("neuro/reward", "Sleep loss amplifies reward circuit reactivity to food", "neuro"),
    ("neuro/working-memory", "Working memory declines after sleep restriction", "neuro"),
    ("neuro/cortisol", "Cortisol awakening response reflects stress load", "neuro"),
    ("nutrition/protein", "Protein intake of 1.6 g per kg supports muscle repair", "nutrition"),
    ("nutrition/magnesium", "Magnesium deficiency is linked to poor sleep quality", "nutrition"),
    ("nutrition/late-meals", "Late high glycaemic meals worsen sleep quality", "nutrition"),
    ("training/acwr", "An acute chronic workload ratio above 1.3 raises injury risk", "training"),
    ("training/hrv", "Heart rate variability drops after intense interval sessions", "training"),
    ("training/zone2", "Zone 2 endurance volume supports recovery capacity", "training"),
)

# lookups: exact words of an item (structured hit, then cached), paraphrases (semantic
# hit), and questions nobody can answer (knowledge gaps)
QUERIES: dict[str, tuple[str, ...]] = {
    "sleep": (
        "slow-wave sleep consolidates memory",
        "caffeine sleep onset",
        "how does room temperature change deep sleep",
        "does melatonin timing shift chronotype",
    ),
    "neuro": (
        "reward circuit sleep loss",
        "working memory after sleep restriction",
        "why is stress hormone high in the morning",
        "neurofeedback protocols for focus",
    ),
    "nutrition": (
        "protein intake muscle repair",
        "magnesium poor sleep",
        "are late dinners bad for sleep",
        "ketone esters and cognition",
    ),
    "training": (
        "acute chronic workload ratio injury",
        "heart rate variability intervals",
        "easy endurance volume and recovery",
        "blood flow restriction for older adults",
    ),
}
TOPIC = {
    "Neuroscientist": "neuro",
    "Sleep Specialist": "sleep",
    "Nutritionist": "nutrition",
    "Training Coach": "training",
    "Recovery Analyst": "training",
}


@dataclass(frozen=True, slots=True)
class Query:
    number: int
    agents: tuple[str, ...]  # specialists in this crew
    description: str  # the coordinator's task, with its plan
    fails: bool
    loops: bool


def _specialist_plan(rng: random.Random, role: str, n: int, *, fail: bool, loop: bool) -> str:
    topic = TOPIC[role]
    # repeat popular queries often (Redis hits), sometimes a paraphrase or an unknown
    query = rng.choices(QUERIES[topic], weights=(6, 4, 3, 1))[0]
    spec = next(s for s in SPECIALISTS if s.role == role)
    steps = [f'lookup "{query}"']
    if loop:
        steps += [f'lookup "{query}"'] * 4
    if rng.random() < 0.6:
        steps.append(f"labs {rng.choice(spec.markers)}")
    if fail:
        steps.append("fail")
    if rng.random() < 0.5:
        status = rng.choice(("formed", "updated", "validated", "validated", "rejected"))
        steps.append(f"hypothesis H-{topic}-{n % 7} {status} {rng.uniform(0.3, 0.95):.2f}")
    steps.append("final")
    return " | ".join(steps)


def plan_query(n: int, seed: int = 7) -> Query:
    """The ``n``-th user query: its crew and every agent's plan."""
    rng = random.Random(seed * 1_000_003 + n)
    present = [
        s.role for s in SPECIALISTS if s.joins_at <= n and (s.leaves_at is None or n <= s.leaves_at)
    ]
    k = min(len(present), rng.choice((1, 2, 2, 3)))
    chosen = rng.sample(present, k)
    fails = n % 11 == 5
    loops = n % 13 == 9
    subs: list[str] = []
    steps: list[str] = []
    if rng.random() < 0.5:
        steps.append(f'lookup "{rng.choice(QUERIES[TOPIC[chosen[0]]])}"')
    for i, role in enumerate(chosen, 1):
        verb = "delegate" if i == 1 or rng.random() < 0.5 else "ask"
        steps.append(f"{verb} {role} #{i}")
        plan = _specialist_plan(
            rng, role, n, fail=fails and i == len(chosen), loop=loops and i == 1
        )
        subs.append(f"[[plan#{i}: {plan}]]")
    steps.append(f"hypothesis H-user-{n} formed {rng.uniform(0.4, 0.8):.2f}")
    steps.append("final")
    description = (
        f"User query #{n}: review this week's sleep, nutrition and training data and "
        f"recommend the next step. [[plan: {' | '.join(steps)}]] " + " ".join(subs)
    )
    return Query(n, tuple(chosen), description, fails, loops)


def pause_after(n: int, rate: float) -> float:
    """Seconds to wait after query ``n``: a steady pace, bursts and quiet spells."""
    phase = n % 30
    if 10 <= phase < 16:
        base = 0.2  # burst
    elif 22 <= phase < 26:
        base = 6.0  # quiet spell
    else:
        base = 1.5
    return base / max(rate, 0.01)
