"""The scorers beyond the paper (aplkit.acquisition.beyond): the maths by hand, each scorer with a controlled context,
the pass counts against what a step really asks of the models, and one tiny-random acquire per scorer."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from aplkit.acquisition import (
    SCORERS,
    ScoringContext,
    acquire,
    bald_information,
    get_scorer,
    greedy_d_optimal,
    k_center,
    project,
    step_passes,
)
from aplkit.config import AcquisitionConfig
from aplkit.errors import ConfigError
from aplkit.records import Prompt
from tests.test_acquisition import BETA, ControlledContext, _world

ARENA = ("low-certainty", "bald", "d-optimal", "certainty+diverse")


def _h(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# --------------------------------------------------------------------------- maths by hand


def test_bald_information_by_hand():
    gaps = np.array([[0.0, 2.0, 1.0], [0.0, -2.0, 1.0]])  # K=2 draws × 3 pairs
    got = bald_information(gaps)
    # pair 0 and 2: both draws agree → 0; pair 1: σ(2), σ(−2) → mean ½: ln 2 − H(σ(2))
    assert got[0] == pytest.approx(0.0, abs=1e-12) and got[2] == pytest.approx(0.0, abs=1e-12)
    assert got[1] == pytest.approx(math.log(2) - _h(_sig(2.0)))
    assert got[1] == pytest.approx(0.32781, abs=1e-5)


def test_greedy_d_optimal_by_hand():
    x = np.array([[3.0, 0.0], [2.9, 0.2], [0.0, 1.0]])
    order, gains = greedy_d_optimal(x, reg=1.0)
    # 1st: x0 (1 + 9 = 10). Then A = diag(10, 1): x2 gives 1 + 1 = 2, the larger near-copy x1 only 1 + 0.841 + 0.04.
    # 3rd: A = diag(10, 2): x1 gives 1 + 8.41/10 + 0.04/2 (diag because x0, x2 are axis-aligned).
    assert order == [0, 2, 1]
    assert gains[[0, 2, 1]] == pytest.approx([math.log(10), math.log(2), math.log(1.861)])
    # the gains add up to log det(λI + Σ xxᵀ) − d log λ (matrix determinant lemma)
    assert gains.sum() == pytest.approx(np.linalg.slogdet(np.eye(2) + x.T @ x)[1])
    assert np.all(np.diff(gains[order]) <= 1e-12)  # never increase along the order: top-m by gain = greedy's first m


def test_k_center_by_hand():
    x = np.array([[0.0], [0.1], [5.0], [5.1], [10.0]])  # rows in score order
    assert k_center(x, 3) == [0, 4, 2]  # 0 first, then the farthest (10), then the farthest from {0, 10}: 5 (5.1 is 4.9 from 10)
    assert k_center(x, 1) == [0] and k_center(x, 9) == [0, 4, 2, 1, 3][: len(x)]


def test_projection_is_seeded_and_keeps_norms_roughly():
    f = np.random.default_rng(1).standard_normal((5, 200))
    a, b = project(f, 64), project(f, 64)
    assert np.array_equal(a, b) and a.shape == (5, 64)
    ratio = np.linalg.norm(a, axis=1) / np.linalg.norm(f, axis=1)
    assert np.all((ratio > 0.6) & (ratio < 1.4))


# --------------------------------------------------------------------------- scorers with a controlled context


class ArenaContext(ControlledContext):
    """ControlledContext plus the arena's two seams, with pass counting: features and dropout gaps come from tables."""

    def __init__(self, *a, features=None, gaps=None, **kw):
        super().__init__(*a, **kw)
        self.features, self.gaps = features or {}, gaps or {}
        self.count = {"scored": 0, "head": 0, "generated": 0, "sampled": 0}
        self.drawn: set[tuple[str, tuple[int, ...]]] = set()  # pairs this context sampled (their log-probs recorded)

    def generate(self, prompts, n, seed_offset=0, with_logprobs=False):
        self.count["generated"] += len(prompts) * n
        out = super().generate(prompts, n, seed_offset, with_logprobs)
        if not with_logprobs:  # as ScoringContext.generate: the entropy samples are not recorded, the pairs are
            self.drawn |= {(x, tuple(s.ids)) for x, row in zip(prompts, out, strict=True) for s in row}
        return out

    def logprobs(self, which, prompts, completions):
        mine = sum(which == "policy" and (x, tuple(c)) in self.drawn for x, c in zip(prompts, completions, strict=True))
        self.count["sampled"] += mine
        self.count["scored"] += len(prompts) - mine
        return super().logprobs(which, prompts, completions)

    def pair_features(self, cands):
        self.count["scored"] += 2 * len(cands)  # one policy pass per completion
        return np.array([self.features.get(c.prompt.text, np.zeros((2, 3))) for c in cands], dtype=float)

    def dropout_reward_gaps(self, cands, k, p):
        n = len(cands)
        self.count["scored"] += 2 * n + (0 if self.at_theta0 else 2 * n)
        self.count["head"] += 2 * n * k
        for c in cands:  # the deterministic r̂, from the tables (the passes are counted above)
            r = [
                0.0 if self.at_theta0 else BETA * (self.lp_policy[(c.prompt.text, y)] - self.lp_ref[(c.prompt.text, y)])
                for y in (c.y0, c.y1)
            ]
            c.reward0, c.reward1 = r
        return np.array([self.gaps.get(c.prompt.text, np.zeros(k)) for c in cands], dtype=float).T


def _gap(lp_pol, lp_ref, x):
    r = [BETA * (lp_pol[(x, f"{x}/{s}")] - lp_ref[(x, f"{x}/{s}")]) for s in "ab"]
    return r[1] - r[0]


def test_low_certainty_takes_the_smallest_gap_first_and_randoms_draw_at_theta0():
    prompts, samples, lp_pol, lp_ref = _world()
    acq = AcquisitionConfig(prompt_batch=6, acquire_batch=2)
    chosen = acquire(get_scorer("low-certainty"), ArenaContext(acq, samples, lp_pol, lp_ref), prompts)
    gaps = {p.text: abs(_gap(lp_pol, lp_ref, p.text)) for p in prompts}
    want = sorted(gaps, key=lambda t: gaps[t])[:2]
    assert [c.prompt.text for c in chosen] == want
    assert [c.score for c in chosen] == pytest.approx([-gaps[t] for t in want])
    rnd = acquire(get_scorer("random"), ArenaContext(acq, samples, lp_pol, lp_ref, seed=4, at_theta0=True), prompts)
    low = acquire(get_scorer("low-certainty"), ArenaContext(acq, samples, lp_pol, lp_ref, seed=4, at_theta0=True), prompts)
    assert [c.prompt.id for c in low] == [c.prompt.id for c in rnd]


def test_bald_ranks_by_disagreement_not_by_gap():
    prompts, samples, lp_pol, lp_ref = _world()
    acq = AcquisitionConfig(prompt_batch=6, acquire_batch=2, ensemble_size=3)
    gaps = {
        "x0": [3.0, 3.0, 3.0],  # confident and agreed: 0
        "x1": [2.0, -2.0, 0.0],  # disagreement
        "x2": [0.5, 0.4, 0.6],  # unsure but agreed: small
        "x3": [4.0, -4.0, 4.0],  # the most disagreement
    }
    ctx = ArenaContext(acq, samples, lp_pol, lp_ref, gaps=gaps)
    chosen = acquire(get_scorer("bald"), ctx, prompts)
    assert [c.prompt.text for c in chosen] == ["x3", "x1"]

    def mi(g):
        p = [_sig(v) for v in g]
        return _h(sum(p) / len(p)) - sum(_h(q) for q in p) / len(p)

    assert [c.score for c in chosen] == pytest.approx([mi(gaps["x3"]), mi(gaps["x1"])])
    assert chosen[0].reward1 - chosen[0].reward0 == pytest.approx(_gap(lp_pol, lp_ref, "x3"))  # the deterministic r̂ for Fig 3


def test_d_optimal_skips_a_near_copy():
    prompts, samples, lp_pol, lp_ref = _world(n_prompts=4)
    acq = AcquisitionConfig(prompt_batch=4, acquire_batch=2, feature_dim=8)
    z = np.zeros(3)
    feats = {  # φ(y0), φ(y1): differences x0 = x1 = (3,0,0) (copies), x2 = (0,1.5,0), x3 = 0
        "x0": [z, [3.0, 0, 0]],
        "x1": [[1.0, 0, 0], [4.0, 0, 0]],
        "x2": [[0, 1.0, 0], [0, 2.5, 0]],
        "x3": [z, z],
    }
    ctx = ArenaContext(acq, samples, lp_pol, lp_ref, features=feats)
    chosen = acquire(get_scorer("d-optimal"), ctx, prompts)
    assert chosen[0].prompt.text in ("x0", "x1") and chosen[1].prompt.text == "x2"  # not the copy, though it is larger
    x = project(np.array([np.subtract(*feats[p.text][::-1]) for p in prompts]), 8)
    order, gains = greedy_d_optimal(x, 1.0)
    assert [c.score for c in chosen] == pytest.approx(gains[order[:2]])
    assert gains[order[0]] == pytest.approx(math.log1p(x[0] @ x[0]))


def test_certainty_diverse_takes_the_top_pair_then_the_farthest():
    prompts, samples, lp_pol, lp_ref = _world()
    acq = AcquisitionConfig(prompt_batch=6, acquire_batch=2, diversity_pool=3, feature_dim=8)
    gaps = {p.text: abs(_gap(lp_pol, lp_ref, p.text)) for p in prompts}
    by_gap = sorted(gaps, key=lambda t: -gaps[t])
    far = by_gap[-1]  # the least certain pair sits far from the others in feature space
    feats = {far: [[10.0, 0, 0], [10.0, 0, 0]]}
    chosen = acquire(get_scorer("certainty+diverse"), ArenaContext(acq, samples, lp_pol, lp_ref, features=feats), prompts)
    assert [c.prompt.text for c in chosen] == [by_gap[0], far]  # certainty alone takes by_gap[:2]
    assert chosen[1].score == pytest.approx(gaps[far])  # the recorded score is still certainty's


def test_pass_counts_match_what_a_step_asks_of_the_models():
    """Passes (the report's FLOPs model) against a counting context, for every built-in scorer, at θ0 and after."""
    prompts, samples, lp_pol, lp_ref = _world(n_prompts=16, n_samples=3)
    acq = AcquisitionConfig(prompt_batch=4, acquire_batch=2, entropy_samples=3, entropy_pool=2, ensemble_size=3, diversity_pool=1)
    for name in sorted(SCORERS):
        for theta0 in (True, False):
            ctx = ArenaContext(acq, samples, lp_pol, lp_ref, seed=2, at_theta0=theta0)
            acquire(get_scorer(name), ctx, prompts)
            want = step_passes(get_scorer(name), acq, theta0)
            got = (ctx.count["generated"], ctx.count["scored"], ctx.count["head"], ctx.count["sampled"])
            assert (want.generated, want.scored, want.head, want.sampled) == got, (name, theta0)


def test_bad_arena_settings_fail_in_one_line():
    from aplkit.checks import load_config

    with pytest.raises(ConfigError, match=r"acquisition\.dropout"):
        load_config("imdb-cpu", ["acquisition.dropout=1.5"], strategy="bald")
    with pytest.raises(ConfigError, match=r"acquisition\.feature_dim"):
        load_config("imdb-cpu", ["acquisition.feature_dim=0"], strategy="d-optimal")


# --------------------------------------------------------------------------- the real seams on the tiny model


@pytest.fixture(scope="module")
def moved(tiny):
    """θ_t ≠ θ0: a copy of the tiny policy with its output head nudged (the session model is left alone)."""
    import torch

    policy = copy.deepcopy(tiny.policy)
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        w = policy.get_output_embeddings().weight
        w.add_(0.05 * torch.randn(w.shape, generator=g))
    return policy


def _ctx(tiny, policy, at_theta0=False, **kw):
    acq = AcquisitionConfig(prompt_batch=6, acquire_batch=2, max_new_tokens=4, batch_size=4, ensemble_size=3, feature_dim=8, **kw)
    return ScoringContext(policy, tiny.reference, tiny.tokenizer, acq, BETA, seed=3, at_theta0=at_theta0)


def test_real_seams_agree_with_the_kits_logprobs(tiny, moved):
    import torch

    from aplkit.generation import prompt_ids

    ctx = _ctx(tiny, moved)
    prompts = [Prompt(id=str(i), text=t) for i, t in enumerate(["The film was", "I hated it because", "A quiet"])]
    cands = ctx.pairs(prompts)
    gaps = ctx.dropout_reward_gaps(cands, 3, 0.2)
    assert gaps.shape == (3, 3) and np.isfinite(gaps).all()
    det = [(c.reward0, c.reward1) for c in cands]
    fresh = [copy.copy(c) for c in cands]
    for c in fresh:
        c.reward0 = c.reward1 = None
    ctx.fill_rewards(fresh)
    assert np.array(det) == pytest.approx(np.array([(c.reward0, c.reward1) for c in fresh]), abs=1e-5)  # the same r̂ as certainty's code
    assert not np.allclose(gaps, gaps[0])  # the draws differ
    # the feature of y0 is the mean last hidden state over y0's tokens, by hand
    f = ctx.pair_features(cands[:1])
    c = cands[0]
    ids = torch.tensor([prompt_ids(tiny.tokenizer, [c.prompt.text])[0] + list(c.y0_ids)])
    with torch.no_grad():
        h = moved(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
    assert f[0, 0] == pytest.approx(h[-len(c.y0_ids) :].mean(0).numpy(), abs=1e-5)


def test_at_theta0_bald_needs_no_reference_pass(tiny):
    class NoRef(ScoringContext):
        def logprobs(self, which, prompts, completions):
            raise AssertionError("θ0's log-probs are the policy's own at θ0")

    c = _ctx(tiny, tiny.policy, at_theta0=True)
    ctx = NoRef(c.policy, c.reference, c.tokenizer, c.acq, BETA, c.seed, at_theta0=True)
    cands = ctx.pairs([Prompt(id="0", text="The film was"), Prompt(id="1", text="A quiet")])
    gaps = ctx.dropout_reward_gaps(cands, 2, 0.3)
    assert all(c.reward0 == c.reward1 == 0.0 for c in cands) and np.abs(gaps).max() > 0


def test_identical_completions_agree_under_every_dropout_draw(tiny, moved):
    """Draw k is one network for y0 and y1: a pair of two copies of one completion has gap exactly 0 in every draw."""
    ctx = _ctx(tiny, moved)
    cands = ctx.pairs([Prompt(id="0", text="The film was"), Prompt(id="1", text="A quiet")])
    same = [copy.copy(c) for c in cands]
    for c in same:
        c.y1, c.y1_ids = c.y0, list(c.y0_ids)
    gaps = ctx.dropout_reward_gaps(same + cands, 6, 0.3)
    assert gaps.shape == (6, 4) and np.all(gaps[:, :2] == 0.0)
    assert not np.allclose(gaps[:, 2:], gaps[0, 2:])  # a real pair's draws still differ


def _rows(tiny):
    from aplkit.generation import prompt_ids

    xs = ["The film was", "I hated it because", "A quiet", "The film was"]
    ys = [[1, 2, 3], [40, 41], [7, 8, 9, 10, 11], [500]]
    return prompt_ids(tiny.tokenizer, xs), ys


def test_dropout_draws_do_not_depend_on_batching(tiny, moved):
    """A row's K dropout log-probs are the same whatever batch it sits in, its batch size or the rows' order."""
    from aplkit.hidden import completion_states

    px, ys = _rows(tiny)
    pad = tiny.tokenizer.pad_token_id
    ref = completion_states(moved, px, ys, pad, masks=5, p=0.3, seed=11, batch_size=8).dropout_logprobs
    for bs in (1, 2, 3):
        got = completion_states(moved, px, ys, pad, masks=5, p=0.3, seed=11, batch_size=bs).dropout_logprobs
        assert got.numpy() == pytest.approx(ref.numpy(), abs=1e-5), bs
    order = [2, 0, 3, 1]
    rev = completion_states(moved, [px[i] for i in order], [ys[i] for i in order], pad, masks=5, p=0.3, seed=11, batch_size=2)
    assert rev.dropout_logprobs.numpy() == pytest.approx(ref[:, order].numpy(), abs=1e-5)


def test_mask_k_drops_the_same_hidden_units_at_every_token_by_hand(tiny, moved):
    """Draw k's log-prob, by hand: the last hidden state at each completion position times the one [H] mask k."""
    import torch
    import torch.nn.functional as F

    from aplkit.hidden import completion_states, dropout_masks

    px, ys = _rows(tiny)
    got = completion_states(moved, px, ys, tiny.tokenizer.pad_token_id, masks=3, p=0.4, seed=5, batch_size=2).dropout_logprobs
    hidden = moved.config.hidden_size
    masks = dropout_masks(3, hidden, 0.4, seed=5)
    assert masks.shape == (3, hidden) and masks.unique().tolist() == pytest.approx([0.0, 1 / 0.6])
    assert not torch.equal(masks[0], masks[1])
    head = moved.get_output_embeddings()
    for i, (x, y) in enumerate(zip(px, ys, strict=True)):
        ids = torch.tensor([x + y])
        with torch.no_grad():
            h = moved(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
            for k in range(3):
                lp = F.log_softmax(head(h * masks[k]), -1)  # the same mask row at every position
                want = sum(lp[len(x) - 1 + t, tok].item() for t, tok in enumerate(y))  # position t predicts token t + 1
                assert got[k, i].item() == pytest.approx(want, abs=1e-4), (k, i)


def test_bald_takes_randoms_draw_at_theta0(tiny):
    """At θ0 bald's draws measure only dropout's noise: it takes random's prompts and pairs, scored 0, as certainty."""
    pool = [Prompt(id=str(i), text=f"Review {i}: the movie") for i in range(10)]
    picked = {}
    for name in ("random", "bald", "certainty"):
        chosen = acquire(get_scorer(name), _ctx(tiny, tiny.policy, at_theta0=True), pool)
        picked[name] = [(c.prompt.id, tuple(c.y0_ids), tuple(c.y1_ids)) for c in chosen]
        if name != "random":
            assert all(c.score == 0.0 and c.reward0 == c.reward1 == 0.0 for c in chosen)
    assert picked["bald"] == picked["random"] == picked["certainty"]
    assert step_passes(get_scorer("bald"), _ctx(tiny, tiny.policy).acq, True) == step_passes(
        get_scorer("random"), _ctx(tiny, tiny.policy).acq, True
    )


def test_bald_scores_zero_at_theta0_without_a_pass():
    """Reached at θ0 only through a selection rule (``diverse``): every score 0 and no model pass, as certainty's."""
    prompts, samples, lp_pol, lp_ref = _world()
    acq = AcquisitionConfig(prompt_batch=6, acquire_batch=2, ensemble_size=3)
    ctx = ArenaContext(acq, samples, lp_pol, lp_ref, gaps={"x1": [2.0, -2.0, 0.0]}, at_theta0=True)
    cands = ctx.pairs(prompts)
    assert np.array_equal(get_scorer("bald").score(ctx, cands), np.zeros(6))
    assert ctx.count["scored"] == ctx.count["head"] == 0 and all(c.reward0 == c.reward1 == 0.0 for c in cands)
    assert get_scorer("bald").passes(acq, True) == get_scorer("certainty").passes(acq, True)


@pytest.mark.parametrize("name", ARENA)
def test_each_arena_scorer_acquires_on_tiny_random(tiny, moved, name):
    pool = [Prompt(id=str(i), text=t) for i, t in enumerate(f"Review {i}: the movie" for i in range(10))]
    chosen = acquire(get_scorer(name), _ctx(tiny, moved), pool)
    assert len(chosen) == 2 and len({c.prompt.id for c in chosen}) == 2
    assert all(c.has_pair and c.bt_prob is not None and math.isfinite(c.score) for c in chosen)


class PassCounter:
    """What one acquire really asks of the two models: sampled sequences (``generate`` rows × returns), full forward
    rows outside ``generate`` (scoring passes), and output-head products outside a forward (per completion: the rows
    of the policy pass they follow)."""

    def __init__(self, monkeypatch, policy, reference):
        self.generated = self.scored = self.head = 0
        self._in_generate = self._in_forward = False
        self._rows = 0
        self.handles = [policy.get_output_embeddings().register_forward_hook(self._head)]
        for m in (policy, reference):
            monkeypatch.setattr(m, "generate", self._generate(m.generate))
            self.handles += [m.register_forward_pre_hook(self._pre, with_kwargs=True), m.register_forward_hook(self._post)]

    def _generate(self, fn):
        def wrapped(*a, **kw):
            self.generated += kw["input_ids"].shape[0] * kw.get("num_return_sequences", 1)
            self._in_generate = True
            try:
                return fn(*a, **kw)
            finally:
                self._in_generate = False

        return wrapped

    def _pre(self, module, args, kwargs):
        self._in_forward = True
        if not self._in_generate:
            self._rows = (kwargs.get("input_ids") if "input_ids" in kwargs else args[0]).shape[0]
            self.scored += self._rows

    def _post(self, module, args, out):
        self._in_forward = False

    def _head(self, module, args, out):
        if not (self._in_forward or self._in_generate):  # bald's dropout draws: one product per completion of the batch
            self.head += self._rows

    def close(self):
        for h in self.handles:
            h.remove()


BUILT_IN = ("random", "entropy", "certainty", "entropy+certainty", *ARENA)


@pytest.mark.parametrize("name", BUILT_IN)
def test_pass_counts_match_the_forward_passes_of_a_real_step(tiny, moved, monkeypatch, name):
    """``step_passes`` (the cost table's model) against the passes one acquire makes on the tiny model: at θ0 and
    after, with the sampler's recorded log-probs (fp32) and without them (as under bf16 or suppressed tokens)."""
    assert {n for n, c in SCORERS.items() if c.__module__.startswith("aplkit.")} == set(BUILT_IN)  # a new scorer is counted here
    pool = [Prompt(id=str(i), text=f"Review {i}: the movie") for i in range(10)]
    acq = AcquisitionConfig(
        prompt_batch=4,
        acquire_batch=2,
        entropy_samples=2,
        entropy_pool=2,
        max_new_tokens=4,
        batch_size=16,
        ensemble_size=2,
        diversity_pool=1,
    )
    for theta0, recorded in ((True, True), (False, True), (False, False)):
        policy = tiny.policy if theta0 else moved
        ctx = ScoringContext(policy, tiny.reference, tiny.tokenizer, acq, BETA, seed=5, at_theta0=theta0)
        with monkeypatch.context() as mp:
            if not recorded:
                mp.setattr(ScoringContext, "sampled_logprobs", lambda self: False)
            count = PassCounter(mp, policy, tiny.reference)
            try:
                acquire(get_scorer(name), ctx, pool)
            finally:
                count.close()
        assert ctx.sampled_logprobs() is True  # fp32 on CPU: the first two cases are the sampler's record
        p = step_passes(get_scorer(name), acq, theta0)
        got = (count.generated, count.scored, count.head)
        assert (p.generated, p.scored + (0 if recorded else p.sampled), p.head) == got, (name, theta0, recorded)
        assert p.sequence_passes(sampled_logprobs=recorded) == sum(got)


# --------------------------------------------------------------------------- the comparison: ranking and cost


def test_ranking_and_cost_by_hand(tmp_path):
    from scipy import stats

    from aplkit import results as R
    from aplkit.results.report import report
    from tests.synthetic_runs import make_run

    runs = tmp_path / "runs"
    final = {"random": (0.5, 0.6), "low-certainty": (0.55, 0.70), "bald": (0.45, 0.58)}
    seconds = {"random": 2.0, "low-certainty": 3.0, "bald": 5.0}
    for s, wins in final.items():
        for seed, w in enumerate(wins):
            make_run(runs, s, seed, {16: 0.5, 32: w}, acquire_s=seconds[s])
    rank = R.ranking(R.paired_comparison(R.load_runs(runs)), R.load_runs(runs))
    assert rank["strategy"].tolist() == ["low-certainty", "bald"] and rank["rank"].tolist() == [1, 2]
    assert (rank["acquired"] == 32).all()
    assert rank["mean_diff"].tolist() == pytest.approx([0.075, -0.035])
    lo, hi = stats.t.interval(0.95, 1, loc=0.075, scale=np.std([0.05, 0.10], ddof=1) / math.sqrt(2))
    assert (rank["t_low"].iloc[0], rank["t_high"].iloc[0]) == pytest.approx((lo, hi))

    cost = R.acquisition_cost(R.load_steps(runs), R.load_configs(runs)).set_index("strategy")
    assert cost.loc["low-certainty", "seconds_ratio"] == pytest.approx(1.5) and cost.loc["bald", "seconds_ratio"] == pytest.approx(2.5)
    # M=16, S=64, K=8, fp32 on CPU (the sampler records the policy's log-probs: r̂ of a pair costs its 2 θ0 passes).
    # random: step 1 (θ0) 2M = 32, step 2 2M + 2M = 64 → 48 per step. low-certainty: step 1 is random's draw (32),
    # step 2 2S + 2S = 256 → 144. bald: random's draw at θ0 (32), then 2S + 2S (states) + 2S θ0 passes + 2S·K = 1408 → 720.
    assert cost["passes"].to_dict() == pytest.approx({"random": 48, "bald": 720, "low-certainty": 144})
    assert cost.loc["bald", "flops_ratio"] == pytest.approx(15.0) and cost.loc["low-certainty", "flops_ratio"] == pytest.approx(3.0)
    written = report(runs, tmp_path / "fig")
    assert "ranking.png" in written and "3.00×" in written["cost.md"].read_text()
    # a step that ran without the sampler's record (bf16 on a GPU, conditional training) pays the policy pass: 2M + 4M, 2S + 4S
    from aplkit.results.compare import config_sampled_logprobs, step_sequence_passes

    acq = {"acquire_batch": 16, "prompt_batch": 64}
    assert [step_sequence_passes("random", acq, 2, sampled_logprobs=s) for s in (True, False)] == [64, 96]
    assert [step_sequence_passes("low-certainty", acq, 2, sampled_logprobs=s) for s in (True, False)] == [256, 384]
    assert [step_sequence_passes("certainty", acq, 1, sampled_logprobs=s) for s in (True, False)] == [32, 32]  # random's draw at θ0
    assert config_sampled_logprobs({"model": {"device": "auto", "dtype": "auto"}})
    assert not config_sampled_logprobs({"model": {"device": "cuda", "dtype": "auto"}})
    assert not config_sampled_logprobs({"model": {"dtype": "float32"}, "training": {"objective": "conditional"}})
    steps = R.load_steps(runs)
    steps["sampled_logprobs"] = False  # as steps.jsonl records it since: the row's own flag wins over the config
    cost = R.acquisition_cost(steps, R.load_configs(runs)).set_index("strategy")
    assert cost["passes"].to_dict() == pytest.approx({"random": (32 + 96) / 2, "bald": 720, "low-certainty": (32 + 384) / 2})
    assert pd.read_csv(written["ranking.csv"])["strategy"].tolist() == ["low-certainty", "bald"]


def test_ranking_is_one_holm_family_by_hand(tmp_path):
    """The ranked strategies are read at once: their paired t p-values are Holm-adjusted together (by hand: sorted
    p times m, m − 1, …, running max), and the verdict reads the interval at Holm's level, not the plain 95 % one."""
    from scipy import stats

    from aplkit import results as R
    from tests.synthetic_runs import make_run

    runs = tmp_path / "runs"
    # per-seed differences from random at 32 labels: a (+0.10, +0.11, +0.12), b (+0.06, +0.10, +0.12), c (−0.06, +0.01, +0.02)
    wins = {"random": [0.50, 0.50, 0.50], "a": [0.60, 0.61, 0.62], "b": [0.56, 0.60, 0.62], "c": [0.44, 0.51, 0.52]}
    for s, ws in wins.items():
        for seed, w in enumerate(ws):
            make_run(runs, s, seed, {16: 0.5, 32: w})
    df = R.load_runs(runs)
    rank = R.ranking(R.paired_comparison(df), df).set_index("strategy")
    d = {"a": [0.10, 0.11, 0.12], "b": [0.06, 0.10, 0.12], "c": [-0.06, 0.01, 0.02]}
    p = {s: stats.ttest_1samp(v, 0.0).pvalue for s, v in d.items()}
    assert p["a"] < p["b"] < p["c"]
    holm = {"a": 3 * p["a"]}
    holm["b"] = max(holm["a"], 2 * p["b"])
    holm["c"] = min(1.0, max(holm["b"], p["c"]))
    assert rank["p"].to_dict() == pytest.approx(p) and rank["p_holm"].to_dict() == pytest.approx(holm)
    # a: 3·p = 0.008 < 0.05 → better, its interval at level 1 − 0.05/3; b: p = 0.034 < 0.05 alone (plain verdict
    # better) but its Holm p 2·p = 0.068 > 0.05 → undecided; c undecided either way
    assert p["b"] < 0.05 < holm["b"] and holm["a"] < 0.05
    assert rank.loc["b", "verdict"] == "better" and rank["holm_verdict"].to_dict() == {"a": "better", "b": "undecided", "c": "undecided"}
    se = np.std(d["a"], ddof=1) / math.sqrt(3)
    lo, hi = stats.t.interval(1 - 0.05 / 3, 2, loc=0.11, scale=se)
    assert (rank.loc["a", "holm_low"], rank.loc["a", "holm_high"]) == pytest.approx((lo, hi))
    md = R.ranking_markdown(rank.reset_index())
    assert md.splitlines()[2].startswith("| 1 |") and "undecided" in md


def test_cost_ratio_is_taken_against_random_on_the_same_seeds(tmp_path):
    """Random run to more seeds on a slower machine (the CPU study: seeds 14–19 at ≈ 4× the seconds) must not
    change a 2-seed strategy's ratio: 3 s against random's 2 s on seeds 0–1 is 1.5×, not 3 / ((2 + 2 + 8) / 3)."""
    from aplkit import results as R
    from tests.synthetic_runs import make_run

    runs = tmp_path / "runs"
    for seed, secs in enumerate((2.0, 2.0, 8.0)):
        make_run(runs, "random", seed, {16: 0.5, 32: 0.6}, acquire_s=secs)
    for seed in (0, 1):
        make_run(runs, "low-certainty", seed, {16: 0.5, 32: 0.6}, acquire_s=3.0)
    make_run(runs, "bald", 7, {16: 0.5, 32: 0.6}, acquire_s=4.0)  # no seed in common: all of random's
    cost = R.acquisition_cost(R.load_steps(runs), R.load_configs(runs)).set_index("strategy")
    assert cost.loc["low-certainty", "seconds_ratio"] == pytest.approx(1.5)
    assert cost.loc["bald", "seconds_ratio"] == pytest.approx(1.0)
    assert cost.loc["random", "seconds_ratio"] == pytest.approx(1.0)


def test_the_readme_scorer_example_runs_as_written():
    """README "Add your own", "A scorer": its first code block, executed verbatim."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### A scorer", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 10 <= len([line for line in code.splitlines() if line.strip()]) <= 20
    try:
        exec(compile(code, "README.md", "exec"), {})
        prompts, samples, lp_pol, lp_ref = _world()
        acq = AcquisitionConfig(prompt_batch=6, acquire_batch=2)
        ctx = ArenaContext(acq, samples, lp_pol, lp_ref)
        chosen = acquire(get_scorer("dpo-weight"), ctx, prompts)
        w = {p.text: abs(_gap(lp_pol, lp_ref, p.text)) * _sig(-abs(_gap(lp_pol, lp_ref, p.text))) for p in prompts}
        assert [c.prompt.text for c in chosen] == sorted(w, key=lambda t: -w[t])[:2]
        assert [c.score for c in chosen] == pytest.approx(sorted(w.values(), reverse=True)[:2])
        p = step_passes(get_scorer("dpo-weight"), acq)
        assert (p.generated, p.scored, p.sampled) == (ctx.count["generated"], ctx.count["scored"], ctx.count["sampled"])  # what it ran
        rnd = acquire(get_scorer("random"), ArenaContext(acq, samples, lp_pol, lp_ref, seed=1, at_theta0=True), prompts)
        first = acquire(get_scorer("dpo-weight"), ArenaContext(acq, samples, lp_pol, lp_ref, seed=1, at_theta0=True), prompts)
        assert [c.prompt.id for c in first] == [c.prompt.id for c in rnd]
    finally:
        SCORERS.pop("dpo-weight", None)


_ARENA_RANK = {
    "strategy": ["certainty", "certainty+diverse", "d-optimal", "low-certainty", "bald", "entropy+certainty"],
    "n": 9,
    "mean_diff": [0.066, 0.014, 0.005, -0.012, -0.012, 0.045],
    "t_low": [0.001, -0.082, -0.070, -0.071, -0.056, -0.001],
    "t_high": [0.131, 0.111, 0.080, 0.048, 0.032, 0.091],
    "rank": [1, 3, 4, 5, 6, 2],
}
_STUDY_RANK = {  # the powered study's three rows: a short figure whose x tick labels ran into each other
    "strategy": ["entropy+certainty", "certainty", "entropy"],
    "n": [9, 30, 9],
    "mean_diff": [0.045, 0.041, -0.009],
    "t_low": [-0.001, 0.012, -0.070],
    "t_high": [0.091, 0.070, 0.051],
    "rank": [1, 2, 3],
}


@pytest.mark.parametrize("rows", [_ARENA_RANK, _STUDY_RANK], ids=["arena", "study"])
def test_ranking_figure_keeps_every_label_on_the_canvas(rows):
    """The ranking figure was cut on the right (its title and axis label wider than the figure once the long
    strategy names took the left) and its x tick labels ran together: every title, axis label and tick label must
    lie inside the canvas, and no two x tick labels may overlap."""
    from matplotlib import pyplot as plt

    from aplkit.results.plots import plot_ranking

    fig = plot_ranking(pd.DataFrame({"task": "imdb", "acquired": 64, **rows}))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()  # tick labels outside the view are not drawn
    xticks = [t for t, x in zip(ax.get_xticklabels(), ax.get_xticks(), strict=True) if lo <= x <= hi]
    for t in [ax.title, ax.xaxis.label, *ax.get_yticklabels(), *xticks]:
        box = t.get_window_extent(renderer)
        assert canvas.x0 - 1 <= box.x0 and box.x1 <= canvas.x1 + 1, f"{t.get_text()!r} leaves the canvas: {box} vs {canvas}"
        assert canvas.y0 - 1 <= box.y0 and box.y1 <= canvas.y1 + 1, f"{t.get_text()!r} leaves the canvas: {box} vs {canvas}"
    boxes = sorted((t.get_window_extent(renderer) for t in xticks), key=lambda b: b.x0)
    assert len(boxes) >= 3
    for a, b in itertools.pairwise(boxes):
        assert a.x1 < b.x0, "x tick labels overlap"
    plt.close(fig)


def test_hidden_logprobs_mask_suppressed_tokens_as_every_score_does(moved):
    """A policy that never emits some tokens (conditional training's control tokens) gets the same log πθ(y|x) from
    ``completion_states`` as from the kit's scoring pass, which masks them and renormalises."""
    import torch

    from aplkit.generation import ids_logprobs
    from aplkit.hidden import completion_states

    policy = copy.deepcopy(moved)
    px, ys = [[5, 6, 7], [8, 9]], [[10, 11, 12], [13]]
    plain = completion_states(policy, px, ys, 0).logprobs
    policy.aplkit_suppress_tokens = [3, 4]
    got = completion_states(policy, px, ys, 0).logprobs
    assert got.tolist() == pytest.approx(ids_logprobs(policy, px, ys, 0).double().tolist(), abs=1e-4)
    assert (got > plain).all()  # the suppressed tokens' mass went to the others
    assert torch.isfinite(got).all()
