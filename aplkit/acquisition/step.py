"""One acquisition step (Algorithm 1, lines 6–9) and the model passes it runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from aplkit.acquisition.base import Passes, Scorer
from aplkit.acquisition.context import ScoringContext
from aplkit.acquisition.paper import RandomScorer
from aplkit.records import Candidate, Prompt

if TYPE_CHECKING:
    from aplkit.config import AcquisitionConfig


def acquire(scorer: Scorer, ctx: ScoringContext, pool: Sequence[Prompt]) -> list[Candidate]:
    """One acquisition step (Algorithm 1, lines 6–9): M scored candidates with implicit rewards filled in.

    At θ = θ0 a scorer whose scores are all equal there (certainty) makes no choice, so it takes
    random's draw — the same prompts and pairs as the random strategy of the same seed (common random
    numbers: the first step differs between strategies only where the scorer does) — and no pair
    is generated or scored for nothing. Its recorded score is the 0 it would have computed.
    A scorer that asks for more prompts than the pool holds (``prompts_needed``) gets the whole pool,
    as long as that is at least its ``min_prompts``.
    """
    if ctx.at_theta0 and scorer.constant_at_theta0:
        chosen = acquire(RandomScorer(), ctx, pool)
        for c in chosen:
            c.score = 0.0
        return chosen
    least = scorer.min_prompts(ctx.acq)
    if least > len(pool):
        raise ValueError(f"strategy '{scorer.name}' needs {least} prompts per step but the train pool has {len(pool)}")
    n = min(scorer.prompts_needed(ctx.acq), len(pool))  # a pool smaller than asked for (but large enough) is drawn whole
    from aplkit.data import sample_prompts

    prompts = sample_prompts(list(pool), n, np.random.default_rng(ctx.seed))
    cands = scorer.propose(ctx, prompts)
    scores = np.asarray(scorer.score(ctx, cands), dtype=float)
    if scores.shape != (len(cands),):
        raise ValueError(f"scorer '{scorer.name}' returned {scores.shape} scores for {len(cands)} candidates")
    for c, s in zip(cands, scores, strict=True):
        c.score = float(s)
    m = min(ctx.acq.acquire_batch, len(cands))
    picks = [int(i) for i in scorer.select(ctx, cands, scores, m)]
    if len(picks) != m or len(set(picks)) != m or not all(0 <= i < len(cands) for i in picks):
        raise ValueError(f"scorer '{scorer.name}' selected {picks}: need {m} distinct indices below {len(cands)}")
    chosen = [cands[i] for i in picks]
    ctx.complete_pairs(chosen)  # scorers that rank prompts (entropy) get their pair now
    ctx.fill_rewards([c for c in chosen if c.reward0 is None or c.reward1 is None])  # for the BT analysis (Fig 3)
    return chosen


def step_passes(scorer: Scorer, acq: AcquisitionConfig, at_theta0: bool = False) -> Passes | None:
    """The model passes ``acquire`` runs for one step of ``scorer``; at θ0 a constant scorer costs random's draw."""
    if at_theta0 and scorer.constant_at_theta0:
        return RandomScorer().passes(acq, True)
    return scorer.passes(acq, at_theta0)
