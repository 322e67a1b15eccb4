"""Acquisition functions (paper §3.1): which prompt/completion pairs are worth an oracle label.

One step of acquisition (Algorithm 1, lines 6–9) is ``acquire``:

    prompts    = sample S prompts (J×S for entropy+certainty)      line 6
    candidates = scorer.propose(ctx, prompts)   # generate pairs     line 7
    scores     = scorer.score(ctx, candidates)                       line 8
    batch      = top-M candidates by score                           line 9

A scorer is a small class with a ``name``; ``register_scorer`` adds your own, e.g. in a
notebook::

    @register_scorer
    class Longest(Scorer):
        name = "longest"
        def score(self, ctx, cands):
            return np.array([len(c.y0) + len(c.y1) for c in cands], dtype=float)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aplkit.config import AcquisitionConfig
from aplkit.generation import sample_completions, sequence_logprobs
from aplkit.records import Candidate, Prompt


@dataclass
class ScoringContext:
    """What a scorer may use: the current policy θ_t, the frozen θ0, and the knobs."""

    policy: object
    reference: object
    tokenizer: object
    acq: AcquisitionConfig
    beta: float
    seed: int  # a per-step seed; derive sub-seeds from it

    def generate(self, prompts: Sequence[str], n: int, seed_offset: int = 0) -> list[list[str]]:
        return sample_completions(
            self.policy,
            self.tokenizer,
            prompts,
            n=n,
            temperature=self.acq.temperature,
            max_new_tokens=self.acq.max_new_tokens,
            batch_size=self.acq.batch_size,
            seed=self.seed + seed_offset,
        )

    def logprobs(self, which: str, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """log p(y|x) under ``"policy"`` (θ_t) or ``"reference"`` (θ0). Tests override this seam."""
        model = self.policy if which == "policy" else self.reference
        return sequence_logprobs(model, self.tokenizer, prompts, completions, self.acq.batch_size).double().numpy()

    def implicit_rewards(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """r̂(x, y) = β (log πθ(y|x) − log πθ0(y|x))  (paper eq. 5)."""
        return self.beta * (self.logprobs("policy", prompts, completions) - self.logprobs("reference", prompts, completions))

    def fill_rewards(self, cands: Sequence[Candidate]) -> None:
        if not cands:
            return
        xs = [c.prompt.text for c in cands]
        r = self.implicit_rewards(xs + xs, [c.y0 for c in cands] + [c.y1 for c in cands])
        for i, c in enumerate(cands):
            c.reward0, c.reward1 = float(r[i]), float(r[len(cands) + i])

    def entropies(self, prompts: Sequence[Prompt], n: int) -> tuple[np.ndarray, list[list[str]]]:
        """Monte-Carlo predictive entropy H ≈ −(1/N) Σ_n log πθ(yⁿ|x), yⁿ ~ πθ (paper eq. 8).

        Returns the entropies and the N samples per prompt (the first two are reused as the pair:
        they are independent draws from the same πθ, so no second generation is needed).
        """
        samples = self.generate([p.text for p in prompts], n=n, seed_offset=1)
        xs = [p.text for p, ys in zip(prompts, samples, strict=True) for _ in ys]
        ys = [y for s in samples for y in s]
        lp = self.logprobs("policy", xs, ys).reshape(len(prompts), n)
        return -lp.mean(axis=1), samples


class Scorer:
    """Ranks candidates; higher score = acquired first."""

    name: str = "scorer"
    #: how many prompts to draw per M-sized batch, as a multiple of S
    pool_multiplier: int = 1

    def prompts_needed(self, acq: AcquisitionConfig) -> int:
        return acq.prompt_batch * self.pool_multiplier

    def propose(self, ctx: ScoringContext, prompts: Sequence[Prompt]) -> list[Candidate]:
        """Generate one pair (y0, y1) ~ πθ_t per prompt (Algorithm 1, line 7)."""
        pairs = ctx.generate([p.text for p in prompts], n=2)
        return [Candidate(prompt=p, y0=ys[0], y1=ys[1]) for p, ys in zip(prompts, pairs, strict=True)]

    def score(self, ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
        raise NotImplementedError


SCORERS: dict[str, type[Scorer]] = {}


def register_scorer(cls: type[Scorer]) -> type[Scorer]:
    SCORERS[cls.name] = cls
    return cls


def get_scorer(name: str) -> Scorer:
    if name not in SCORERS:
        raise ValueError(f"unknown strategy '{name}' (registered: {', '.join(sorted(SCORERS))})")
    return SCORERS[name]()


@register_scorer
class RandomScorer(Scorer):
    """Uniformly random pairs: plain DPO on a random subset. Only M pairs are generated."""

    name = "random"

    def prompts_needed(self, acq: AcquisitionConfig) -> int:
        return acq.acquire_batch

    def score(self, ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
        return np.random.default_rng(ctx.seed).random(len(cands))


@register_scorer
class EntropyScorer(Scorer):
    """Predictive entropy of πθ_t(y|x): prompts the model is least sure about first."""

    name = "entropy"

    def propose(self, ctx: ScoringContext, prompts: Sequence[Prompt]) -> list[Candidate]:
        n = max(2, ctx.acq.entropy_samples)
        h, samples = ctx.entropies(prompts, n)
        return [Candidate(prompt=p, y0=s[0], y1=s[1], entropy=float(e)) for p, s, e in zip(prompts, samples, h, strict=True)]

    def score(self, ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
        return np.array([c.entropy for c in cands], dtype=float)


@register_scorer
class CertaintyScorer(Scorer):
    """Preference-model certainty |r̂(x,y1) − r̂(x,y0)| (paper eq. 9): confident predictions first."""

    name = "certainty"

    def score(self, ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
        ctx.fill_rewards(cands)
        return np.array([abs(c.reward1 - c.reward0) for c in cands], dtype=float)


@register_scorer
class EntropyCertaintyScorer(CertaintyScorer):
    """Hybrid (§3.1.3): J×S prompts → top S by entropy → pairs → top M by certainty."""

    name = "entropy+certainty"

    def prompts_needed(self, acq: AcquisitionConfig) -> int:
        return acq.prompt_batch * acq.entropy_pool

    def propose(self, ctx: ScoringContext, prompts: Sequence[Prompt]) -> list[Candidate]:
        cands = EntropyScorer().propose(ctx, prompts)
        keep = top_k(np.array([c.entropy for c in cands]), ctx.acq.prompt_batch, ctx.seed)
        return [cands[i] for i in keep]


def top_k(scores: np.ndarray, k: int, seed: int) -> list[int]:
    """Indices of the k highest scores; ties broken by a seeded permutation, not by position."""
    perm = np.random.default_rng(seed).permutation(len(scores))
    order = perm[np.argsort(-scores[perm], kind="stable")]
    return [int(i) for i in order[:k]]


def acquire(scorer: Scorer, ctx: ScoringContext, pool: Sequence[Prompt]) -> list[Candidate]:
    """One acquisition step (Algorithm 1, lines 6–9): M scored candidates with implicit rewards filled in."""
    n = scorer.prompts_needed(ctx.acq)
    if n > len(pool):
        raise ValueError(f"strategy '{scorer.name}' needs {n} prompts per step but the train pool has {len(pool)}")
    rng = np.random.default_rng(ctx.seed)
    prompts = [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]
    cands = scorer.propose(ctx, prompts)
    scores = np.asarray(scorer.score(ctx, cands), dtype=float)
    if scores.shape != (len(cands),):
        raise ValueError(f"scorer '{scorer.name}' returned {scores.shape} scores for {len(cands)} candidates")
    for c, s in zip(cands, scores, strict=True):
        c.score = float(s)
    chosen = [cands[i] for i in top_k(scores, ctx.acq.acquire_batch, ctx.seed + 7)]
    ctx.fill_rewards([c for c in chosen if c.reward0 is None or c.reward1 is None])  # for the BT analysis (Fig 3)
    return chosen
