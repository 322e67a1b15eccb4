"""The paper's four acquisition rules (§3.1): random, entropy, certainty and entropy+certainty."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from aplkit.acquisition.base import Passes, Scorer, register_scorer, top_k
from aplkit.acquisition.context import ScoringContext
from aplkit.records import Candidate, Prompt

if TYPE_CHECKING:
    from aplkit.config import AcquisitionConfig


@register_scorer
class RandomScorer(Scorer):
    """Uniformly random pairs: plain DPO on a random subset. Only M pairs are generated."""

    name = "random"

    def prompts_needed(self, acq: AcquisitionConfig) -> int:
        return acq.acquire_batch

    def score(self, ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
        return np.random.default_rng(ctx.seed).random(len(cands))

    def passes(self, acq: AcquisitionConfig, at_theta0: bool = False) -> Passes:
        r = 0 if at_theta0 else 2 * acq.acquire_batch  # r̂ of the M chosen, for Fig 3: θ0's pass, the policy's from the sampler
        return Passes(generated=2 * acq.acquire_batch, scored=r, sampled=r)


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

    def passes(self, acq: AcquisitionConfig, at_theta0: bool = False) -> Passes:
        s, m = acq.prompt_batch, acq.acquire_batch
        r = 0 if at_theta0 else 2 * m  # r̂ of the M fresh pairs (the entropy samples are never scored)
        return Passes(generated=acq.entropy_samples * s + 2 * m, scored=r, sampled=r, pairs=2 * m)


@register_scorer
class CertaintyScorer(Scorer):
    """Preference-model certainty |r̂(x,y1) − r̂(x,y0)| (paper eq. 9): confident predictions first."""

    name = "certainty"
    constant_at_theta0 = True

    def score(self, ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
        ctx.fill_rewards(cands)
        return np.array([abs(c.reward1 - c.reward0) for c in cands], dtype=float)

    def passes(self, acq: AcquisitionConfig, at_theta0: bool = False) -> Passes:
        r = 0 if at_theta0 else 2 * acq.prompt_batch  # a pair per prompt, r̂ of both: θ0's pass, the policy's from the sampler
        return Passes(generated=2 * acq.prompt_batch, scored=r, sampled=r)


@register_scorer
class EntropyCertaintyScorer(CertaintyScorer):
    """Hybrid (§3.1.3): J×S prompts → top S by entropy → new pairs for those S → top M by certainty.

    J×S can exceed the train pool (the paper's IMDB J=8, S=4000 against 24,895 prompts); the entropy filter
    then ranks the whole pool: the paper's numbers are kept, and no prompt is drawn twice.
    """

    name = "entropy+certainty"

    def prompts_needed(self, acq: AcquisitionConfig) -> int:
        return acq.prompt_batch * acq.entropy_pool

    def min_prompts(self, acq: AcquisitionConfig) -> int:
        return acq.prompt_batch  # the S the entropy filter keeps

    constant_at_theta0 = False  # the entropy filter still ranks at θ0

    def propose(self, ctx: ScoringContext, prompts: Sequence[Prompt]) -> list[Candidate]:
        ranked = EntropyScorer().propose(ctx, prompts)
        keep = [ranked[i] for i in top_k(np.array([c.entropy for c in ranked]), ctx.acq.prompt_batch, ctx.seed)]
        if not ctx.at_theta0:  # at θ0 certainty is 0 for every pair: only the M chosen get one (in acquire)
            ctx.complete_pairs(keep)
        return keep

    def passes(self, acq: AcquisitionConfig, at_theta0: bool = False) -> Passes:
        s, m = acq.prompt_batch, acq.acquire_batch
        entropy = acq.entropy_samples * s * acq.entropy_pool
        if at_theta0:
            return Passes(generated=entropy + 2 * m, scored=0, pairs=2 * m)
        return Passes(generated=entropy + 2 * s, scored=2 * s, sampled=2 * s, pairs=2 * s)
