"""Selection rules beyond the paper's four, behind the same ``Scorer`` interface.

| name | rule | extra model cost per step over certainty (S prompts, M chosen) |
|---|---|---|
| ``low-certainty`` | smallest \\|r̂₁ − r̂₀\\| first: classic uncertainty sampling | none |
| ``bald`` | BALD mutual information of p(y₁ ≻ y₀) over K MC-dropout draws | 2S policy passes for the states, K output-head products per completion (2S·K) |
| ``d-optimal`` | greedy max log det(λI + Σ φφᵀ) over pair features | 2S policy passes for features; θ0 passes for the M chosen only |
| ``certainty+diverse`` | top pool·M by certainty, then k-center to M | 2·min(pool·M, S) policy passes for features |

``diverse(base)`` makes ``BASE+diverse`` of any scorer: "score first, then diversify" lives in
its ``select`` and nowhere else. The maths is numpy / scipy (``scipy.special.entr`` for the binary
entropies, ``scipy.spatial.distance.cdist`` for k-center, ``numpy.linalg.slogdet`` in the tests);
the model passes are ``ScoringContext.pair_features`` and ``dropout_reward_gaps`` (``aplkit.hidden``).
This module imports neither torch nor transformers: config validation reads the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial.distance import cdist
from scipy.special import entr, expit

from aplkit.acquisition.base import Passes, Scorer, register_scorer, top_k
from aplkit.acquisition.context import ScoringContext
from aplkit.acquisition.paper import CertaintyScorer
from aplkit.records import Candidate

if TYPE_CHECKING:
    from aplkit.config import AcquisitionConfig

PROJECTION_SEED = 0  # the same projection at every step and seed: features stay comparable across steps


# --------------------------------------------------------------------------- maths (numpy / scipy)


def bald_information(gaps: np.ndarray) -> np.ndarray:
    """BALD mutual information per column of K × n reward gaps Δ_k = r̂₁ − r̂₀ (nats).

    I = H(p̄) − (1/K) Σ_k H(p_k), p_k = σ(Δ_k), p̄ its mean over draws, H the binary entropy: how much
    the label would tell about which draw is right (Houlsby et al. 2011, arXiv 1112.5745, BALD for
    preference learning). 0 when every draw agrees; never negative (H is concave).
    """
    p = expit(np.asarray(gaps, dtype=float))

    def h(q: np.ndarray) -> np.ndarray:
        return entr(q) + entr(1.0 - q)

    return np.maximum(h(p.mean(axis=0)) - h(p).mean(axis=0), 0.0)


def project(features: np.ndarray, dim: int, seed: int = PROJECTION_SEED) -> np.ndarray:
    """A seeded Gaussian random projection to ``dim`` (scaled 1/√dim, so norms and distances are kept in expectation)."""
    x = np.asarray(features, dtype=float)
    r = np.random.default_rng(seed).standard_normal((x.shape[-1], dim)) / np.sqrt(dim)
    return x @ r


def greedy_d_optimal(x: np.ndarray, reg: float, seed: int = 0) -> tuple[list[int], np.ndarray]:
    """Greedy batch D-optimal order of the rows of ``x`` and each row's marginal gain when taken.

    Maximises log det(λI + Σ_{i∈B} xᵢxᵢᵀ) one row at a time: the gain of row i given the rows taken is
    log(1 + xᵢᵀ A⁻¹ xᵢ) (matrix determinant lemma), A⁻¹ updated by Sherman–Morrison. The gains along the
    order never increase (log det is submodular), so the top m by gain are greedy's first m. Ties go by
    a seeded permutation, as ``top_k``.
    """
    n, d = x.shape
    a_inv = np.eye(d) / reg
    left = list(range(n))
    order: list[int] = []
    gains = np.zeros(n)
    while left:
        v = x[left] @ a_inv
        g = np.log1p(np.einsum("ij,ij->i", v, x[left]))
        j = top_k(g, 1, seed + len(order))[0]
        i = left.pop(j)
        order.append(i)
        gains[i] = g[j]
        u = a_inv @ x[i]
        a_inv -= np.outer(u, u) / (1.0 + x[i] @ u)
    return order, gains


def k_center(x: np.ndarray, m: int) -> list[int]:
    """Greedy k-center (Sener & Savarese 2018, arXiv 1708.00489): row 0 first, then always the row farthest from those taken.

    Rows come in the order of preference (highest score first), so ties in distance go to the higher score.
    """
    if len(x) == 0 or m <= 0:
        return []
    chosen = [0]
    dist = cdist(x, x[:1]).ravel()
    while len(chosen) < min(m, len(x)):
        dist[chosen] = -np.inf
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, cdist(x, x[i : i + 1]).ravel())
    return chosen


# --------------------------------------------------------------------------- scorers


@register_scorer
class LowCertaintyScorer(CertaintyScorer):
    """Smallest |r̂(x,y₁) − r̂(x,y₀)| first: uncertainty sampling, the opposite sign of the paper's eq. 9.

    The score is −|r̂₁ − r̂₀|, so the pairs the implicit Bradley–Terry model is least sure about
    (p(y₁ ≻ y₀) nearest ½) are labelled first (Lewis & Gale 1994; favoured by some offline selection
    work). Constant at θ0 (every r̂ is 0), where it takes random's draw. Cost: certainty's.
    """

    name = "low-certainty"

    def score(self, ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
        return -super().score(ctx, cands)


@register_scorer
class BaldScorer(Scorer):
    """Epistemic uncertainty of the implicit preference model: BALD over a last-layer MC-dropout ensemble.

    K draws of r̂_k(x,y) = β(log πθ_k(y|x) − log πθ0(y|x)), πθ_k the policy with dropout rate p on its
    last hidden state (mask k), give K Bradley–Terry probabilities p_k = σ(r̂_k(y₁) − r̂_k(y₀)); the
    score is their mutual information with the label (``bald_information``; Houlsby et al. 2011,
    arXiv 1112.5745; MC dropout: Gal & Ghahramani 2016, arXiv 1506.02142), in the spirit of BAL-PM
    (Melo et al. 2024, arXiv 2406.10023) and SEA's ensembles (Liu et al. 2024, arXiv 2411.01493).
    A cheap stand-in for K reward heads: the draws share one pass through the network, and draw k is
    one mask over hidden units for every token of both completions (``aplkit.hidden.dropout_masks``).

    A heuristic, not a Bayesian posterior: the policy was trained without dropout, so the masks are a
    noise model around θ_t, not samples of θ. At θ0 that noise is all there is (the draws disagree more
    the longer the completions), so step 1 takes random's draw, as certainty does, and scores 0.

    Cost per step: 2S policy passes for the hidden states (the sampler's recorded log-probs do not give
    them), 2S θ0 passes and 2S·K output-head products over the completions' tokens
    (K = ``acquisition.ensemble_size``, p = ``acquisition.dropout``); at θ0 random's draw.
    """

    name = "bald"
    constant_at_theta0 = True  # scored 0 at θ0: dropout there measures only its own noise

    def score(self, ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
        if ctx.at_theta0:  # as certainty: r̂ = 0, no pass (reached only through a rule such as ``diverse``)
            ctx.fill_rewards(cands)
            return np.zeros(len(cands))
        return bald_information(ctx.dropout_reward_gaps(cands, ctx.acq.ensemble_size, ctx.acq.dropout))

    def passes(self, acq: AcquisitionConfig, at_theta0: bool = False) -> Passes:
        s = acq.prompt_batch
        if at_theta0:  # certainty's at θ0: the pairs are generated, nothing is scored
            return Passes(generated=2 * s, scored=0)
        return Passes(generated=2 * s, scored=4 * s, head=2 * s * acq.ensemble_size)


def pair_difference_features(ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
    """φ(x,y₁) − φ(x,y₀), projected to ``acquisition.feature_dim`` (the design's regressors)."""
    f = ctx.pair_features(cands)
    return project(f[:, 1] - f[:, 0], ctx.acq.feature_dim)


def pair_mean_features(ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
    """(φ(x,y₀) + φ(x,y₁)) / 2, projected: where a pair sits (its prompt and completions), for diversity."""
    f = ctx.pair_features(cands)
    return project(f.mean(axis=1), ctx.acq.feature_dim)


@register_scorer
class DOptimalScorer(Scorer):
    """Greedy batch D-optimal design over the pairs' feature differences.

    A Bradley–Terry model linear in features, r(x,y) = wᵀφ(x,y), learns w from the differences
    φ(x,y₁) − φ(x,y₀); the batch that maximises log det(λI + Σ φφᵀ) shrinks the confidence ellipsoid
    of w most (D-optimality). φ is πθ_t's mean last hidden state over the completion, projected to d
    dimensions by a seeded Gaussian matrix; the greedy order is ``greedy_d_optimal`` and the score the
    marginal log-det gain. Optimal design for preference elicitation: Mukherjee et al. 2024
    (arXiv 2404.13895); active queries for DPO (ADPO): Ji et al. 2024 (arXiv 2402.09401). Not
    constant at θ0 (the features are the policy's, not a reward difference).

    Cost per step: 2S generated and 2S policy passes for the features (no θ0 pass), then r̂ of the
    M chosen for Fig 3 (2M θ0 passes, the policy's from the sampler; none at θ0).
    d = ``acquisition.feature_dim``, λ = ``acquisition.design_reg``.
    """

    name = "d-optimal"

    def score(self, ctx: ScoringContext, cands: Sequence[Candidate]) -> np.ndarray:
        _, gains = greedy_d_optimal(pair_difference_features(ctx, cands), ctx.acq.design_reg, ctx.seed + 11)
        return gains

    def passes(self, acq: AcquisitionConfig, at_theta0: bool = False) -> Passes:
        r = 0 if at_theta0 else 2 * acq.acquire_batch
        return Passes(generated=2 * acq.prompt_batch, scored=2 * acq.prompt_batch + r, sampled=r)


def diverse(base: type[Scorer]) -> type[Scorer]:
    """``BASE+diverse``: score with ``base``, keep the top pool·M, then greedy k-center over their pair features to M.

    Score first, then diversify (as BAL-PM's prompt-entropy term or a coreset pass, Sener & Savarese
    2018, arXiv 1708.00489): the M pairs of one step are then not near-copies. The highest-scoring
    pair is taken first. It ranks at θ0 too (k-center over the kept pairs), even when ``base`` cannot.
    Extra cost over ``base``: 2·min(pool·M, S) policy passes for the features. Register it with
    ``register_scorer(diverse(MyScorer))``.
    """

    class Diverse(base):  # type: ignore[valid-type, misc]
        name = f"{base.name}+diverse"
        constant_at_theta0 = False

        def select(self, ctx: ScoringContext, cands: Sequence[Candidate], scores: np.ndarray, m: int) -> list[int]:
            kept = top_k(scores, min(ctx.acq.diversity_pool * m, len(cands)), ctx.seed + 7)
            ctx.complete_pairs([cands[i] for i in kept])  # a base that ranks prompts (entropy) has no pairs yet
            return [kept[i] for i in k_center(pair_mean_features(ctx, [cands[i] for i in kept]), m)]

        def passes(self, acq: AcquisitionConfig, at_theta0: bool = False) -> Passes | None:
            own = base.passes(self, acq, at_theta0)
            if own is None or base.propose is not Scorer.propose:  # a base that ranks prompts gets pairs here: not modelled
                return None
            feats = 2 * min(acq.diversity_pool * acq.acquire_batch, self.prompts_needed(acq))
            return Passes(own.generated, own.scored + feats, own.head, own.sampled, own.pairs)

    Diverse.__name__ = Diverse.__qualname__ = f"Diverse{base.__name__}"
    Diverse.__doc__ = f"{base.name}, then diversified: {diverse.__doc__.splitlines()[0]}"
    return Diverse


CertaintyDiverseScorer = register_scorer(diverse(CertaintyScorer))
