"""Acquisition functions (paper §3.1): which prompt/completion pairs are worth an oracle label.

One step of acquisition (Algorithm 1, lines 6–9) is ``acquire`` (``step.py``):

    prompts    = sample S prompts (J×S for entropy+certainty)      line 6
    candidates = scorer.propose(ctx, prompts)   # generate pairs     line 7
    scores     = scorer.score(ctx, candidates)                       line 8
    batch      = top-M candidates by score                           line 9
                 (+ a fresh pair for a candidate ranked without one)

Every log-prob is taken on the token ids the sampler drew (``Candidate.y0_ids``), never on
re-tokenised text. The seam is ``base.py`` (``Scorer``, ``Passes``, the registry) with its
``ScoringContext`` (``context.py``); the paper's four rules are ``paper.py``, the rules beyond it
``beyond.py``. A scorer is a small class with a ``name``; ``register_scorer`` adds your own, e.g. in a
notebook::

    @register_scorer
    class Longest(Scorer):
        name = "longest"
        def score(self, ctx, cands):
            return np.array([len(c.y0) + len(c.y1) for c in cands], dtype=float)

Nothing here imports torch or transformers at import time: the config checks read the registry.
"""

from aplkit.acquisition.base import SCORERS, Passes, Scorer, get_scorer, register_scorer, top_k
from aplkit.acquisition.beyond import (
    BaldScorer,
    CertaintyDiverseScorer,
    DOptimalScorer,
    LowCertaintyScorer,
    bald_information,
    diverse,
    greedy_d_optimal,
    k_center,
    project,
)
from aplkit.acquisition.context import ScoringContext
from aplkit.acquisition.paper import CertaintyScorer, EntropyCertaintyScorer, EntropyScorer, RandomScorer
from aplkit.acquisition.step import acquire, step_passes

__all__ = [
    "SCORERS",
    "BaldScorer",
    "CertaintyDiverseScorer",
    "CertaintyScorer",
    "DOptimalScorer",
    "EntropyCertaintyScorer",
    "EntropyScorer",
    "LowCertaintyScorer",
    "Passes",
    "RandomScorer",
    "Scorer",
    "ScoringContext",
    "acquire",
    "bald_information",
    "diverse",
    "get_scorer",
    "greedy_d_optimal",
    "k_center",
    "project",
    "register_scorer",
    "step_passes",
    "top_k",
]
