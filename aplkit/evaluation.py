"""Win-rate of πθ_t against a baseline on held-out prompts (Algorithm 1, line 13; paper §5.5).

The baseline is θ0's own completions (IMDB) or the human references (TLDR). θ0's test
completions are sampled once per run at the test temperature and stored in the run
folder, so every waypoint is judged against the same baseline text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from aplkit.records import Label


@dataclass
class WinRate:
    win_rate: float
    stderr: float
    n: int  # valid judgements (ties included, invalid excluded)
    ties: int
    invalid: int

    def as_row(self) -> dict:
        return {"win_rate": self.win_rate, "stderr": self.stderr, "n": self.n, "ties": self.ties, "invalid": self.invalid}


def win_rate(labels: Sequence[Label], policy_index: int = 1) -> WinRate:
    """Mean of per-prompt scores (win 1, tie ½, loss 0) and its standard error s/√n.

    ``policy_index`` says which side of each pair the policy's completion was (y1 by convention).
    Invalid verdicts are excluded and counted, never scored.
    """
    scores: list[float] = []
    ties = invalid = 0
    for lab in labels:
        if lab.tie:
            scores.append(0.5)
            ties += 1
        elif lab.preferred is None:
            invalid += 1
        else:
            scores.append(1.0 if lab.preferred == policy_index else 0.0)
    n = len(scores)
    if n == 0:
        return WinRate(float("nan"), float("nan"), 0, ties, invalid)
    mean = sum(scores) / n
    var = sum((s - mean) ** 2 for s in scores) / (n - 1) if n > 1 else 0.0
    return WinRate(mean, math.sqrt(var / n), n, ties, invalid)


def resolve_against(against: str, has_references: bool, oracle_kind: str | None = None) -> str:
    """``auto`` → the human references when the task has them (TLDR), else θ0's completions (IMDB).

    The ROUGE oracle scores a summary by its overlap with that same human reference, so the
    reference would score F1 = 1 and the policy could never win: with ROUGE, ``auto`` is θ0 and an
    explicit ``reference`` is refused (``config.validate`` refuses it before anything loads).
    """
    if against == "auto":
        return "reference" if has_references and oracle_kind != "rouge" else "initial"
    if against == "reference" and not has_references:
        raise ValueError("evaluation.against=reference but the test prompts have no reference completions")
    if against == "reference" and oracle_kind == "rouge":
        raise ValueError(ROUGE_AGAINST_REFERENCE)
    return against


ROUGE_AGAINST_REFERENCE = (
    "evaluation.against: 'reference' cannot be judged by oracle.kind=rouge (ROUGE of the reference against itself is 1, "
    "so the win-rate would be 0 by construction); use evaluation.against=initial or auto"
)
