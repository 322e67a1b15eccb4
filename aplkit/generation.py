"""Sampling completions and scoring sequence log-probabilities log p(y|x).

Every log-prob in the kit (acquisition scores, implicit rewards, DPO) goes through
``encode_pairs`` + ``completion_logprobs`` so the same tokenisation is used
everywhere: prompt tokens, then completion tokens, right-padded, with a mask that
keeps only completion positions. Generation uses left padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class EncodedPairs:
    """A right-padded batch of prompt+completion sequences and the completion-token mask."""

    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    completion_mask: torch.Tensor  # [B, L] 1 where the token is part of the completion


def encode_ids(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], pad_id: int) -> EncodedPairs:
    if len(prompt_ids) != len(completion_ids):
        raise ValueError("prompt_ids and completion_ids must have the same length")
    seqs = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    width = max((len(s) for s in seqs), default=1)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    comp = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (p, s) in enumerate(zip(prompt_ids, seqs, strict=True)):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, : len(s)] = 1
        comp[i, len(p) : len(s)] = 1
    return EncodedPairs(ids, attn, comp)


def tokenize_pairs(tokenizer, prompts: Sequence[str], completions: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt and completion tokenised separately (as TRL does), so the boundary is exact."""
    p = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    c = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    return p, c


def completion_logprobs(model, batch: EncodedPairs) -> torch.Tensor:
    """Σ_t log p(y_t | x, y_<t) over completion tokens, one value per row (differentiable)."""
    device = next(model.parameters()).device
    ids = batch.input_ids.to(device)
    attn = batch.attention_mask.to(device)
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
    targets = ids[:, 1:]
    mask = batch.completion_mask[:, 1:].to(device).float()
    token_lp = torch.gather(F.log_softmax(logits, dim=-1), 2, targets.unsqueeze(-1)).squeeze(-1)
    return (token_lp * mask).sum(-1)


@torch.no_grad()
def sequence_logprobs(
    model,
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    batch_size: int = 32,
) -> torch.Tensor:
    """log p(y|x) for many (x, y) in batched no-grad forward passes; returns a CPU float tensor."""
    p_ids, c_ids = tokenize_pairs(tokenizer, prompts, completions)
    return ids_logprobs(model, p_ids, c_ids, tokenizer.pad_token_id, batch_size)


@torch.no_grad()
def ids_logprobs(model, prompt_ids, completion_ids, pad_id: int, batch_size: int = 32) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = []
    # Sort by length so each micro-batch pads little; restore order at the end.
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]) + len(completion_ids[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        batch = encode_ids([prompt_ids[i] for i in idx], [completion_ids[i] for i in idx], pad_id)
        out.append(completion_logprobs(model, batch).cpu())
    model.train(was_training)
    flat = torch.cat(out) if out else torch.zeros(0)
    result = torch.empty_like(flat)
    result[torch.tensor(order, dtype=torch.long)] = flat
    return result


@torch.no_grad()
def sample_completions(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    n: int = 1,
    temperature: float = 0.7,
    max_new_tokens: int = 24,
    batch_size: int = 32,
    seed: int = 0,
) -> list[list[str]]:
    """n completions per prompt, pure temperature sampling (no top-k/top-p), left-padded batches.

    Seeded once per call, so the same model, prompts and seed give the same completions.
    """
    if not prompts:
        return []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    per_batch = max(1, batch_size // n)
    results: list[list[str]] = []
    pad_id = tokenizer.pad_token_id
    eos_id = tokenizer.eos_token_id
    for s in range(0, len(prompts), per_batch):
        chunk = list(prompts[s : s + per_batch])
        enc = tokenizer(chunk, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=True).to(device)
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            num_return_sequences=n,
            pad_token_id=pad_id,
            eos_token_id=eos_id,
        )
        new = out[:, enc["input_ids"].shape[1] :]
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        results.extend(texts[i * n : (i + 1) * n] for i in range(len(chunk)))
    model.train(was_training)
    return results
