"""The scorer seam: ``Scorer``, its cost model ``Passes``, the registry and the seeded tie-break."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from aplkit.acquisition.context import ScoringContext
from aplkit.records import Candidate, Prompt

if TYPE_CHECKING:  # the registry is read by the config checks, which must not import torch
    from aplkit.config import AcquisitionConfig


@dataclass(frozen=True)
class Passes:
    """Sequences one acquisition step runs through a model: the cost model behind the report's FLOPs column.

    A sampled completion costs about one forward pass over x + y (a KV cache makes each new token one
    token's pass), so FLOPs ∝ ``generated + scored [+ sampled] + head_fraction × head``. ``sampled``
    counts the policy's log-probs of completions this step sampled itself: the sampler records them
    where ``ScoringContext.sampled_logprobs`` holds (fp32 compute, no suppressed tokens), and only
    otherwise are they a forward pass each. ``head`` counts output-head products over a completion's
    tokens alone (bald's dropout draws), each a fraction (vocabulary × hidden / parameters) of a full pass.
    ``pairs`` counts the generated completions that are candidate pairs' (None: all of them): in a pool
    (``data.task: preferences``) those are read from the data set, not generated, and the policy's log-probs of
    them have no sampler's record, so each costs a forward pass.
    """

    generated: int  # completions sampled from πθ_t
    scored: int  # full forward passes over (x, y) that always run: θ0's, and the policy's for features or dropout states
    head: int = 0  # output-head-only products over a completion's tokens
    sampled: int = 0  # policy log-probs of completions this step sampled: a pass each only without the sampler's record
    pairs: int | None = None  # of ``generated``, the candidate pairs' completions (None: all)

    def generated_in(self, pool: bool = False) -> int:
        """Completions sampled from πθ_t; in a pool, those that are not a stored pair's (entropy's samples)."""
        return self.generated - (self.generated if self.pairs is None else self.pairs) if pool else self.generated

    def sequence_passes(self, head_fraction: float = 1.0, sampled_logprobs: bool = True, pool: bool = False) -> float:
        """Full-pass equivalents; ``sampled_logprobs``: the run's sampler recorded the policy's log-probs; ``pool``:
        the candidate pairs are a data set's (read, not generated, and the policy's log-probs of them a pass each)."""
        record = sampled_logprobs and not pool
        return self.generated_in(pool) + self.scored + (0 if record else self.sampled) + head_fraction * self.head


class Scorer:
    """Ranks candidates; higher score = acquired first."""

    name: str = "scorer"
    #: every score is the same at θ = θ0 (a function of r̂ alone), so step 1 is a pure tie-break
    constant_at_theta0: bool = False

    def prompts_needed(self, acq: AcquisitionConfig) -> int:
        """Prompts drawn from the train pool per step."""
        return acq.prompt_batch

    def min_prompts(self, acq: AcquisitionConfig) -> int:
        """The fewest prompts a step can work with; a pool below ``prompts_needed`` but not below this is drawn whole.

        The config check refuses a ``data.train_size`` below it, before anything loads.
        """
        return self.prompts_needed(acq)

    def propose(self, ctx: ScoringContext, prompts: Sequence[Prompt]) -> list[Candidate]:
        """Generate one pair (y0, y1) ~ πθ_t per prompt (Algorithm 1, line 7)."""
        return ctx.pairs(prompts)

    def score(self, ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
        raise NotImplementedError

    def select(self, ctx: ScoringContext, cands: Sequence[Candidate], scores: np.ndarray, m: int) -> list[int]:
        """Which m candidates to acquire, given their scores: the top m (a batch rule such as ``+diverse`` overrides this)."""
        return top_k(scores, m, ctx.seed + 7)

    def passes(self, acq: AcquisitionConfig, at_theta0: bool = False) -> Passes | None:
        """Model passes of one step away from θ0's shortcut (``step_passes``); None: not declared (a user's scorer)."""
        return None


SCORERS: dict[str, type[Scorer]] = {}


def register_scorer(cls: type[Scorer]) -> type[Scorer]:
    """Add a scorer under its ``name``; ``strategy: NAME`` in a config (and a sweep) then accepts it."""
    SCORERS[cls.name] = cls
    return cls


def get_scorer(name: str) -> Scorer:
    if name not in SCORERS:
        raise ValueError(f"unknown strategy '{name}' (registered: {', '.join(sorted(SCORERS))})")
    return SCORERS[name]()


def top_k(scores: np.ndarray, k: int, seed: int) -> list[int]:
    """Indices of the k highest scores; ties broken by a seeded permutation, not by position."""
    perm = np.random.default_rng(seed).permutation(len(scores))
    order = perm[np.argsort(-scores[perm], kind="stable")]
    return [int(i) for i in order[:k]]
