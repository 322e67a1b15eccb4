"""ROUGE reference oracle for summaries (TL;DR): an offline PROXY for the paper's GPT-4 judge.

It prefers the summary with the higher mean ROUGE-1/2/L F1 against the human reference of the
post. That rewards word overlap with one reference, not quality as GPT-4 judges it, so use it for
free, reproducible mechanics and ablations; win-rates from it are not comparable with the paper's.

A ``Comparison`` carries only prompt/a/b, so the references come in at construction, keyed by the
prompt text exactly as the oracle will be shown it (``RougeOracle.from_prompts(pool)``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from aplkit.oracles.base import Oracle, OracleError, scored_verdict
from aplkit.records import Comparison, Prompt, Verdict

METRICS = ("rouge1", "rouge2", "rougeL")


class RougeOracle(Oracle):
    """Prefers the completion with the higher mean ROUGE F1 against the prompt's reference."""

    kind = "rouge"

    def __init__(
        self, references: Mapping[str, str], tau: float = 0.05, metrics: Sequence[str] = METRICS, use_stemmer: bool = True
    ) -> None:
        """``references``: prompt text → human reference. ``tau``: a ROUGE gap of τ gives p_a = σ(1) ≈ 0.73."""
        from rouge_score import rouge_scorer

        if tau <= 0:
            raise OracleError(f"rouge oracle: tau must be > 0, got {tau}")
        if not references:
            raise OracleError("rouge oracle: no references given (the task needs a reference summary per prompt)")
        self.references = dict(references)
        self.tau = float(tau)
        self.metrics = tuple(metrics)
        self.use_stemmer = use_stemmer
        self._scorer = rouge_scorer.RougeScorer(list(self.metrics), use_stemmer=use_stemmer)
        h = hashlib.sha256()
        for p in sorted(self.references):
            h.update(f"{p}\x1f{self.references[p]}\x1e".encode())
        self._refs_hash = h.hexdigest()[:16]

    @classmethod
    def from_prompts(cls, prompts: Iterable[Prompt], **kw) -> RougeOracle:
        """References from Prompt records; prompts without one are left out (judging them raises)."""
        return cls({p.text: p.reference for p in prompts if p.reference}, **kw)

    @property
    def identity(self) -> str:
        stem = "stem" if self.use_stemmer else "nostem"
        return f"rouge:{'+'.join(self.metrics)}:{stem}:tau={self.tau:g}:refs={self._refs_hash}"

    def score(self, reference: str, summary: str) -> float:
        """Mean F1 over the metrics, in [0, 1]."""
        s = self._scorer.score(reference, summary)
        return sum(s[m].fmeasure for m in self.metrics) / len(self.metrics)

    def _references(self, prompts: Sequence[str]) -> list[str]:
        missing = [p for p in prompts if p not in self.references]
        if missing:  # before scoring anything: one clear line
            head = " ".join(missing[0].split())[:60]
            raise OracleError(f"rouge oracle: no reference for {len(missing)} prompt(s), e.g. '{head}...'")
        return [self.references[p] for p in prompts]

    def pointwise(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """``score`` of each completion against its prompt's reference: the s(x, y) that ``judge`` compares."""
        refs = self._references(prompts)
        return [self.score(r, c) for r, c in zip(refs, completions, strict=True)]

    def judge(self, items: Sequence[Comparison]) -> list[Verdict]:
        items = list(items)
        refs = self._references([c.prompt for c in items])
        return [scored_verdict(self.score(r, c.a), self.score(r, c.b), self.tau) for r, c in zip(refs, items, strict=True)]
