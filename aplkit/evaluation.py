"""Win-rate of πθ_t against a baseline on held-out prompts (Algorithm 1, line 13; paper §5.5).

The baseline is θ0's own completions (IMDB) or the human references (TLDR). θ0's test
completions are sampled once per run at the test temperature and stored in the run
folder, so every waypoint is judged against the same baseline text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from aplkit.records import BaselineRow, EvalPairRow, EvalRow, Label
from aplkit.runfolder import RunFolder
from aplkit.seeding import derive_seed


@dataclass
class WinRate:
    win_rate: float
    stderr: float
    n: int  # valid judgements (ties included, invalid excluded)
    ties: int
    invalid: int


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


class Evaluator:
    """Algorithm 1, line 13: the policy's test completions judged against a fixed baseline.

    Holds the test prompts, the baseline (θ0's completions, sampled once and stored in the run
    folder, or the human references) and the oracle, and writes one ``EvalRow`` per waypoint and
    one ``EvalPairRow`` per test prompt.
    """

    def __init__(self, cfg, models, test: Sequence, oracle, ledger, run: RunFolder):
        self.cfg, self.models, self.test, self.oracle, self.ledger, self.run = cfg, models, list(test), oracle, ledger, run
        self.against = resolve_against(cfg.evaluation.against, all(p.reference for p in self.test), cfg.oracle.kind)

    def baseline(self) -> list[str]:
        """θ0's test completions (made once, stored) or the human references."""
        if self.against == "reference":
            return [p.reference or "" for p in self.test]
        rows = self.run.read(BaselineRow)
        if len(rows) == len(self.test):
            return [r.completion for r in rows]
        ys = self.sample(self.models.reference, derive_seed(self.cfg.seed, "baseline"))
        self.run.replace(BaselineRow, [BaselineRow(p.id, p.text, y) for p, y in zip(self.test, ys, strict=True)])
        return ys

    def sample(self, model, seed: int) -> list[str]:
        """One completion per test prompt at the test temperature (paper §5.3: T = 0.25)."""
        from aplkit.generation import sample_completions

        e, a = self.cfg.evaluation, self.cfg.acquisition
        out = sample_completions(
            model,
            self.models.tokenizer,
            [p.text for p in self.test],
            n=1,
            temperature=e.temperature,
            max_new_tokens=e.max_new_tokens or a.max_new_tokens,
            batch_size=e.batch_size,
            seed=seed,
        )
        return [o[0] for o in out]

    def evaluate(self, step: int, acquired: int, trained: int | None = None) -> EvalRow:
        """Win-rate of the current policy (y1) against the baseline (y0) on the test prompts.

        ``acquired`` is t·M labels paid for; ``trained`` the pairs X_P held (ties and invalid answers excluded).
        """
        from aplkit.oracles.labelling import label_pairs

        base = self.baseline()
        ys = self.sample(self.models.policy, derive_seed(self.cfg.seed, step, "eval"))
        pairs = [(p.text, b, y) for p, b, y in zip(self.test, base, ys, strict=True)]
        labels = label_pairs(self.oracle, self.ledger, pairs, derive_seed(self.cfg.seed, "eval-order"), purpose="eval")
        for p, b, y, lab in zip(self.test, base, ys, labels, strict=True):
            self.run.add(EvalPairRow(step, p.id, p.text, b, y, lab.preferred, lab.tie))
        wr = win_rate(labels, policy_index=1)
        row = EvalRow(step, acquired, wr.win_rate, wr.stderr, wr.n, wr.ties, wr.invalid, self.against, trained)
        self.run.add(row)
        return row
