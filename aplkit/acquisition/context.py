"""What a scorer may use at one step: θ_t, the frozen θ0, the tokenizer, the knobs; and the model passes on them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from aplkit.records import Candidate, PoolPair, Prompt

if TYPE_CHECKING:
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
    # pool-based acquisition (data.task=preferences): each prompt id's stored pair, the candidate instead of a sampled one
    pool: Mapping[str, PoolPair] = field(default_factory=dict, repr=False)
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
        """One fresh pair (y0, y1) ~ πθ_t per prompt (Algorithm 1, line 7); in a pool, the prompt's stored pair (off-policy)."""
        if self.pool:
            return [self.pool[p.id].candidate(p) for p in prompts]
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

    # ------------------------------------------------------------ for the scorers beyond the paper (acquisition/beyond.py)
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
