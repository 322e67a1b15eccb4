import math

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
