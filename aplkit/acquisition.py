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
from dataclasses import dataclass, field
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
    # log πθ_t(y|x) of what this context sampled, recorded by the sampler (``sampled_logprobs``)
    _sampled: dict[tuple[str, tuple[int, ...]], float] = field(default_factory=dict, repr=False)

    def sampled_logprobs(self) -> bool:
        """Whether the sampler records log πθ_t(y|x) so that scoring skips the policy's forward pass.

        Only where ``generation.sampler_scores_are_the_models``: fp32 compute (under bf16/fp16 the two paths
        round differently, and that would not cancel in r̂ = β(log πθ − log πθ0)) and no suppressed tokens.
        """
        from aplkit.generation import sampler_scores_are_the_models

        return sampler_scores_are_the_models(self.policy)

    def generate(self, prompts: Sequence[str], n: int, seed_offset: int = 0, with_logprobs: bool = False) -> list[list[Sample]]:
        """n samples per prompt from πθ_t at the acquisition temperature. Tests override this seam."""
        from aplkit.generation import sample

        record = self.sampled_logprobs() and not with_logprobs  # entropy's samples are never scored, only its pairs
        out = sample(
            self.policy,
            self.tokenizer,
            prompts,
            n=n,
            temperature=self.acq.temperature,
            max_new_tokens=self.acq.max_new_tokens,
            batch_size=self.acq.batch_size,
            seed=self.seed + seed_offset,
            with_logprobs=with_logprobs,
            with_model_logprobs=record,
        )
        if record:
            for x, row in zip(prompts, out, strict=True):
                for smp in row:
                    self._sampled[(x, tuple(smp.ids))] = smp.model_logprob
        return out

    def logprobs(self, which: str, prompts: Sequence[str], completions: Sequence[Sequence[int]]) -> np.ndarray:
        """log p(y|x) of completion *token ids* under ``"policy"`` (θ_t) or ``"reference"`` (θ0). Tests override this seam.

        The policy's log-prob of a completion this context sampled is the one the sampler recorded; only
        the others get a forward pass.
        """
        from aplkit.generation import ids_logprobs, prompt_ids

        out = np.full(len(prompts), np.nan)
        todo = list(range(len(prompts)))
        if which == "policy" and self._sampled:
            for i, (x, c) in enumerate(zip(prompts, completions, strict=True)):
                v = self._sampled.get((x, tuple(c)))
                if v is not None:
                    out[i] = v
            todo = [i for i in todo if np.isnan(out[i])]
        if todo:
            model = self.policy if which == "policy" else self.reference
            p_ids = prompt_ids(self.tokenizer, [prompts[i] for i in todo])
            c_ids = [list(completions[i]) for i in todo]
            out[todo] = ids_logprobs(model, p_ids, c_ids, self.tokenizer.pad_token_id, self.acq.batch_size).double().numpy()
        return out

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

    # ------------------------------------------------------------ for the scorers beyond the paper (aplkit.arena)
    def _completion_states(self, cands: Sequence[Candidate], masks: int = 0, p: float = 0.0):
        """``aplkit.hidden.completion_states`` of every candidate's y0 (rows :n) and y1 (rows n:)."""
        from aplkit.generation import prompt_ids
        from aplkit.hidden import completion_states

        xs = [c.prompt.text for c in cands]
        ids = [self.completion_ids(c) for c in cands]
        comps = [i[0] for i in ids] + [i[1] for i in ids]
        p_ids = prompt_ids(self.tokenizer, xs + xs)
        states = completion_states(
            self.policy, p_ids, comps, self.tokenizer.pad_token_id, masks=masks, p=p, seed=self.seed + 3, batch_size=self.acq.batch_size
        )
        return states, xs + xs, comps

    def pair_features(self, cands: Sequence[Candidate]) -> np.ndarray:
        """[n, 2, H]: πθ_t's last hidden state averaged over y0's and y1's tokens (one policy pass per completion).

        Tests override this seam.
        """
        if not cands:
            return np.zeros((0, 2, 0))
        states, _, _ = self._completion_states(cands)
        f = states.features.double().numpy()
        return np.stack([f[: len(cands)], f[len(cands) :]], axis=1)

    def dropout_reward_gaps(self, cands: Sequence[Candidate], k: int, p: float) -> np.ndarray:
        """[k, n]: r̂(x,y1) − r̂(x,y0) with πθ_t under k MC-dropout masks (rate p, last hidden layer), θ0 exact.

        One policy pass per completion plus k output-head products over its tokens (``aplkit.hidden``), and
        one θ0 pass (none at θ0, where θ0's log-probs are the policy's own). Fills each candidate's
        deterministic rewards as ``fill_rewards`` would. Tests override this seam.
        """
        n = len(cands)
        if not n:
            return np.zeros((k, 0))
        states, xs, comps = self._completion_states(cands, masks=k, p=p)
        lp = states.logprobs.numpy()
        ref = lp if self.at_theta0 else self.logprobs("reference", xs, comps)
        r = self.beta * (lp - ref)
        for i, c in enumerate(cands):
            c.reward0, c.reward1 = float(r[i]), float(r[n + i])
        rk = self.beta * (states.dropout_logprobs.numpy() - ref)
        return rk[:, n:] - rk[:, :n]


@dataclass(frozen=True)
class Passes:
    """Sequences one acquisition step runs through a model: the cost model behind the report's FLOPs column.

    A sampled completion costs about one forward pass over x + y (a KV cache makes each new token one
    token's pass), so FLOPs ∝ ``generated + scored [+ sampled] + head_fraction × head``. ``sampled``
    counts the policy's log-probs of completions this step sampled itself: the sampler records them
    where ``ScoringContext.sampled_logprobs`` holds (fp32 compute, no suppressed tokens), and only
    otherwise are they a forward pass each. ``head`` counts output-head products over a completion's
    tokens alone (bald's dropout draws), each a fraction (vocabulary × hidden / parameters) of a full pass.
    """

    generated: int  # completions sampled from πθ_t
    scored: int  # full forward passes over (x, y) that always run: θ0's, and the policy's for features or dropout states
    head: int = 0  # output-head-only products over a completion's tokens
    sampled: int = 0  # policy log-probs of completions this step sampled: a pass each only without the sampler's record

    def sequence_passes(self, head_fraction: float = 1.0, sampled_logprobs: bool = True) -> float:
        """Full-pass equivalents; ``sampled_logprobs``: the run's sampler recorded the policy's log-probs."""
        return self.generated + self.scored + (0 if sampled_logprobs else self.sampled) + head_fraction * self.head


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
        return Passes(generated=acq.entropy_samples * s + 2 * m, scored=r, sampled=r)


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

    def passes(self, acq: AcquisitionConfig, at_theta0: bool = False) -> Passes:
        s, m = acq.prompt_batch, acq.acquire_batch
        entropy = acq.entropy_samples * s * acq.entropy_pool
        return Passes(generated=entropy + 2 * m, scored=0) if at_theta0 else Passes(generated=entropy + 2 * s, scored=2 * s, sampled=2 * s)


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


from aplkit import arena  # noqa: E402,F401  registers the scorers beyond the paper (low-certainty, bald, d-optimal, +diverse)
