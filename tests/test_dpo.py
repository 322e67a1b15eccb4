import copy
import math

import pytest
import torch

from aplkit.config import LoraConfig, TrainingConfig
from aplkit.generation import completion_logprobs, sequence_logprobs
from aplkit.objectives.dpo import DPOFinetuner, RefCache, apply_lora, dpo_loss, make_batch
from aplkit.records import Preference

PREFS = [
    Preference("The movie was", " wonderful and moving.", " dull and far too long."),
    Preference("I watched this", " twice, loved it.", " and regretted it."),
    Preference("Acting:", " superb", " terrible"),
    Preference("Plot", " clever twists throughout", " none at all"),
]


def test_dpo_loss_hand_computed_and_sign():
    pc, pr, rc, rr = (torch.tensor([v], dtype=torch.float64) for v in (-10.0, -12.0, -11.0, -11.5))
    loss, cr, rj = dpo_loss(pc, pr, rc, rr, beta=0.2)
    margin = 0.2 * ((-10 + 11) - (-12 + 11.5))  # 0.3
    assert cr.item() == pytest.approx(0.2) and rj.item() == pytest.approx(-0.1)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-margin))))
    # a policy that prefers the chosen more than θ0 does has loss below log 2; the reverse above
    assert loss.item() < math.log(2)
    worse, _, _ = dpo_loss(pr, pc, rc, rr, beta=0.2)
    assert worse.item() > math.log(2)
    zero, _, _ = dpo_loss(rc, rr, rc, rr, beta=0.2)
    assert zero.item() == pytest.approx(math.log(2))


def test_loss_gradient_raises_chosen_lowers_rejected(tiny):
    cfg = TrainingConfig(lr=1e-2, epochs=3, batch_size=4, beta=0.5)
    policy = copy.deepcopy(tiny.reference).train()
    for p in policy.parameters():
        p.requires_grad_(True)
    ft = DPOFinetuner(policy, tiny.reference, tiny.tokenizer, cfg)
    stats = ft.finetune(PREFS, seed=0)
    assert stats[-1].loss < stats[0].loss
    assert stats[-1].reward_acc == 1.0
    xs = [p.prompt for p in PREFS]
    lw = sequence_logprobs(policy, tiny.tokenizer, xs, [p.chosen for p in PREFS]) - sequence_logprobs(
        tiny.reference, tiny.tokenizer, xs, [p.chosen for p in PREFS]
    )
    ll = sequence_logprobs(policy, tiny.tokenizer, xs, [p.rejected for p in PREFS]) - sequence_logprobs(
        tiny.reference, tiny.tokenizer, xs, [p.rejected for p in PREFS]
    )
    assert (lw > ll).all()


def test_equals_trl_loss_and_rewards(tiny, tmp_path):
    """Our loss and implicit rewards on a batch equal TRL's DPOTrainer on the same tensors."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    reference = copy.deepcopy(tiny.reference)  # TRL prepares the models it gets; keep the shared fixture clean
    policy = copy.deepcopy(tiny.reference)
    for p in policy.parameters():
        p.requires_grad_(True)
    with torch.no_grad():  # move the policy away from θ0 so the rewards are non-zero
        for p in policy.parameters():
            p.add_(0.02 * torch.randn_like(p, generator=torch.Generator().manual_seed(1)) if p.dim() > 1 else 0.0)
    ds = Dataset.from_list([{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in PREFS])
    args = DPOConfig(
        output_dir=str(tmp_path), beta=0.2, per_device_train_batch_size=4, report_to=[], use_cpu=True, bf16=False, logging_steps=1
    )
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=ds, processing_class=tiny.tokenizer)
    batch, prompts, comps = make_batch(tiny.tokenizer, PREFS)
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "completion_mask": batch.completion_mask}
    policy.eval()
    trl_loss = trainer._compute_loss(policy, inputs, return_outputs=False)
    m = trainer._metrics["eval"]  # TRL files metrics by the model's mode
    ft = DPOFinetuner(policy, reference, tiny.tokenizer, TrainingConfig(beta=0.2))
    ours, rc, rr = ft._step(PREFS)
    assert ours.item() == pytest.approx(trl_loss.item(), rel=1e-4, abs=1e-5)
    assert rc.mean().item() == pytest.approx(m["rewards/chosen"][-1], rel=1e-3, abs=1e-5)
    assert rr.mean().item() == pytest.approx(m["rewards/rejected"][-1], rel=1e-3, abs=1e-5)


def test_reference_logprobs_computed_once(tiny):
    calls = {"n": 0}
    ref = tiny.reference
    orig = ref.forward

    def counting(*a, **k):
        calls["n"] += 1
        return orig(*a, **k)

    cache = RefCache(ref, tiny.tokenizer, batch_size=64)
    ref.forward = counting
    try:
        a, b, c, x, y, z = ([i] for i in (10, 11, 12, 20, 21, 22))  # prompt and completion token ids
        first = cache.get([a, b], [x, y])
        n1 = calls["n"]
        again = cache.get([b, a], [y, x])
        assert calls["n"] == n1 and torch.equal(first.flip(0), again)
        cache.get([a, c], [x, z])
        assert calls["n"] == n1 + 1 and len(cache) == 3
    finally:
        ref.forward = orig


def test_reset_restores_theta0_and_online_keeps_theta(tiny):
    policy = copy.deepcopy(tiny.reference)
    for p in policy.parameters():
        p.requires_grad_(True)
    theta0 = {k: v.clone() for k, v in policy.state_dict().items()}
    ft = DPOFinetuner(policy, tiny.reference, tiny.tokenizer, TrainingConfig(lr=1e-3, epochs=1, batch_size=2))
    ft.finetune(PREFS, seed=0)
    moved = {k: v.clone() for k, v in policy.state_dict().items()}
    assert any(not torch.equal(moved[k], theta0[k]) for k in theta0)
    ft.reset()
    assert all(torch.equal(policy.state_dict()[k], theta0[k]) for k in theta0)
    # reset-mode fine-tuning is a function of (θ0, X_P, seed): same result twice
    ft.finetune(PREFS, seed=0)
    assert all(torch.equal(policy.state_dict()[k], moved[k]) for k in moved)

    online = DPOFinetuner(policy, tiny.reference, tiny.tokenizer, TrainingConfig(mode="online", lr=1e-3, online_steps=1, batch_size=2))
    online.reset()
    s1 = online.finetune(PREFS, seed=0, newest=PREFS[:2])
    after1 = {k: v.clone() for k, v in policy.state_dict().items()}
    online.finetune(PREFS, seed=1, newest=PREFS[2:])
    assert len(s1) == 1 and s1[0].n_pairs == 2
    assert any(not torch.equal(policy.state_dict()[k], after1[k]) for k in after1)
    assert any(not torch.equal(after1[k], theta0[k]) for k in theta0)  # not reset between steps


def test_lora_trains_adapters_only(tiny):
    policy = copy.deepcopy(tiny.reference)
    cfg = TrainingConfig(lr=1e-2, epochs=2, batch_size=4, lora=LoraConfig(enabled=True, r=4, alpha=8))
    policy = apply_lora(policy, cfg)
    base = {k: v.clone() for k, v in policy.state_dict().items() if "lora_" not in k}
    ft = DPOFinetuner(policy, tiny.reference, tiny.tokenizer, cfg)
    stats = ft.finetune(PREFS, seed=0)
    assert stats[-1].loss < stats[0].loss
    assert all(torch.equal(policy.state_dict()[k], v) for k, v in base.items())
    assert set(ft.state()["weights"]) and all("lora_" in k for k in ft.state()["weights"])


def test_bf16_compute_keeps_fp32_weights_and_learns_at_lr_1e6():
    """The paper's lr 1e-6 is below half a bf16 rounding step for most weights: training bf16 weights
    directly lost ~99.5 % of the updates. With model.dtype=bfloat16 the weights stay fp32 (autocast
    for the maths), every weight moves and the loss falls."""
    from aplkit.models import load_models

    m = load_models("tiny-random", device="cpu", dtype="bfloat16", seed=0)
    assert all(p.dtype == torch.float32 for p in m.policy.parameters())
    assert m.dtype == torch.bfloat16
    before = {k: v.clone() for k, v in m.policy.state_dict().items()}
    ft = DPOFinetuner(m.policy, m.reference, m.tokenizer, TrainingConfig(lr=1e-6, epochs=12, batch_size=4, beta=0.2))
    stats = ft.finetune(PREFS, seed=0)
    after = m.policy.state_dict()
    moved = sum((after[k] != before[k]).sum().item() for k in before) / sum(v.numel() for v in before.values())
    assert moved > 0.9
    losses = [s.loss for s in stats]
    assert losses[-1] < losses[0] - 1e-3 and all(b <= a + 1e-5 for a, b in zip(losses, losses[1:], strict=False))


def test_theta0_runs_under_autocast_with_fp32_weights_so_the_implicit_reward_is_zero_at_theta0():
    """Under bf16 compute θ0 is not stored in bf16: with fp32 weights under the policy's autocast it gives, on the same
    batch, the log-probs of a policy at θ0 bit for bit, and DPO starts at r̂ = 0 (loss log 2). Stored in bf16 (its
    embeddings, norms and residual stream rounded) it gives other log-probs, so r̂ ≠ 0 at θ = θ0."""
    from aplkit.models import load_models

    m = load_models("tiny-random", device="cpu", dtype="bfloat16", seed=0)
    assert all(p.dtype == torch.float32 for p in m.reference.parameters())
    batch, _, _ = make_batch(m.tokenizer, PREFS)
    with torch.no_grad():
        ref = completion_logprobs(m.reference, batch)
        assert torch.equal(completion_logprobs(m.policy, batch), ref)
        stored = copy.deepcopy(m.reference).to(torch.bfloat16)
        assert (completion_logprobs(stored, batch).double() - ref.double()).abs().max() > 1e-3
    ft = DPOFinetuner(m.policy, m.reference, m.tokenizer, TrainingConfig(lr=1e-12, epochs=1, batch_size=len(PREFS)))
    st = ft.finetune(PREFS, seed=0)[0]  # the one batch's statistics, taken at θ0 before the update
    assert st.margin == 0.0 and st.reward_acc == 0.0 and st.loss == pytest.approx(math.log(2), abs=1e-12)


def test_low_precision_trainable_weights_are_refused(tiny):
    policy = copy.deepcopy(tiny.reference).to(torch.bfloat16)
    for p in policy.parameters():
        p.requires_grad_(True)
    with pytest.raises(ValueError, match="fp32 weights"):
        DPOFinetuner(policy, tiny.reference, tiny.tokenizer, TrainingConfig())


def _gpt2_with_dropout(tokenizer, path):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128, resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_implicit_reward_is_zero_at_theta0_with_a_dropout_model(tokenizer, tmp_path):
    """GPT-2 configs carry 0.1 dropout; with it on in training, r̂ ≠ 0 at θ0 and DPO's signal is noise."""
    from aplkit.models import load_models

    m = load_models(str(_gpt2_with_dropout(tokenizer, tmp_path / "gpt2")), device="cpu", dtype="float32")
    ft = DPOFinetuner(m.policy, m.reference, m.tokenizer, TrainingConfig(lr=1e-12, epochs=1, batch_size=len(PREFS)))
    st = ft.finetune(PREFS, seed=0)[0]  # statistics of the one batch, taken at θ0 before the update
    assert st.margin == pytest.approx(0.0, abs=1e-5) and st.loss == pytest.approx(math.log(2), abs=1e-6)
    # a model handed to the fine-tuner directly (not through load_models) gets its dropout switched off too
    from transformers import AutoModelForCausalLM

    raw = AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2")
    ref = AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2").eval()
    ft2 = DPOFinetuner(raw, ref, m.tokenizer, TrainingConfig(lr=1e-12, epochs=1, batch_size=len(PREFS)))
    assert ft2.finetune(PREFS, seed=0)[0].margin == pytest.approx(0.0, abs=1e-5)


UNEVEN = [  # prompts and completions of different lengths, so micro-batches pad differently from the whole batch
    Preference("A", " great", " bad and boring and long"),
    Preference("The film I saw last night at the cinema", " was a delight from start to finish", " no"),
    Preference("Cast:", " superb in every role", " wooden"),
    Preference("It", " works.", " fails, again and again, scene after scene"),
    Preference("My review of this movie in one word", " yes", " dreadful"),
    Preference("Overall", " recommended to anyone who likes a good story", " skip it"),
]


def _trainable_copy(tiny, moved: bool = False):
    """θ0 as a trainable policy; ``moved``: shifted by seeded noise, so the implicit rewards are not all 0."""
    policy = copy.deepcopy(tiny.reference)
    gen = torch.Generator().manual_seed(1)
    for p in policy.parameters():
        p.requires_grad_(True)
        if moved and p.dim() > 1:
            with torch.no_grad():
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return policy


@pytest.mark.parametrize("micro", [2, 4])  # 4 does not divide 6: micro-batches of 4 and 2, weighted by their pairs
def test_micro_batches_accumulate_the_whole_batch_gradient(tiny, micro):
    def grads(micro_batch_size):
        policy = _trainable_copy(tiny, moved=True)  # online mode keeps θ (reset mode would start from θ0, where every r̂ is 0)
        cfg = TrainingConfig(mode="online", lr=1e-3, batch_size=len(UNEVEN), micro_batch_size=micro_batch_size)
        ft = DPOFinetuner(policy, tiny.reference, tiny.tokenizer, cfg)
        st = ft.finetune(UNEVEN, seed=0, newest=UNEVEN)[0]  # one step on the batch: its gradient is left in .grad
        return {k: p.grad.clone() for k, p in policy.named_parameters()}, st

    whole, st_whole = grads(None)
    parts, st_parts = grads(micro)
    assert all(g.abs().max() > 0 for g in whole.values())
    for k, g in whole.items():  # equal up to fp32 rounding of a sum taken in another order: ≈ 5e-7 of the largest entry
        assert (parts[k] - g).abs().max() < 1e-5 * g.abs().max(), k
    # the epoch's statistics are the whole batch's: the loss a pair-weighted mean of the micro-batches' means
    assert abs(st_whole.loss - math.log(2)) > 1e-3 and st_parts.n_pairs == st_whole.n_pairs == len(UNEVEN)
    assert (st_parts.loss, st_parts.reward_acc, st_parts.margin) == pytest.approx(
        (st_whole.loss, st_whole.reward_acc, st_whole.margin), rel=1e-6
    )


def test_micro_batches_train_the_same_weights_over_an_epoch(tiny):
    """Mini-batches of 4 and 2 pairs (6 pairs, batch_size 4), each in micro-batches of 3 (3+1, then 2)."""

    def train(micro_batch_size):
        policy = _trainable_copy(tiny)
        cfg = TrainingConfig(lr=1e-4, epochs=2, batch_size=4, micro_batch_size=micro_batch_size)
        stats = DPOFinetuner(policy, tiny.reference, tiny.tokenizer, cfg).finetune(UNEVEN, seed=3)
        return policy.state_dict(), stats

    whole, s_whole = train(None)
    parts, s_parts = train(3)
    moved = sum((whole[k] != tiny.reference.state_dict()[k]).sum().item() for k in whole)
    assert moved > 1_000_000
    # Adam moves a weight by about lr a step whatever its gradient's size: where that gradient is near 0, the
    # rounding of the accumulated sum shows, so the weights agree to a tenth of one step (not to float noise)
    assert max((parts[k] - w).abs().max().item() for k, w in whole.items()) < 0.1 * 1e-4
    assert [s.loss for s in s_parts] == pytest.approx([s.loss for s in s_whole], rel=1e-6)


def test_finetune_equals_a_plain_loop_over_mini_batches(tiny):
    """Reset-mode DPO (ids and θ0's log-probs taken once, statistics read once per epoch) is, bit for bit, the plain
    loop: per mini-batch one ``make_batch``, one loss, one backward, one Adam step, the statistics read at once."""
    cfg = TrainingConfig(lr=1e-3, epochs=2, batch_size=4)
    policy = _trainable_copy(tiny)
    ft = DPOFinetuner(policy, tiny.reference, tiny.tokenizer, cfg)
    stats = ft.finetune(UNEVEN, seed=5)

    plain = _trainable_copy(tiny)
    opt = torch.optim.Adam(plain.parameters(), lr=cfg.lr)
    gen, expected = torch.Generator().manual_seed(5), []
    for _ in range(cfg.epochs):
        order = torch.randperm(len(UNEVEN), generator=gen).tolist()
        loss_sum, acc, margin = 0.0, 0.0, 0.0
        for s in range(0, len(order), cfg.batch_size):
            chunk = [UNEVEN[i] for i in order[s : s + cfg.batch_size]]
            batch, p_ids, c_ids = make_batch(tiny.tokenizer, chunk)
            ref = ft.ref.get(p_ids, c_ids)  # θ0's values as the fine-tuner cached them
            logps = completion_logprobs(plain.train(), batch).double()
            k = len(chunk)
            loss, rc, rr = dpo_loss(logps[:k], logps[k:], ref[:k], ref[k:], cfg.beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * k
            acc += (rc > rr).double().sum().item()
            margin += (rc - rr).sum().item()
        expected.append((loss_sum / len(order), acc / len(order), margin / len(order)))
    assert [(s.loss, s.reward_acc, s.margin) for s in stats] == expected
    assert all(torch.equal(policy.state_dict()[k], v) for k, v in plain.state_dict().items())
