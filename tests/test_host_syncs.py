"""Reads of tensors to the host from the kit's own code, counted on the CPU: on a GPU each one waits for the queued kernels.

Sampling reads once per batch, not once per generated token; a DPO epoch once, not once per micro-batch
(besides θ0's log-probs, once per fine-tune, and the epoch's order, a permutation drawn on the CPU). The numbers are those of the plain computations: the tests
in test_generation.py and test_dpo.py hold the values.
"""

from __future__ import annotations

import copy
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

import aplkit
from aplkit.config import TrainingConfig
from aplkit.generation import sample
from aplkit.objectives.dpo import DPOFinetuner
from aplkit.records import Preference

KIT = str(Path(aplkit.__file__).resolve().parent)


@pytest.fixture
def host_reads(monkeypatch):
    """Counts of ``Tensor.cpu``, ``.item`` and ``.tolist`` called from inside the ``aplkit`` package."""
    counts: Counter = Counter()
    for name in ("cpu", "item", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _name=name, _original=original, **k):
            if sys._getframe(1).f_code.co_filename.startswith(KIT):
                counts[_name] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def test_sampling_reads_once_per_batch_not_per_token(tiny, host_reads):
    prompts = ["The film", "I watched it", "A review:", "Plot"]

    def reads(max_new_tokens: int, batch_size: int) -> Counter:
        host_reads.clear()
        out = sample(
            tiny.policy,
            tiny.tokenizer,
            prompts,
            n=2,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            with_logprobs=True,
            with_model_logprobs=True,
        )
        assert all(s.logprob is not None and s.model_logprob is not None for row in out for s in row)
        return Counter(host_reads)

    short, long, halves = reads(4, 8), reads(16, 8), reads(16, 4)
    assert short == long  # 4 or 16 tokens: the same reads
    assert halves == Counter({k: 2 * v for k, v in long.items()})  # two batches: twice one batch's
    assert long == Counter(cpu=3, tolist=3)  # the tokens, each recording's log-probs; the rows, each recording's sums


PAIRS = [Preference(f"Review {i}:", " good" * (1 + i % 3), " bad" * (1 + i % 2)) for i in range(6)]


def test_a_dpo_epoch_reads_once_whatever_its_micro_batches(tiny, host_reads):
    def reads(epochs: int, batch_size: int, micro: int | None = None) -> Counter:
        policy = copy.deepcopy(tiny.reference)
        for p in policy.parameters():
            p.requires_grad_(True)
        ft = DPOFinetuner(
            policy, tiny.reference, tiny.tokenizer, TrainingConfig(lr=1e-4, epochs=epochs, batch_size=batch_size, micro_batch_size=micro)
        )
        host_reads.clear()
        ft.finetune(PAIRS, seed=0)
        return Counter(host_reads)

    one = reads(1, 6)
    assert reads(1, 2) == reads(1, 6, micro=1) == one  # 3 mini-batches, or 6 micro-batches of one step: the same reads
    assert reads(3, 2) == one + Counter(tolist=2 * 2)  # each further epoch: its order (drawn on the CPU: no wait) and its statistics
    assert one == Counter(cpu=1, tolist=3)  # θ0's log-probs (one reference batch) into the cache; the epoch's order; its statistics
