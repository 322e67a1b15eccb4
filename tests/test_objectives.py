"""The PHF objectives against hand-computed values on a model whose log-probs the test sets, and their signs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from aplkit.checks import load_config
from aplkit.config import ConfigError, PHFLossConfig, TrainingConfig
from aplkit.objectives.segments import Document, Segment, encode, threshold, token_logprobs
from aplkit.objectives.trainer import LOSSES, SegmentTrainer, make_loss

P = [0.5, 0.25, 0.125, 0.125]  # every position: p(0) = 1/2, p(1) = 1/4, p(2) = p(3) = 1/8
LN2 = math.log(2)


class Fixed(torch.nn.Module):
    """A 'language model' whose next-token distribution is ``probs`` at every position, whatever it reads."""

    def __init__(self, probs=P, hidden: int = 3):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.log(torch.tensor(probs)))
        self.config = SimpleNamespace(hidden_size=hidden)
        self.hidden = hidden

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
        b, n = input_ids.shape
        logits = self.logits.expand(b, n, -1)
        states = (torch.ones(b, n, self.hidden),) if output_hidden_states else None
        return SimpleNamespace(logits=logits, hidden_states=states)


# one document: a good segment [0, 1] (R = −0.2), a bad one [2] (R = −0.8); a start token 3; t = −0.5
DOC = Document([Segment([0, 1], -0.2), Segment([2], -0.8)])
T = -0.5


def _loss(name, **cfg):
    loss = make_loss(name, PHFLossConfig(**cfg))
    batch = encode([DOC], T, loss, pad_id=3, prefix=[3])
    head = None
    if loss.uses_values:
        head = torch.nn.Linear(3, 1)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.constant_(head.bias, 0.1)  # V = 0.1 everywhere
    logp, values, *log1m = token_logprobs(Fixed(), batch, head, loss.complement(batch))
    return float(loss.loss(logp, batch, values, *log1m)[0].detach()), batch


def test_mle_by_hand():
    value, batch = _loss("mle")
    assert batch.input_ids.tolist() == [[3, 0, 1, 2]] and batch.tokens == 3
    assert value == pytest.approx((LN2 + 2 * LN2 + 3 * LN2) / 3)


def test_filtering_keeps_or_drops_whole_documents_by_their_mean_reward():
    """Scores: A (−0.2, −0.8) → −0.5, B (−0.1, −0.3, −0.95) → −0.45, C (−0.7) → −0.7; t, their median, is −0.5.
    A (at t) and B are trained on whole, B's worst sentence included; C is left out, its row the start token alone."""
    a = Document([Segment([0, 1], -0.2), Segment([2], -0.8)])
    b = Document([Segment([1], -0.1), Segment([0], -0.3), Segment([2, 2], -0.95)])
    c = Document([Segment([0, 1, 2], -0.7)])
    loss = make_loss("filtering", PHFLossConfig())
    assert loss.scores([a, b, c]) == pytest.approx([-0.5, -0.45, -0.7])
    t = threshold(loss.scores([a, b, c]), 50.0)
    assert t == pytest.approx(-0.5)
    batch = encode([a, b, c], t, loss, pad_id=3, prefix=[3])
    assert batch.input_ids.tolist() == [[3, 0, 1, 2, 3], [3, 1, 0, 2, 2], [3, 3, 3, 3, 3]]
    assert batch.trained.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    logp, _ = token_logprobs(Fixed(), batch)
    value = float(loss.loss(logp, batch)[0])
    assert value == pytest.approx((LN2 + 2 * LN2 + 3 * LN2 + 2 * LN2 + LN2 + 3 * LN2 + 3 * LN2) / 7)
    # the segment threshold of the other objectives is untouched: a percentile of every segment's reward
    assert make_loss("mle", PHFLossConfig()).scores([a, c]) == [-0.2, -0.8, -0.7]


def test_unlikelihood_by_hand():
    value, _ = _loss("unlikelihood", alpha=0.5)
    assert value == pytest.approx((LN2 + 2 * LN2 - 0.5 * math.log(1 - 0.125)) / 3)
    zero, _ = _loss("unlikelihood", alpha=0.0)  # α = 0 is MLE on the good tokens only (over all trained tokens)
    assert zero == pytest.approx((LN2 + 2 * LN2) / 3)


def _unlikelihood_grad(probs, doc, t, alpha=1.0):
    """Unlikelihood's value, log(1 − π) per target and ∂L/∂logits on the fixed model."""
    model = Fixed(probs)
    loss = make_loss("unlikelihood", PHFLossConfig(alpha=alpha))
    batch = encode([doc], t, loss, pad_id=3, prefix=[3])
    logp, _, log1m = token_logprobs(model, batch, complement=loss.complement(batch))
    value = loss.loss(logp, batch, log1m=log1m)[0]
    value.backward()
    return float(value), log1m.detach()[0].tolist(), model.logits.grad.tolist()


def test_unlikelihood_log1m_and_gradient_by_hand():
    """Bad tokens 0 (p ½) and 2 (p ⅛), a good token 1: log(1 − p) there, 0 elsewhere; ∂(−log(1 − p_y))/∂z_k is
    p_y for k = y and −p_k p_y / (1 − p_y) otherwise."""
    doc = Document([Segment([0, 2], -0.8), Segment([1], -0.2)])
    value, log1m, grad = _unlikelihood_grad(P, doc, T, alpha=0.5)
    assert log1m == pytest.approx([math.log(0.5), math.log(0.875), 0.0], abs=1e-6)
    term = -0.5 * (math.log(0.5) + math.log(0.875))  # the unlikelihood term is positive: a cost
    assert term > 0 and value == pytest.approx((term + 2 * LN2) / 3, rel=1e-6)

    def d(y):
        return [P[y] if k == y else -P[k] * P[y] / (1 - P[y]) for k in range(4)]

    expect = [(0.5 * (a + b) + (P[k] - (k == 1))) / 3 for k, (a, b) in enumerate(zip(d(0), d(2), strict=True))]
    assert grad == pytest.approx(expect, abs=1e-6)


def test_unlikelihood_keeps_its_gradient_on_a_bad_token_the_model_is_sure_of():
    """p(0) = 1 − 1e-9: log(1 − p) = log 1e-9 (clamping p at 1 − 1e-6 gave log 1e-6 and no gradient), and
    ∂L/∂z = (p_0, −p_k p_0/(1 − p_0)) ≈ (1, −⅓, −⅓, −⅓): descent lowers the bad token's logit."""
    sure = [1 - 1e-9] + [1e-9 / 3] * 3
    value, log1m, grad = _unlikelihood_grad(sure, Document([Segment([0], -0.8)]), T)
    assert log1m == pytest.approx([math.log(1e-9)], rel=1e-5) and value == pytest.approx(-math.log(1e-9), rel=1e-5)
    assert all(math.isfinite(g) for g in grad) and grad == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3], rel=1e-4)
    model = Fixed(sure)  # one optimiser step through the trainer moves that logit down
    trainer = SegmentTrainer(model, make_loss("unlikelihood", PHFLossConfig()), TrainingConfig(lr=0.1), pad_id=3, prefix=[3])
    before = model.logits.detach().clone()
    st = trainer.step([Document([Segment([0], -0.8)])], T)
    assert st["loss"] == pytest.approx(-math.log(1e-9), rel=1e-5) and model.logits[0] < before[0] - 0.05


def test_rwr_by_hand():
    value, _ = _loss("rwr", beta=0.5)
    assert value == pytest.approx((math.exp(-0.4) * 3 * LN2 + math.exp(-1.6) * 3 * LN2) / 3)


def test_awr_by_hand():
    value, _ = _loss("awr", beta=0.5, value_weight=2.0, max_weight=20.0)
    w_good, w_bad = math.exp((-0.2 - 0.1) / 0.5), math.exp((-0.8 - 0.1) / 0.5)
    lm = (w_good * 3 * LN2 + w_bad * 3 * LN2) / 3
    v = (2 * (-0.2 - 0.1) ** 2 + (-0.8 - 0.1) ** 2) / 3
    assert value == pytest.approx(lm + 2.0 * v)


def test_awr_clips_large_weights():
    loss = make_loss("awr", PHFLossConfig(beta=0.1, value_weight=1.0, max_weight=2.0))
    batch = encode([Document([Segment([0], 1.0)])], 0.0, loss, pad_id=3, prefix=[3])
    head = torch.nn.Linear(3, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)  # V = 0, so A = 1 and exp(A/β) = e¹⁰, clipped to 2
    logp, values = token_logprobs(Fixed(), batch, head)
    assert float(loss.loss(logp, batch, values)[0]) == pytest.approx(2.0 * LN2 + 1.0)


def test_conditional_layout_and_loss(tokenizer):
    from aplkit.objectives.conditional import BAD, GOOD

    tok = type(tokenizer).from_pretrained(tokenizer.name_or_path)  # a private copy: the session tokenizer stays as it is
    loss = make_loss("conditional", PHFLossConfig(), tok)
    good, bad = tok.convert_tokens_to_ids(GOOD), tok.convert_tokens_to_ids(BAD)
    assert tok.decode([good]) == GOOD and good != bad
    batch = encode([DOC], T, loss, pad_id=3, prefix=[3])
    assert batch.input_ids.tolist() == [[3, good, 0, 1, bad, 2]]
    assert batch.good.tolist() == [[True, True, True, False, False]]
    # every token, control tokens included, is trained with MLE
    probs = [0.5, 0.25, 0.125, 0.0625] + [0.0] * (good - 4) + [0.03125, 0.03125]
    probs[0] += 1 - sum(probs)
    model = Fixed(probs)
    logp, _ = token_logprobs(model, batch)
    value = float(loss.loss(logp, batch)[0])
    expect = -(math.log(0.03125) * 2 + math.log(probs[0]) + math.log(0.25) + math.log(0.125)) / 5
    assert value == pytest.approx(expect, rel=1e-5)


def test_threshold_is_the_percentile_and_filtering_keeps_exactly_the_documents_above_it():
    rewards = [-(i % 97) / 97 for i in range(1000)]
    t = threshold(rewards, 30.0)
    assert sum(r < t for r in rewards) == pytest.approx(300, abs=11)
    docs = [Document([Segment([j % 3], r) for j, r in enumerate(rewards[k : k + k % 7 + 1])]) for k in range(0, 1000, 10)]
    loss = LOSSES["filtering"]()
    t = threshold(loss.scores(docs), 30.0)
    kept = [d for d in docs if sum(s.reward for s in d.segments) / len(d.segments) >= t]
    assert 0.6 < len(kept) / len(docs) < 0.8
    batch = encode(docs, t, loss, pad_id=3, prefix=[3])
    assert batch.tokens == sum(len(d.segments) for d in kept)
    assert sorted(batch.reward[batch.trained.bool()].tolist()) == pytest.approx(sorted(s.reward for d in kept for s in d.segments))


def _one_step(name, docs=(DOC,), **cfg):
    model = Fixed()
    trainer = SegmentTrainer(model, make_loss(name, PHFLossConfig(**cfg)), TrainingConfig(lr=0.1, optimizer="adam"), pad_id=3, prefix=[3])
    before = torch.softmax(model.logits.detach(), -1).clone()
    trainer.step(list(docs), T)
    return before, torch.softmax(model.logits.detach(), -1)


def test_signs_mle_raises_and_unlikelihood_lowers_the_bad_tokens_probability():
    before, after = _one_step("mle")
    assert after[2] > before[2] and after[3] < before[3]  # trained tokens up, the untrained one down
    before, after = _one_step("unlikelihood", alpha=5.0)
    assert after[2] < before[2]  # the bad segment's token is pushed down
    before, after = _one_step("filtering", [Document([Segment([0, 1], -0.2)]), Document([Segment([2], -0.8)])])
    assert after[2] < before[2]  # the bad document is not trained on, so its token loses mass to the kept one's


def test_rwr_weighs_high_reward_segments_more():
    g = {}
    for name in ("mle", "rwr"):
        model = Fixed()
        loss = make_loss(name, PHFLossConfig(beta=0.2))
        batch = encode([DOC], T, loss, pad_id=3, prefix=[3])
        logp, _ = token_logprobs(model, batch)
        loss.loss(logp, batch)[0].backward()
        g[name] = model.logits.grad.clone()
    # ∂L/∂logit_k = (Σ_t w_t p_k − Σ_{t: x_t = k} w_t) / 3 with targets 0, 1 (w = e^(−0.2/β)) and 2 (w = e^(−0.8/β))
    wg, wb = math.exp(-0.2 / 0.2), math.exp(-0.8 / 0.2)
    expect = [((2 * wg + wb) * P[k] - (wg if k in (0, 1) else wb if k == 2 else 0.0)) / 3 for k in range(4)]
    assert g["rwr"].tolist() == pytest.approx(expect, abs=1e-6)
    # sign: MLE raises the bad segment's token (descent on a negative gradient); RWR at β = 0.2 lowers it
    assert g["mle"][2] < 0 < g["rwr"][2]


def test_control_tokens_never_sampled(tokenizer):
    from aplkit.generation import sample_ids
    from aplkit.models import load_policy

    tok = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    model = load_policy("tiny-random", torch.device("cpu"), torch.float32, seed=0)
    loss = make_loss("conditional", PHFLossConfig(), tok, [model])
    with torch.no_grad():  # make the control tokens by far the likeliest next token everywhere
        model.get_output_embeddings().weight[loss.suppress] *= 0
        model.lm_head.weight[loss.suppress] += 50 * model.model.norm.weight.sign()
    prompts = [[0, loss.good_id, 1, 2]] * 4
    free = sample_ids(model, prompts, tok.pad_token_id, None, max_new_tokens=6, seed=0)
    assert sum(t in loss.suppress for r in free for t in r) > 0  # without suppression they are emitted
    model.aplkit_suppress_tokens = loss.suppress
    held = sample_ids(model, prompts, tok.pad_token_id, None, max_new_tokens=6, seed=0)
    assert all(len(r) == 6 for r in held) and not any(t in loss.suppress for r in held for t in r)


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("training.objective", "nope", "training.objective"),
        ("training.phf.threshold_percentile", 100, "training.phf.threshold_percentile"),
        ("training.phf.threshold_percentile", 0, "training.phf.threshold_percentile"),
        ("training.phf.alpha", -0.1, "training.phf.alpha"),
    ],
)
def test_bad_settings_fail_in_one_line_naming_the_field(key, value, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as e:
        load_config("imdb-cpu", {key: value})
    assert "\n" not in str(e.value)


def test_run_folders_from_before_the_seam_still_resume(tmp_path):
    """A config.yaml without training.objective / training.phf is the same experiment as objective=dpo at the defaults."""
    import yaml

    from aplkit.runfolder import RunFolder

    cfg = load_config("imdb-cpu")
    old = cfg.to_dict()
    del old["training"]["objective"], old["training"]["phf"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    RunFolder(tmp_path).check_config(cfg.to_dict())  # no error
    with pytest.raises(ConfigError, match="training.objective"):
        RunFolder(tmp_path).check_config(load_config("imdb-cpu", ["training.objective=conditional"]).to_dict())
    with pytest.raises(ConfigError, match=r"training\.phf"):
        RunFolder(tmp_path).check_config(load_config("imdb-cpu", ["training.phf.alpha=2"]).to_dict())


# three labelled pairs whose completions differ in length, so micro-batches hold unequal shares of the tokens
ONLINE = [((5, 6, 7, 8, 9, 10), (11,)), ((12,), (13, 14)), ((15, 16, 17), (18, 19, 20, 21))]


def _online_step(tiny, batch_size: int, mode: str = "online", micro_batch_size: int | None = None):
    import copy
    import dataclasses

    from aplkit.objectives.preferences import PreferenceObjective
    from aplkit.records import Preference

    policy = copy.deepcopy(tiny.reference)
    for p in policy.parameters():
        p.requires_grad_(True)
    cfg = TrainingConfig(
        objective="unlikelihood", mode=mode, epochs=1, online_steps=1, batch_size=batch_size, micro_batch_size=micro_batch_size, lr=1e-3
    )
    obj = PreferenceObjective("unlikelihood", dataclasses.replace(tiny, policy=policy), cfg)
    steps = []
    take = obj.trainer.optimizer.step
    obj.trainer.optimizer.step = lambda *a, **k: steps.append(1) or take(*a, **k)
    prefs = [Preference("A film", "w", "l", list(w), list(lo)) for w, lo in ONLINE]
    stats = obj.finetune(prefs, seed=0, newest=prefs)
    grads = [p.grad.detach().clone() for p in obj.trainer.parameters()]
    return len(steps), stats, {k: v.detach().clone() for k, v in policy.state_dict().items()}, grads


def test_online_mode_takes_one_step_per_online_step_whatever_the_batch_size(tiny):
    """Micro-batches of one pair accumulate into the one step that the whole batch of three pairs takes."""
    theta0 = {k: v.clone() for k, v in tiny.reference.state_dict().items()}
    n_small, small, w_small, g_small = _online_step(tiny, batch_size=1)
    n_full, full, w_full, g_full = _online_step(tiny, batch_size=8)
    assert n_small == n_full == 1 and len(small) == len(full) == 1 and small[0].n_pairs == 3
    assert small[0].loss == pytest.approx(full[0].loss, rel=1e-5)
    for a, b in zip(g_small, g_full, strict=True):  # per-token normalisation as in the full batch
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-8)
    assert any(not torch.equal(w_full[k], theta0[k]) for k in theta0)
    assert all(torch.allclose(w_small[k], w_full[k], rtol=0, atol=1e-6) for k in w_full)


def test_micro_batch_size_splits_a_reset_mode_mini_batch_into_passes_of_one_step(tiny, monkeypatch):
    """training.micro_batch_size=1: the mini-batch of three pairs runs as three forward passes and still one step."""
    from aplkit.objectives.trainer import SegmentTrainer

    batches, encode = [], SegmentTrainer.batch
    monkeypatch.setattr(SegmentTrainer, "batch", lambda self, docs, t: batches.append(len(docs)) or encode(self, docs, t))
    _, one, _, g_one = _online_step(tiny, batch_size=3, mode="reset", micro_batch_size=1)
    assert batches == [2, 2, 2]  # a pair is two documents
    _, whole, _, g_all = _online_step(tiny, batch_size=3, mode="reset")
    assert batches[3:] == [6] and len(one) == 1 and one[0].n_pairs == 3
    assert one[0].loss == pytest.approx(whole[0].loss, rel=1e-5)
    for a, b in zip(g_one, g_all, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-8)
