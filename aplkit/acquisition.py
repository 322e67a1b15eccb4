"""Acquisition functions (paper §3.1): which prompt/completion pairs are worth an oracle label.

One step of acquisition (Algorithm 1, lines 6–9) is ``acquire``:

    prompts    = sample S prompts (J×S for entropy+certainty)      line 6
    candidates = scorer.propose(ctx, prompts)   # generate pairs     line 7
    scores     = scorer.score(ctx, candidates)                       line 8
    batch      = top-M candidates by score                           line 9
                 (+ a fresh pair for a candidate ranked without one)

Every log-prob is taken on the token ids the sampler drew (``Candidate.y0_ids``), never on
re-tokenised text.

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
from typing import TYPE_CHECKING

import numpy as np

from aplkit.records import Candidate, Prompt

if TYPE_CHECKING:  # the registry below is read by config validation, which must not import torch
    from aplkit.config import AcquisitionConfig
    from aplkit.generation import Sample


@dataclass
class ScoringContext:
    """What a scorer may use: the current policy θ_t, the frozen θ0, and the knobs."""

    policy: object
    reference: object
    tokenizer: object
    acq: AcquisitionConfig
    beta: float
    seed: int  # a per-step seed; derive sub-seeds from it
    at_theta0: bool = False  # θ_t is θ0 (step 1): every implicit reward is exactly 0, nothing needs computing

    def generate(self, prompts: Sequence[str], n: int, seed_offset: int = 0, with_logprobs: bool = False) -> list[list[Sample]]:
        """n samples per prompt from πθ_t at the acquisition temperature. Tests override this seam."""
        from aplkit.generation import sample

        return sample(
            self.policy,
            self.tokenizer,
            prompts,
            n=n,
            temperature=self.acq.temperature,
            max_new_tokens=self.acq.max_new_tokens,
            batch_size=self.acq.batch_size,
            seed=self.seed + seed_offset,
            with_logprobs=with_logprobs,
        )

    def logprobs(self, which: str, prompts: Sequence[str], completions: Sequence[Sequence[int]]) -> np.ndarray:
        """log p(y|x) of completion *token ids* under ``"policy"`` (θ_t) or ``"reference"`` (θ0). Tests override this seam."""
        from aplkit.generation import ids_logprobs, prompt_ids

        model = self.policy if which == "policy" else self.reference
        p_ids = prompt_ids(self.tokenizer, prompts)
        return ids_logprobs(model, p_ids, [list(c) for c in completions], self.tokenizer.pad_token_id, self.acq.batch_size).double().numpy()

    def implicit_rewards(self, prompts: Sequence[str], completions: Sequence[Sequence[int]]) -> np.ndarray:
        """r̂(x, y) = β (log πθ(y|x) − log πθ0(y|x))  (paper eq. 5), on the sampled ids."""
        return self.beta * (self.logprobs("policy", prompts, completions) - self.logprobs("reference", prompts, completions))

    def completion_ids(self, c: Candidate) -> tuple[list[int], list[int]]:
        """The pair's sampled ids; a pair that came as text only (a user's scorer) is tokenised."""
        y0 = c.y0_ids if c.y0_ids is not None else self.tokenizer(c.y0, add_special_tokens=False)["input_ids"]
        y1 = c.y1_ids if c.y1_ids is not None else self.tokenizer(c.y1, add_special_tokens=False)["input_ids"]
        return list(y0), list(y1)

    def fill_rewards(self, cands: Sequence[Candidate]) -> None:
        if not cands:
            return
        if self.at_theta0:  # r̂ = β(log πθ0 − log πθ0) = 0: no forward pass
            for c in cands:
                c.reward0 = c.reward1 = 0.0
            return
        xs = [c.prompt.text for c in cands]
        ids = [self.completion_ids(c) for c in cands]
        r = self.implicit_rewards(xs + xs, [i[0] for i in ids] + [i[1] for i in ids])
        for i, c in enumerate(cands):
            c.reward0, c.reward1 = float(r[i]), float(r[len(cands) + i])

    def pairs(self, prompts: Sequence[Prompt], seed_offset: int = 0) -> list[Candidate]:
        """One fresh pair (y0, y1) ~ πθ_t per prompt (Algorithm 1, line 7)."""
        out = self.generate([p.text for p in prompts], n=2, seed_offset=seed_offset)
        return [Candidate(prompt=p, y0=a.text, y1=b.text, y0_ids=a.ids, y1_ids=b.ids) for p, (a, b) in zip(prompts, out, strict=True)]

    def complete_pairs(self, cands: Sequence[Candidate]) -> None:
        """Generate the pair of every candidate that was ranked before it had one (entropy)."""
        todo = [c for c in cands if not c.has_pair]
        if not todo:
            return
        for c, fresh in zip(todo, self.pairs([c.prompt for c in todo], seed_offset=2), strict=True):
            c.y0, c.y1, c.y0_ids, c.y1_ids = fresh.y0, fresh.y1, fresh.y0_ids, fresh.y1_ids

    def entropies(self, prompts: Sequence[Prompt], n: int) -> np.ndarray:
        """Monte-Carlo predictive entropy H ≈ −(1/N) Σ_n log p(yⁿ|x), yⁿ ~ p (paper eq. 8).

        p is the distribution the pairs are sampled from, πθ_t at the acquisition temperature T:
        the samples and their log-probs come from the same sampler, so this is the entropy of
        that distribution (scoring T-samples with T = 1 log-probs would estimate a cross-entropy).
        The samples only estimate H; the pair is generated afresh after selection (§3.1.3).
        """
        samples = self.generate([p.text for p in prompts], n=n, seed_offset=1, with_logprobs=True)
        lp = np.array([[s.logprob for s in row] for row in samples], dtype=float)
        return -lp.mean(axis=1)


class Scorer:
    """Ranks candidates; higher score = acquired first."""

    name: str = "scorer"
    #: every score is the same at θ = θ0 (a function of r̂ alone), so step 1 is a pure tie-break
    constant_at_theta0: bool = False

    def prompts_needed(self, acq: AcquisitionConfig) -> int:
        return acq.prompt_batch

    def propose(self, ctx: ScoringContext, prompts: Sequence[Prompt]) -> list[Candidate]:
        """Generate one pair (y0, y1) ~ πθ_t per prompt (Algorithm 1, line 7)."""
        return ctx.pairs(prompts)

    def score(self, ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
        raise NotImplementedError


SCORERS: dict[str, type[Scorer]] = {}


def register_scorer(cls: type[Scorer]) -> type[Scorer]:
    """Add a scorer under its ``name``; ``strategy: NAME`` in a config (and a sweep) then accepts it."""
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
    """Predictive entropy of πθ_t(y|x): prompts the model is least sure about first.

    Prompts are ranked before any pair exists; the M chosen get a fresh pair (``acquire``).
    """

    name = "entropy"

    def propose(self, ctx: ScoringContext, prompts: Sequence[Prompt]) -> list[Candidate]:
        h = ctx.entropies(prompts, ctx.acq.entropy_samples)
        return [Candidate(prompt=p, entropy=float(e)) for p, e in zip(prompts, h, strict=True)]

    def score(self, ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
        return np.array([c.entropy for c in cands], dtype=float)


@register_scorer
class CertaintyScorer(Scorer):
    """Preference-model certainty |r̂(x,y1) − r̂(x,y0)| (paper eq. 9): confident predictions first."""

    name = "certainty"
    constant_at_theta0 = True

    def score(self, ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
        ctx.fill_rewards(cands)
        return np.array([abs(c.reward1 - c.reward0) for c in cands], dtype=float)


@register_scorer
class EntropyCertaintyScorer(CertaintyScorer):
    """Hybrid (§3.1.3): J×S prompts → top S by entropy → new pairs for those S → top M by certainty."""

    name = "entropy+certainty"

    def prompts_needed(self, acq: AcquisitionConfig) -> int:
        return acq.prompt_batch * acq.entropy_pool

    constant_at_theta0 = False  # the entropy filter still ranks at θ0

    def propose(self, ctx: ScoringContext, prompts: Sequence[Prompt]) -> list[Candidate]:
        ranked = EntropyScorer().propose(ctx, prompts)
        keep = [ranked[i] for i in top_k(np.array([c.entropy for c in ranked]), ctx.acq.prompt_batch, ctx.seed)]
        if not ctx.at_theta0:  # at θ0 certainty is 0 for every pair: only the M chosen get one (in acquire)
            ctx.complete_pairs(keep)
        return keep


def top_k(scores: np.ndarray, k: int, seed: int) -> list[int]:
    """Indices of the k highest scores; ties broken by a seeded permutation, not by position."""
    perm = np.random.default_rng(seed).permutation(len(scores))
    order = perm[np.argsort(-scores[perm], kind="stable")]
    return [int(i) for i in order[:k]]


def acquire(scorer: Scorer, ctx: ScoringContext, pool: Sequence[Prompt]) -> list[Candidate]:
    """One acquisition step (Algorithm 1, lines 6–9): M scored candidates with implicit rewards filled in.

    At θ = θ0 a scorer whose scores are all equal there (certainty) makes no choice, so it takes
    random's draw — the same prompts and pairs as the random strategy of the same seed (common random
    numbers: the first step differs between strategies only where the scorer does) — and no pair
    is generated or scored for nothing. Its recorded score is the 0 it would have computed.
    """
    if ctx.at_theta0 and scorer.constant_at_theta0:
        chosen = acquire(RandomScorer(), ctx, pool)
        for c in chosen:
            c.score = 0.0
        return chosen
    n = scorer.prompts_needed(ctx.acq)
    if n > len(pool):
        raise ValueError(f"strategy '{scorer.name}' needs {n} prompts per step but the train pool has {len(pool)}")
    from aplkit.data import sample_prompts

    prompts = sample_prompts(list(pool), n, np.random.default_rng(ctx.seed))
    cands = scorer.propose(ctx, prompts)
    scores = np.asarray(scorer.score(ctx, cands), dtype=float)
    if scores.shape != (len(cands),):
        raise ValueError(f"scorer '{scorer.name}' returned {scores.shape} scores for {len(cands)} candidates")
    for c, s in zip(cands, scores, strict=True):
        c.score = float(s)
    chosen = [cands[i] for i in top_k(scores, ctx.acq.acquire_batch, ctx.seed + 7)]
    ctx.complete_pairs(chosen)  # scorers that rank prompts (entropy) get their pair now
    ctx.fill_rewards([c for c in chosen if c.reward0 is None or c.reward1 is None])  # for the BT analysis (Fig 3)
    return chosen
