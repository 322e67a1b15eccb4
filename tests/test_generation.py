import math

import pytest
import torch

from aplkit.generation import completion_logprobs, encode_ids, ids_logprobs, sample_completions, sequence_logprobs


class Bigram(torch.nn.Module):
    """logits at position t depend only on token t: log p(next | cur) = log_softmax(table[cur]) — hand-computable."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(table, dtype=torch.float32))

    def forward(self, input_ids, attention_mask=None):
        class Out:
            pass

        o = Out()
        o.logits = self.table[input_ids]
        return o


def test_completion_logprobs_hand_computed_and_masked():
    table = [[0.0, 1.0, 2.0], [1.0, 0.0, 0.0], [0.5, 0.5, 3.0]]
    m = Bigram(table)
    # prompt [0, 1], completion [2, 2]; second row shorter and padded
    batch = encode_ids([[0, 1], [2]], [[2, 2], [0]], pad_id=0)
    lp = completion_logprobs(m, batch)

    def logp(cur, nxt):
        row = table[cur]
        return row[nxt] - math.log(sum(math.exp(v) for v in row))

    want0 = logp(1, 2) + logp(2, 2)  # prompt tokens and their transitions are not counted
    want1 = logp(2, 0)
    assert torch.allclose(lp, torch.tensor([want0, want1]), atol=1e-6)
    assert batch.completion_mask.tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]


def test_batched_logprobs_equal_one_at_a_time(tiny):
    prompts = ["The film was", "I went to see this movie", "Worst", "A truly wonderful and moving story about"]
    comps = [" great fun.", " last night and it was long", " acting ever, really bad bad bad", " love"]
    batched = sequence_logprobs(tiny.policy, tiny.tokenizer, prompts, comps, batch_size=4)
    single = torch.cat(
        [sequence_logprobs(tiny.policy, tiny.tokenizer, [p], [c], batch_size=1) for p, c in zip(prompts, comps, strict=False)]
    )
    assert torch.allclose(batched, single, atol=1e-4), (batched, single)
    assert (batched < 0).all()


def test_ids_logprobs_restores_order_after_length_sort(tiny):
    p = [[1, 2, 3, 4, 5, 6], [7], [8, 9]]
    c = [[10], [11, 12, 13, 14], [15, 16]]
    got = ids_logprobs(tiny.policy, p, c, tiny.tokenizer.pad_token_id, batch_size=2)
    want = torch.cat([ids_logprobs(tiny.policy, [a], [b], tiny.tokenizer.pad_token_id, 1) for a, b in zip(p, c, strict=False)])
    assert torch.allclose(got, want, atol=1e-4)


def test_sampling_is_seeded_and_returns_n_per_prompt(tiny):
    prompts = ["Hello there", "This movie"]
    a = sample_completions(tiny.policy, tiny.tokenizer, prompts, n=3, temperature=0.7, max_new_tokens=6, seed=5)
    b = sample_completions(tiny.policy, tiny.tokenizer, prompts, n=3, temperature=0.7, max_new_tokens=6, seed=5)
    c = sample_completions(tiny.policy, tiny.tokenizer, prompts, n=3, temperature=0.7, max_new_tokens=6, seed=6)
    assert a == b
    assert a != c
    assert [len(x) for x in a] == [3, 3]


def _eos_prone(tiny, boost: float = 9.5):
    """The tiny model with a bias towards EOS, so some samples stop and some are cut at max_new_tokens."""
    import copy

    model = copy.deepcopy(tiny.reference)
    old = model.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[tiny.tokenizer.eos_token_id] = boost
    model.lm_head = head
    return model


def test_sampled_ids_keep_eos_and_score_as_the_sampler_saw_them(tiny):
    """log p(y|x) of a sampled completion, scored on its ids, equals what the sampler drew it with (T = 1)."""
    from aplkit.generation import prompt_ids, sample

    tok = tiny.tokenizer
    model = _eos_prone(tiny)
    prompts = ["The film was", "I went to see this movie", "Worst acting"]
    out = sample(model, tok, prompts, n=4, temperature=1.0, max_new_tokens=6, seed=1, with_logprobs=True)
    flat = [(x, s) for x, row in zip(prompts, out, strict=True) for s in row]
    finished = [s for _, s in flat if s.finished]
    cut = [s for _, s in flat if not s.finished]
    assert finished and cut, "the test needs both stopped and truncated samples"
    for s in finished:
        assert s.ids[-1] == tok.eos_token_id and s.ids.count(tok.eos_token_id) == 1
        assert tok.eos_token not in s.text  # the oracle reads text without special tokens
    assert all(len(s.ids) == 6 and tok.eos_token_id not in s.ids for s in cut)
    scored = ids_logprobs(model, prompt_ids(tok, [x for x, _ in flat]), [s.ids for _, s in flat], tok.pad_token_id, batch_size=5)
    sampler = torch.tensor([s.logprob for _, s in flat], dtype=scored.dtype)
    assert torch.allclose(scored, sampler, atol=1e-3), (scored, sampler)
    # the EOS term is part of it: dropping the last token of a finished sample changes log p
    s = finished[0]
    x = next(x for x, t in flat if t is s)
    without = ids_logprobs(model, prompt_ids(tok, [x]), [s.ids[:-1]], tok.pad_token_id)
    assert abs(without.item() - s.logprob) > 1e-3


def test_sampler_logprob_is_under_the_tempered_distribution(tiny):
    """At T = 0.5 the sampler's log-prob is Σ log softmax(logits / T) at the sampled ids (the entropy estimate uses it)."""
    from aplkit.generation import prompt_ids, sample

    tok = tiny.tokenizer
    s = sample(tiny.policy, tok, ["Hello there"], n=1, temperature=0.5, max_new_tokens=4, seed=3, with_logprobs=True)[0][0]
    ids = prompt_ids(tok, ["Hello there"])[0] + s.ids
    with torch.no_grad():
        logits = tiny.policy(input_ids=torch.tensor([ids])).logits[0].float()
    n = len(prompt_ids(tok, ["Hello there"])[0])
    lp = torch.log_softmax(logits / 0.5, -1)
    want = sum(lp[n - 1 + k, t].item() for k, t in enumerate(s.ids))
    assert s.logprob == pytest.approx(want, abs=1e-3)


def test_dpo_batch_uses_sampled_ids_not_retokenised_text(tokenizer):
    """' Duns' sampled as ĠDun|s re-tokenises as ĠD|uns; the batch must hold the ids that were sampled."""
    from aplkit.objectives.dpo import make_batch
    from aplkit.records import Preference

    dun, s_ = tokenizer.convert_tokens_to_ids("ĠDun"), tokenizer.convert_tokens_to_ids("s")
    text = tokenizer.decode([dun, s_])
    assert tokenizer(text, add_special_tokens=False)["input_ids"] != [dun, s_]  # the premise
    eos = tokenizer.eos_token_id
    pref = Preference(
        "A film by", text, " him", chosen_ids=[dun, s_, eos], rejected_ids=tokenizer(" him", add_special_tokens=False)["input_ids"]
    )
    batch, p_ids, c_ids = make_batch(tokenizer, [pref])
    row = batch.input_ids[0][batch.completion_mask[0].bool()].tolist()
    assert row == [dun, s_, eos]
    assert c_ids[0] == [dun, s_, eos]


def test_sampler_model_logprob_equals_a_scoring_pass(tiny):
    """``model_logprob`` (recorded while sampling at T = 0.7) is log p(y|x) at T = 1, as ``ids_logprobs`` scores it."""
    from aplkit.generation import prompt_ids, sample

    tok = tiny.tokenizer
    prompts = ["The film was", "I went to see this movie", "Worst acting"]
    model = _eos_prone(tiny, boost=9.5 * 0.7)  # the same EOS odds at T = 0.7 as the test above at T = 1
    out = sample(model, tok, prompts, n=3, temperature=0.7, max_new_tokens=6, seed=2, with_model_logprobs=True)
    flat = [(x, s) for x, row in zip(prompts, out, strict=True) for s in row]
    assert any(s.finished for _, s in flat) and any(not s.finished for _, s in flat)  # EOS and cut rows alike
    scored = ids_logprobs(model, prompt_ids(tok, [x for x, _ in flat]), [s.ids for _, s in flat], tok.pad_token_id)
    recorded = torch.tensor([s.model_logprob for _, s in flat], dtype=scored.dtype)
    assert torch.allclose(scored, recorded, atol=1e-4), (scored, recorded)
    tempered = sample(model, tok, prompts, n=3, temperature=0.7, max_new_tokens=6, seed=2, with_logprobs=True)
    assert [s.ids for row in tempered for s in row] == [s.ids for _, s in flat]  # recording changes nothing sampled
    assert all(abs(a.logprob - s.model_logprob) > 1e-3 for a, (_, s) in zip([t for r in tempered for t in r], flat, strict=True))
    assert all(s.model_logprob is None for row in sample(tiny.policy, tok, prompts[:1], n=1, max_new_tokens=3) for s in row)


def test_sampler_kl_equals_completion_kl_and_samples_the_same(tiny):
    """``Sample.kl`` (policy side from generation, one reference pass) is ``completion_kl`` on the same ids."""
    from aplkit.generation import completion_kl, prompt_ids, sample

    tok = tiny.tokenizer
    policy = _eos_prone(tiny, boost=9.5 * 0.7)  # differs from the reference, and some rows stop early
    prompts = ["The film was", "I went to see this movie", "Worst acting", "A"]  # prompts of unequal length: left padding
    kw = {"n": 3, "temperature": 0.7, "max_new_tokens": 6, "seed": 2, "batch_size": 12}  # one batch: left padding
    out = sample(policy, tok, prompts, kl_reference=tiny.reference, **kw)
    flat = [(x, s) for x, row in zip(prompts, out, strict=True) for s in row]
    assert any(s.finished for _, s in flat) and any(not s.finished for _, s in flat)
    assert [s.ids for row in sample(policy, tok, prompts, **kw) for s in row] == [s.ids for _, s in flat]  # nothing sampled changes
    want = completion_kl(policy, tiny.reference, prompt_ids(tok, [x for x, _ in flat]), [s.ids for _, s in flat], tok.pad_token_id)
    got = torch.tensor([s.kl for _, s in flat], dtype=want.dtype)
    assert (want > 0.01).all() and torch.allclose(got, want, rtol=1e-4, atol=1e-5), (got, want)
    assert all(s.kl is None for row in sample(policy, tok, prompts, **kw) for s in row)


def test_sampler_kl_refuses_suppressed_tokens(tiny):
    """With control tokens suppressed the sampler's scores are not the model's: the KL must come from ``completion_kl``."""
    from aplkit.generation import sample

    policy = _eos_prone(tiny)
    policy.aplkit_suppress_tokens = [5]
    with pytest.raises(ValueError, match="kl_reference"):
        sample(policy, tiny.tokenizer, ["The film"], kl_reference=tiny.reference, max_new_tokens=2)


def test_draw_follows_the_distribution_and_never_draws_a_zero_probability_token():
    """Inverse-CDF draws against exact probabilities: 200k draws from a 6-token distribution with a −∞ entry."""
    from scipy.stats import chisquare

    from aplkit.generation import draw

    p = torch.tensor([0.5, 0.25, 0.0, 0.125, 0.0625, 0.0625], dtype=torch.float64)
    logp = p.log().float().expand(200_000, -1)
    torch.manual_seed(0)
    counts = torch.bincount(draw(logp), minlength=6)
    assert counts[2] == 0
    keep = p > 0
    assert chisquare(counts[keep].numpy(), (p[keep] * 200_000).numpy()).pvalue > 1e-3
    # a near-degenerate row always yields its one likely token; the last index is reachable
    one = torch.full((4, 6), float("-inf"))
    one[:, 5] = 0.0
    assert draw(one).tolist() == [5, 5, 5, 5]


def test_draw_is_seeded_by_the_global_generator():
    from aplkit.generation import draw

    logp = torch.log_softmax(torch.randn(64, 1000), -1)
    torch.manual_seed(3)
    a = draw(logp)
    torch.manual_seed(3)
    assert torch.equal(a, draw(logp))


def _shipping_a_generation_config(model, tok, common: int):
    """A copy of ``model`` whose own generation config (as a checkpoint may ship it) turns on processors the kit never asks for."""
    import copy

    shipped = copy.deepcopy(model)
    g = shipped.generation_config
    g.forced_eos_token_id = tok.eos_token_id  # the last allowed step may only be EOS
    g.forced_bos_token_id = common
    g.bad_words_ids = [[common]]  # the token the model draws most often, banned
    g.sequence_bias = {(common + 1,): 8.0}
    g.suppress_tokens = [common + 2]
    g.begin_suppress_tokens = [common + 3]
    g.repetition_penalty = 3.0
    g.no_repeat_ngram_size = 1
    g.min_new_tokens = 3  # EOS banned for the first three steps
    g.exponential_decay_length_penalty = (1, 1.5)
    g.do_sample, g.top_k, g.top_p, g.temperature = True, 2, 0.5, 0.3
    return shipped


def _sampled_everywhere(tiny):
    """The EOS-prone model, prompts, ``sample`` keywords (both log-probs recorded) and the most often drawn non-EOS token."""
    from collections import Counter

    from aplkit.generation import sample

    tok = tiny.tokenizer
    model = _eos_prone(tiny, boost=9.5 * 0.7)
    prompts = ["The film was", "I went to see this movie", "Worst acting", "A"]
    kw = {"n": 3, "temperature": 0.7, "max_new_tokens": 6, "seed": 2, "with_logprobs": True, "with_model_logprobs": True}
    out = sample(model, tok, prompts, **kw)
    drawn = Counter(t for row in out for s in row for t in s.ids if t != tok.eos_token_id)
    return model, prompts, kw, out, drawn.most_common(1)[0][0]


def test_sampling_ignores_the_checkpoints_generation_config(tiny):
    """Samples and both log-probs are those of a bare generation config, whatever the model's own config switches on."""
    from aplkit.generation import prompt_ids, sample, sample_ids

    tok = tiny.tokenizer
    model, prompts, kw, want, common = _sampled_everywhere(tiny)
    assert any(s.finished for row in want for s in row) and any(not s.finished for row in want for s in row)
    shipped = _shipping_a_generation_config(model, tok, common)
    before = shipped.generation_config.to_dict()
    assert sample(shipped, tok, prompts, **kw) == want
    ids = prompt_ids(tok, prompts)
    args = (ids, tok.pad_token_id, tok.eos_token_id)
    assert sample_ids(shipped, *args, temperature=0.7, max_new_tokens=6, seed=4) == sample_ids(
        model, *args, temperature=0.7, max_new_tokens=6, seed=4
    )
    assert shipped.generation_config.to_dict() == before  # the model's own config is left as it was


def test_sampler_model_logprob_equals_a_scoring_pass_whatever_the_checkpoint_ships(tiny):
    """A shipped forced EOS (or ban, bias, minimum length) must not run before the sampler: its log-prob is the model's."""
    from aplkit.generation import prompt_ids, sample

    tok = tiny.tokenizer
    model, prompts, kw, _, common = _sampled_everywhere(tiny)
    shipped = _shipping_a_generation_config(model, tok, common)
    flat = [(x, s) for x, row in zip(prompts, sample(shipped, tok, prompts, **kw), strict=True) for s in row]
    scored = ids_logprobs(shipped, prompt_ids(tok, [x for x, _ in flat]), [s.ids for _, s in flat], tok.pad_token_id)
    recorded = torch.tensor([s.model_logprob for _, s in flat], dtype=scored.dtype)
    assert torch.allclose(scored, recorded, atol=1e-4), scored - recorded


def test_generation_config_is_put_back_after_an_error_and_under_lora(tiny):
    """The model's own generation config is the same object, unchanged, after ``generate`` raised, and a LoRA-wrapped model samples as its base."""
    from peft import LoraConfig, get_peft_model

    from aplkit.generation import sample

    tok = tiny.tokenizer
    model, prompts, kw, want, common = _sampled_everywhere(tiny)
    shipped = _shipping_a_generation_config(model, tok, common)
    own, before = shipped.generation_config, shipped.generation_config.to_dict()

    def boom(*a, **k):
        raise RuntimeError("boom")

    shipped.forward = boom
    with pytest.raises(RuntimeError, match="boom"):
        sample(shipped, tok, prompts, **kw)
    assert shipped.generation_config is own and own.to_dict() == before
    del shipped.forward
    wrapped = get_peft_model(shipped, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    assert sample(wrapped, tok, prompts, **kw) == want  # zero-initialised adapters: the base model's samples
    assert wrapped.get_base_model().generation_config is own and own.to_dict() == before


def test_head_only_at_completion_positions_gives_the_full_heads_logprobs(tiny):
    """The vocabulary head applied at the completion positions alone (``logits_to_keep``) gives the log-probs, KL and
    gradients the full head gives: same rows, same positions, float noise only."""
    import torch.nn.functional as F

    from aplkit.generation import _takes_logits_to_keep, completion_kl, next_token_logits

    policy = tiny.policy
    assert _takes_logits_to_keep(policy)
    prompts, comps = [[5, 6, 7, 8], [9, 10], [11, 12, 13]], [[20, 21, 22], [23, 24, 25, 26, 27], [28]]
    batch = encode_ids(prompts, comps, pad_id=0)
    at = batch.completion_mask[:, 1:].bool()
    full = next_token_logits(policy, batch)  # [B, L-1, V]
    part = next_token_logits(policy, batch, at)  # [N, V]
    assert part.shape == (int(at.sum()), full.shape[-1])
    assert torch.allclose(part, full[at], atol=1e-5)
    targets = batch.input_ids[:, 1:]
    by_hand = (torch.gather(F.log_softmax(full, -1), 2, targets.unsqueeze(-1)).squeeze(-1) * at).sum(-1)
    assert torch.allclose(completion_logprobs(policy, batch), by_hand, atol=1e-4)
    assert completion_kl(policy, tiny.reference, prompts, comps, 0).abs().max() < 1e-6  # θ = θ0
    # the gradient flows through the kept positions as through the full head
    policy.zero_grad()
    completion_logprobs(policy, batch).sum().backward()
    g_part = policy.get_output_embeddings().weight.grad.clone()
    policy.zero_grad()
    full = next_token_logits(policy, batch)
    (torch.gather(F.log_softmax(full, -1), 2, targets.unsqueeze(-1)).squeeze(-1) * at).sum().backward()
    assert torch.allclose(g_part, policy.get_output_embeddings().weight.grad, atol=1e-4)
    policy.zero_grad()


def test_generation_row_bytes_hand_computed():
    """KV cache + one layer's prompt-pass activations and fp32 scores + the sampler's ≈ 64 B a vocabulary token (+ the KL's table)."""
    from transformers import GPT2Config

    from aplkit.generation import generation_row_bytes
    from aplkit.models import tiny_config

    tiny = tiny_config(49152)  # 2 layers, hidden 64, 4 heads of 16, 2 KV heads, MLP 128
    kv = 2 * 2 * 2 * 16 * (16 + 24) * 4
    prefill = 16 * (4 * 64 + 3 * 128) * 4 + 4 * 16 * 16 * 4
    assert generation_row_bytes(tiny, 16, 24, 4) == kv + prefill + 64 * 49152 == 3_211_264
    assert generation_row_bytes(tiny, 16, 24, 4, keep_dists=True) == 3_211_264 + 2 * 4 * 24 * 49152
    large = GPT2Config(n_layer=36, n_embd=1280, n_head=20, vocab_size=50257)  # GPT-2 large's shape (MLP 4 × 1280), bf16
    assert generation_row_bytes(large, 16, 24, 2) == 2 * 36 * 20 * 64 * 40 * 2 + 16 * (4 * 1280 + 3 * 5120) * 2 + 20 * 256 * 4 + 64 * 50257


def test_generation_rows_from_free_memory():
    """All rows when they fit in 60 % of the free memory, else the largest power of two that does, at least one."""
    from aplkit.generation import rows_for_memory

    gib = 1 << 30
    row = 3_211_264
    assert int(10 * gib * 0.6) // row == 2006
    assert rows_for_memory(10 * gib, row, rows=8000) == 1024
    assert rows_for_memory(10 * gib, row, rows=2006) == 2006 and rows_for_memory(10 * gib, row, rows=2007) == 1024
    assert rows_for_memory(10 * gib, row, rows=64) == 64
    assert rows_for_memory(row, row, rows=64) == 1  # not even one row fits: one at a time, as small as it gets
    assert rows_for_memory(70 * 10**9, 11_265_088, rows=8000) == 2048  # GPT-2 large in bf16 on an 80 GB card


def test_generation_rows_read_the_models_shape_and_compute_dtype(tiny):
    import copy

    from aplkit.generation import generation_rows, rows_for_memory
    from aplkit.models import set_compute_dtype

    gib = 1 << 30
    assert generation_rows(tiny.policy, 8000, 16, 24, free_bytes=10 * gib) == rows_for_memory(10 * gib, 3_211_264, 8000) == 1024
    half = copy.deepcopy(tiny.reference)
    set_compute_dtype(half, torch.bfloat16)  # the KV cache and activations in bf16: 2 bytes a value
    kv, prefill = 2 * 2 * 2 * 16 * 40 * 2, 16 * (4 * 64 + 3 * 128) * 2 + 4 * 16 * 16 * 4
    assert generation_rows(half, 8000, 16, 24, free_bytes=10 * gib) == rows_for_memory(10 * gib, kv + prefill + 64 * 49152, 8000)


@pytest.mark.cuda
def test_sample_on_cuda_sizes_its_batches_from_free_memory():
    """On a GPU the tiny model's 48 rows go to one generate call whatever batch_size says (a CPU makes 12 of 4 rows)."""
    from aplkit.generation import sample
    from aplkit.models import load_models

    m = load_models("tiny-random", device="cuda", dtype="float32", seed=0)
    calls, generate = [], m.policy.generate
    m.policy.generate = lambda **kw: calls.append(kw["input_ids"].shape[0]) or generate(**kw)
    out = sample(m.policy, m.tokenizer, [f"Review {i}:" for i in range(24)], n=2, max_new_tokens=6, batch_size=4, seed=1)
    assert calls == [48] and [len(r) for r in out] == [2] * 24
