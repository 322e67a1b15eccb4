"""Typed records that flow between the steps of Algorithm 1.

Every record is a plain dataclass so it round-trips through the run folder's
JSONL files with ``asdict`` / ``from_dict`` and nothing else.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal


def sigmoid(x: float) -> float:
    """Numerically stable logistic function."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


Choice = Literal["A", "B", "tie"]


@dataclass(frozen=True)
class Prompt:
    """One prompt x from the pool; ``reference`` is a human completion when the task has one (TLDR)."""

    id: str
    text: str
    reference: str | None = None
    label: int | None = None  # source label (IMDB sentiment), kept for analysis only


@dataclass
class Candidate:
    """A prompt with two sampled completions and what the acquisition scorer thought of it.

    ``y0``/``y1`` are the texts the oracle reads; ``y0_ids``/``y1_ids`` the token ids that were
    sampled (EOS included when the model stopped), which every log-prob is computed on. A scorer
    that ranks prompts before any pair exists (entropy) leaves the pair None until it is chosen.
    """

    prompt: Prompt
    y0: str | None = None
    y1: str | None = None
    score: float = 0.0
    reward0: float | None = None  # implicit reward r̂(x, y0) = β(log πθ − log πθ0); None until computed
    reward1: float | None = None
    entropy: float | None = None
    y0_ids: list[int] | None = None
    y1_ids: list[int] | None = None

    @property
    def has_pair(self) -> bool:
        return self.y0 is not None and self.y1 is not None

    @property
    def bt_prob(self) -> float | None:
        """Bradley–Terry p(y1 ≻ y0 | x) = σ(r̂1 − r̂0) under the implicit reward model."""
        if self.reward0 is None or self.reward1 is None:
            return None
        return sigmoid(self.reward1 - self.reward0)


@dataclass(frozen=True)
class Comparison:
    """Exactly what an oracle is shown: a prompt and two completions in display order A, B."""

    prompt: str
    a: str
    b: str


@dataclass
class Verdict:
    """An oracle's answer about one Comparison, in display terms (A/B).

    ``choice`` is None when the answer could not be parsed after the allowed retries;
    such a verdict is recorded and counted but never becomes a training label.
    """

    choice: Choice | None
    raw: str = ""
    p_a: float | None = None  # calibrated P(A preferred) where the oracle exposes one
    tokens_in: int = 0
    tokens_out: int = 0
    attempts: int = 1

    @property
    def valid(self) -> bool:
        return self.choice is not None


@dataclass
class Label:
    """A verdict mapped back from display order to the pair's own order (y0, y1)."""

    preferred: int | None  # 1 if y1 ≻ y0, 0 if y0 ≻ y1, None for tie/invalid
    tie: bool
    shown_order: str  # "01": A=y0, B=y1; "10": A=y1, B=y0
    verdict: Verdict
    cached: bool = False
    flipped: bool = False  # set by the simulated-noise option, never by a real oracle

    @property
    def p_y1(self) -> float | None:
        """P(y1 ≻ y0) from the oracle's own probability, in pair order."""
        if self.verdict.p_a is None:
            return None
        return self.verdict.p_a if self.shown_order == "10" else 1.0 - self.verdict.p_a


@dataclass
class Preference:
    """A labelled pair ready for DPO: (x, y_w, y_l).

    The ids, when given, are the sampled tokens and are trained on as they are; a pair built
    from text alone (a user's own data) is tokenised.
    """

    prompt: str
    chosen: str
    rejected: str
    chosen_ids: list[int] | None = None
    rejected_ids: list[int] | None = None


def to_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


__all__ = [
    "Candidate",
    "Choice",
    "Comparison",
    "Label",
    "Preference",
    "Prompt",
    "Verdict",
    "from_dict",
    "sigmoid",
    "to_dict",
]
