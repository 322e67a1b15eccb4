"""The KL of the policy from θ0 at T = 1, against exact enumeration on a model whose every completion can be counted.

A 2-layer Llama over 4 tokens (EOS and a, b, c) and completions of at most 3 tokens: 1 + 3 + 36 = 40 completions
per prompt, each with its exact probability under the policy and under θ0. KL(π ‖ π0) is the π-weighted sum of
log π/π0 over them; an unbiased estimator has that as its π-weighted mean, and samples from the sampler at T = 1
average to it within a few standard errors.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from aplkit.generation import completion_kl, ids_logprobs, sample

EOS, VOCAB, LONGEST = 0, 4, 3


@pytest.fixture(scope="module")
def toy():
    """(policy, θ0, tokenizer): two seeded random Llamas over a 4-token word-level vocabulary (EOS pads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    from aplkit.models import tiny_config

    words = Tokenizer(models.WordLevel({"<eos>": 0, "a": 1, "b": 2, "c": 3}, unk_token="<eos>"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=words, eos_token="<eos>", pad_token="<eos>")
    nets = []
    for seed in (0, 1):
        cfg = tiny_config(VOCAB)
        cfg.initializer_range = 0.05  # KL(π ‖ π0) ≈ 0.5 nats, the scale of a fine-tuned policy
        cfg.eos_token_id = cfg.pad_token_id = EOS
        torch.manual_seed(seed)
        nets.append(LlamaForCausalLM(cfg).eval())
    return nets[0], nets[1], tok


def every_completion() -> list[list[int]]:
    """Every completion the sampler can return with max_new_tokens=3: ended by EOS, or cut at 3 tokens."""
    out = [[EOS]] + [[a, EOS] for a in range(1, VOCAB)]
    out += [[a, b, c] for a, b in itertools.product(range(1, VOCAB), repeat=2) for c in range(VOCAB)]
    return out


def exact(policy, reference, prompt: list[int], temperature: float = 1.0):
    """(completions, π_T(y|x) of the policy sampled at ``temperature``, log π(y|x), log π0(y|x))."""
    ys = every_completion()
    lp = ids_logprobs(policy, [prompt] * len(ys), ys, pad_id=EOS).double()
    lq = ids_logprobs(reference, [prompt] * len(ys), ys, pad_id=EOS).double()
    if temperature == 1.0:
        return ys, lp.exp(), lp, lq
    with torch.no_grad():  # the tempered distribution, position by position
        w = []
        for y in ys:
            ids = torch.tensor([prompt + y])
            logits = policy(input_ids=ids).logits[0, len(prompt) - 1 : -1].double() / temperature
            w.append(torch.log_softmax(logits, -1).gather(1, torch.tensor(y).unsqueeze(1)).sum())
    return ys, torch.stack(w).exp(), lp, lq


@pytest.mark.parametrize("prompt", [[1], [2, 3]])
def test_both_estimators_average_to_the_exact_kl_over_every_completion(toy, prompt):
    policy, reference, _ = toy
    ys, p, lp, lq = exact(policy, reference, prompt)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)  # the 40 completions are every outcome
    kl = float((p * (lp - lq)).sum())
    assert 0.1 < kl < 2  # the two models differ, about as much as a fine-tuned policy from θ0
    token_kl = completion_kl(policy, reference, [prompt] * len(ys), ys, pad_id=EOS).double()
    log_ratio = lp - lq
    assert float((p * token_kl).sum()) == pytest.approx(kl, rel=1e-5)
    assert float((p * log_ratio).sum()) == pytest.approx(kl, rel=1e-9)
    var = lambda v: float((p * (v - kl) ** 2).sum())  # noqa: E731
    assert var(token_kl) < var(log_ratio)  # the per-position sums average over the token drawn


def test_the_along_path_kl_at_the_evaluation_temperature_is_not_the_policys_kl(toy):
    """The same token-level sums weighted by the T = 0.25 sampler's distribution (what ``kl`` reads): a different number."""
    policy, reference, _ = toy
    ys, p1, lp, lq = exact(policy, reference, [1])
    _, p_cold, _, _ = exact(policy, reference, [1], temperature=0.25)
    assert float(p_cold.sum()) == pytest.approx(1.0, abs=1e-6)
    token_kl = completion_kl(policy, reference, [[1]] * len(ys), ys, pad_id=EOS).double()
    kl = float((p1 * (lp - lq)).sum())
    assert abs(float((p_cold * token_kl).sum()) - kl) > 0.1 * kl


def test_the_sampler_at_t1_records_the_exact_token_kl_and_its_samples_average_to_the_kl(toy):
    """``sample(temperature=1, kl_reference=θ0)``: each sample's KL is ``completion_kl`` along its ids (the sampler's raw
    scores are the model's own distribution), and over many samples both estimators land within 4 SE of the exact KL."""
    policy, reference, tok = toy
    ys, p, lp, lq = exact(policy, reference, [1])
    kl = float((p * (lp - lq)).sum())
    n = 3000
    rows = sample(policy, tok, ["a"], n=n, temperature=1.0, max_new_tokens=LONGEST, batch_size=n, seed=11, kl_reference=reference)[0]
    ids = [s.ids for s in rows]
    assert all(y in ys for y in ids)
    along = torch.tensor([s.kl for s in rows], dtype=torch.float64)
    assert along.tolist() == pytest.approx(completion_kl(policy, reference, [[1]] * n, ids, pad_id=EOS).tolist(), abs=1e-5)
    ratio = (ids_logprobs(policy, [[1]] * n, ids, pad_id=EOS) - ids_logprobs(reference, [[1]] * n, ids, pad_id=EOS)).double()
    for est in (along, ratio):
        se = float(est.std() / math.sqrt(n))
        assert abs(float(est.mean()) - kl) < 4 * se, (float(est.mean()), kl, se)
    assert float(along.std()) < float(ratio.std())
