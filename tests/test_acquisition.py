"""Each scorer against hand-computed values, with log-probs the test controls."""

import dataclasses
import math

import numpy as np
import pytest

from aplkit.acquisition import (
    SCORERS,
    Scorer,
    ScoringContext,
    acquire,
    get_scorer,
    register_scorer,
    top_k,
)
from aplkit.config import AcquisitionConfig
from aplkit.generation import Sample
from aplkit.records import Candidate, Prompt

BETA = 0.2


class ControlledContext(ScoringContext):
    """Generation returns fixed completions; log-probs come from tables the test wrote.

    Each completion text gets its own token ids, and log-probs are looked up by those ids, so a
    scorer that re-tokenised text instead of using the sampled ids would fail here. The entropy
    samples (drawn with their log-probs) are ``samples``; a fresh pair is ``p.text + "/a"``, ``"/b"``.
    """

    def __init__(self, acq, samples, lp_policy, lp_ref, seed=0, pairs=None, at_theta0=False):
        super().__init__(None, None, None, acq, BETA, seed, at_theta0)
        self.samples, self.lp_policy, self.lp_ref = samples, lp_policy, lp_ref
        self.pair_texts = pairs or {}
        self.ids: dict[str, list[int]] = {}
        self.calls: list[tuple[int, int]] = []  # (prompts, n) per generate call

    def _sample(self, prompt, text, with_logprobs):
        ids = self.ids.setdefault(text, [1000 + len(self.ids), 7])
        return Sample(text=text, ids=ids, logprob=self.lp_policy.get((prompt, text)) if with_logprobs else None)

    def generate(self, prompts, n, seed_offset=0, with_logprobs=False):
        self.calls.append((len(prompts), n))
        if with_logprobs:
            return [[self._sample(p, y, True) for y in self.samples[p][:n]] for p in prompts]
        return [[self._sample(p, y, False) for y in self.pair_texts.get(p, (f"{p}/a", f"{p}/b"))] for p in prompts]

    def logprobs(self, which, prompts, completions):
        table = self.lp_policy if which == "policy" else self.lp_ref
        text = {tuple(v): k for k, v in self.ids.items()}
        return np.array([table[(p, text[tuple(c)])] for p, c in zip(prompts, completions, strict=True)], dtype=float)


def _world(n_prompts=6, n_samples=4):
    prompts = [Prompt(id=f"p{i}", text=f"x{i}") for i in range(n_prompts)]
    samples, lp_pol, lp_ref = {}, {}, {}
    for i, p in enumerate(prompts):
        ys = [f"y{i}_{k}" for k in range(n_samples)]
        samples[p.text] = ys
        for k, y in enumerate(ys):
            lp_pol[(p.text, y)] = -(i + 1) * (k + 1) * 0.5  # prompt i: larger i -> lower log-prob -> higher entropy
            lp_ref[(p.text, y)] = -(i + 1) * 0.5 - k * (0.1 * (i % 3))
        for k, y in enumerate((f"{p.text}/a", f"{p.text}/b")):  # the fresh pair
            lp_pol[(p.text, y)] = -1.0 - 0.3 * k * (i + 1)
            lp_ref[(p.text, y)] = -1.0 - 0.1 * k * ((i * 7) % 5)
    return prompts, samples, lp_pol, lp_ref


def test_entropy_is_minus_mean_logprob_and_ranks_high_first():
    prompts, samples, lp_pol, lp_ref = _world()
    acq = AcquisitionConfig(prompt_batch=6, acquire_batch=2, entropy_samples=4)
    ctx = ControlledContext(acq, samples, lp_pol, lp_ref)
    cands = get_scorer("entropy").propose(ctx, prompts)
    for i, c in enumerate(cands):
        want = -np.mean([-(i + 1) * (k + 1) * 0.5 for k in range(4)])  # = (i+1)*1.25
        assert c.entropy == pytest.approx(want)
        assert not c.has_pair  # the MC samples only estimate H
    ctx.calls.clear()
    chosen = acquire(get_scorer("entropy"), ctx, prompts)
    # highest entropy = most uncertain = the two prompts with the lowest log-probs: x5 then x4
    assert [c.prompt.text for c in chosen] == ["x5", "x4"]
    assert chosen[0].score == pytest.approx(6 * 1.25)
    # the pair is generated afresh after the entropy filter (§3.1.3), and only for the M chosen
    assert [(c.y0, c.y1) for c in chosen] == [("x5/a", "x5/b"), ("x4/a", "x4/b")]
    assert ctx.calls == [(6, 4), (2, 2)]
    r0 = BETA * (lp_pol[("x5", "x5/a")] - lp_ref[("x5", "x5/a")])
    assert chosen[0].reward0 == pytest.approx(r0)


def test_certainty_is_abs_implicit_reward_gap():
    prompts, samples, lp_pol, lp_ref = _world()
    acq = AcquisitionConfig(prompt_batch=6, acquire_batch=3)
    ctx = ControlledContext(acq, samples, lp_pol, lp_ref)
    sc = get_scorer("certainty")
    cands = sc.propose(ctx, prompts)
    scores = sc.score(ctx, cands)
    for _i, (c, s) in enumerate(zip(cands, scores, strict=False)):
        r0 = BETA * (lp_pol[(c.prompt.text, c.y0)] - lp_ref[(c.prompt.text, c.y0)])
        r1 = BETA * (lp_pol[(c.prompt.text, c.y1)] - lp_ref[(c.prompt.text, c.y1)])
        assert (c.reward0, c.reward1) == pytest.approx((r0, r1))
        assert s == pytest.approx(abs(r1 - r0))
        assert c.bt_prob == pytest.approx(1 / (1 + math.exp(-(r1 - r0))))
    chosen = acquire(sc, ctx, prompts)
    want = sorted(range(6), key=lambda i: -scores[i])[:3]
    assert [c.prompt.text for c in chosen] == [f"x{i}" for i in want]


def test_entropy_certainty_filters_by_entropy_then_certainty():
    prompts, samples, lp_pol, lp_ref = _world(n_prompts=8)
    acq = AcquisitionConfig(prompt_batch=4, acquire_batch=2, entropy_samples=4, entropy_pool=2)
    ctx = ControlledContext(acq, samples, lp_pol, lp_ref)
    sc = get_scorer("entropy+certainty")
    assert sc.prompts_needed(acq) == 8  # J×S
    kept = sc.propose(ctx, prompts)
    assert sorted(c.prompt.text for c in kept) == ["x4", "x5", "x6", "x7"]  # top S=4 by entropy
    assert all(c.y0 == f"{c.prompt.text}/a" for c in kept)  # new pairs for the S kept, not the entropy samples
    chosen = acquire(sc, ctx, prompts)
    ctx.fill_rewards(kept)
    gaps = {c.prompt.text: abs(c.reward1 - c.reward0) for c in kept}
    best = sorted(gaps, key=lambda t: -gaps[t])[:2]
    assert [c.prompt.text for c in chosen] == best


def test_entropy_certainty_ranks_the_whole_pool_when_j_times_s_exceeds_it():
    """J×S = 16 > 8 prompts: every prompt is drawn once (none twice), the top S by entropy kept, as with J×S = 8."""
    prompts, samples, lp_pol, lp_ref = _world(n_prompts=8)
    acq = AcquisitionConfig(prompt_batch=4, acquire_batch=2, entropy_samples=4, entropy_pool=4)
    sc = get_scorer("entropy+certainty")
    assert (sc.prompts_needed(acq), sc.min_prompts(acq)) == (16, 4)
    ctx = ControlledContext(acq, samples, lp_pol, lp_ref)
    seen = []
    propose = sc.propose
    sc.propose = lambda c, ps: seen.extend(ps) or propose(c, ps)
    chosen = acquire(sc, ctx, prompts)
    assert sorted(p.text for p in seen) == [f"x{i}" for i in range(8)]
    whole = acquire(
        get_scorer("entropy+certainty"), ControlledContext(dataclasses.replace(acq, entropy_pool=2), samples, lp_pol, lp_ref), prompts
    )
    assert [c.prompt.text for c in chosen] == [c.prompt.text for c in whole]  # the same draw as J×S = 8, the whole pool
    with pytest.raises(ValueError, match="needs 12 prompts per step but the train pool has 8"):
        acquire(sc, ControlledContext(dataclasses.replace(acq, prompt_batch=12), samples, lp_pol, lp_ref), prompts)


def test_random_generates_only_m_and_fills_rewards_for_bt_analysis():
    prompts, samples, lp_pol, lp_ref = _world()
    acq = AcquisitionConfig(prompt_batch=6, acquire_batch=2)
    ctx = ControlledContext(acq, samples, lp_pol, lp_ref, seed=3)
    sc = get_scorer("random")
    assert sc.prompts_needed(acq) == 2
    chosen = acquire(sc, ctx, prompts)
    assert len(chosen) == 2
    assert all(c.reward0 is not None and c.bt_prob is not None for c in chosen)
    again = acquire(sc, ControlledContext(acq, samples, lp_pol, lp_ref, seed=3), prompts)
    assert [c.prompt.id for c in chosen] == [c.prompt.id for c in again]


def test_top_k_breaks_ties_by_seed_not_position():
    s = np.zeros(10)
    picks = {tuple(top_k(s, 3, seed)) for seed in range(20)}
    assert len(picks) > 1
    assert top_k(np.array([0.1, 0.9, 0.5]), 2, 0) == [1, 2]


def test_user_scorer_registers_and_runs():
    @register_scorer
    class Longest(Scorer):
        name = "test-longest"

        def score(self, ctx, cands):
            return np.array([len(c.y0) + len(c.y1) for c in cands], dtype=float)

    try:
        prompts = [Prompt(id=str(i), text=f"x{i}") for i in range(4)]
        pairs = {p.text: ("a" * (i + 1), "b") for i, p in enumerate(prompts)}
        lp = {(p.text, y): -1.0 for p in prompts for y in pairs[p.text]}
        ctx = ControlledContext(AcquisitionConfig(prompt_batch=4, acquire_batch=1), {}, lp, lp, pairs=pairs)
        assert [c.prompt.text for c in acquire(get_scorer("test-longest"), ctx, prompts)] == ["x3"]
    finally:
        SCORERS.pop("test-longest")


def test_bad_scorer_output_and_small_pool_fail_clearly():
    class Broken(Scorer):
        name = "broken"

        def score(self, ctx, cands):
            return np.zeros(1)

    prompts, samples, lp_pol, lp_ref = _world()
    ctx = ControlledContext(AcquisitionConfig(prompt_batch=6, acquire_batch=2), samples, lp_pol, lp_ref)
    with pytest.raises(ValueError, match="returned"):
        acquire(Broken(), ctx, prompts)
    ctx2 = ControlledContext(AcquisitionConfig(prompt_batch=60, acquire_batch=2), samples, lp_pol, lp_ref)
    with pytest.raises(ValueError, match="needs 60 prompts"):
        acquire(get_scorer("certainty"), ctx2, prompts)
    with pytest.raises(ValueError, match="unknown strategy"):
        get_scorer("nope")


def test_candidate_bt_prob_is_sigmoid_of_reward_gap():
    c = Candidate(Prompt("a", "x"), "y0", "y1", reward0=0.3, reward1=-0.2)
    assert c.bt_prob == pytest.approx(1 / (1 + math.exp(0.5)))
    assert Candidate(Prompt("a", "x"), "y0", "y1").bt_prob is None


def test_at_theta0_certainty_takes_randoms_draw_and_computes_nothing():
    """At θ0 every |r̂1 − r̂0| is 0: certainty's step 1 is random's (same prompts, same pairs), with no pair wasted."""
    prompts, samples, lp_pol, lp_ref = _world(n_prompts=8)
    acq = AcquisitionConfig(prompt_batch=6, acquire_batch=2)

    class NoLogprobs(ControlledContext):
        def logprobs(self, which, prompts, completions):
            raise AssertionError("no forward pass is needed at θ0")

    rnd = acquire(get_scorer("random"), NoLogprobs(acq, samples, lp_pol, lp_ref, seed=5, at_theta0=True), prompts)
    ctx = NoLogprobs(acq, samples, lp_pol, lp_ref, seed=5, at_theta0=True)
    cert = acquire(get_scorer("certainty"), ctx, prompts)
    assert [(c.prompt.id, c.y0, c.y1) for c in cert] == [(c.prompt.id, c.y0, c.y1) for c in rnd]
    assert ctx.calls == [(2, 2)]  # M pairs generated, not S
    assert all(c.score == 0.0 and c.reward0 == c.reward1 == 0.0 and c.bt_prob == 0.5 for c in cert)
    # entropy+certainty still filters by entropy at θ0, then generates pairs only for the M it keeps
    acq2 = AcquisitionConfig(prompt_batch=4, acquire_batch=2, entropy_samples=4, entropy_pool=2)
    ctx2 = NoLogprobs(acq2, samples, lp_pol, lp_ref, seed=5, at_theta0=True)
    ec = acquire(get_scorer("entropy+certainty"), ctx2, prompts)
    assert ctx2.calls == [(8, 4), (2, 2)]
    assert {c.prompt.text for c in ec} <= {"x4", "x5", "x6", "x7"}  # from the top S by entropy


def _real_context(tiny, policy, batch_size=4):
    acq = AcquisitionConfig(prompt_batch=4, acquire_batch=2, batch_size=batch_size, max_new_tokens=5)
    return ScoringContext(policy, tiny.reference, tiny.tokenizer, acq, BETA, seed=3)


def test_certainty_takes_policy_logprobs_from_the_sampler_with_equal_rewards(tiny, monkeypatch):
    """fp32: r̂ of the sampled pairs needs one θ0 pass, not a policy pass too, and equals the two-pass r̂ to float noise."""
    import copy

    import torch

    import aplkit.generation as generation

    policy = copy.deepcopy(tiny.policy)
    with torch.no_grad():  # θ_t ≠ θ0, so r̂ ≠ 0
        for p in policy.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    prompts = [Prompt(id=f"p{i}", text=t) for i, t in enumerate(["The film was", "I went to see", "Worst acting", "A quiet"])]
    scored = []
    real = generation.ids_logprobs

    def counting(model, *a, **k):
        scored.append("policy" if model is policy else "reference")
        return real(model, *a, **k)

    monkeypatch.setattr(generation, "ids_logprobs", counting)
    ctx = _real_context(tiny, policy)
    cands = ctx.pairs(prompts)
    ctx.fill_rewards(cands)
    assert scored == ["reference"]  # one micro-batch pass of θ0 (8 rows, batch 4 → 2 calls inside, 1 call here)
    fast = np.array([[c.reward0, c.reward1] for c in cands])
    assert np.all(np.abs(fast) > 1e-4)
    two_pass = _real_context(tiny, policy)
    for c in cands:
        c.reward0 = c.reward1 = None
    two_pass.fill_rewards(cands)  # a fresh context sampled nothing: the policy is scored by a forward pass
    assert scored == ["reference", "policy", "reference"]
    slow = np.array([[c.reward0, c.reward1] for c in cands])
    np.testing.assert_allclose(fast, slow, atol=BETA * 1e-4, rtol=0)


def test_sampled_policy_logprobs_only_under_fp32_compute(tiny):
    """Under bf16 autocast the sampler's and a scoring pass's roundings differ and would not cancel in r̂: no shortcut."""
    import copy

    import torch

    from aplkit.models import set_compute_dtype

    policy = copy.deepcopy(tiny.policy)
    assert _real_context(tiny, policy).sampled_logprobs()
    set_compute_dtype(policy, torch.bfloat16)
    ctx = _real_context(tiny, policy)
    assert not ctx.sampled_logprobs()
    ctx.pairs([Prompt(id="p", text="The film was")])
    assert ctx._sampled == {}
