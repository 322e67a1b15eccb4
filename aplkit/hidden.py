"""What the policy's last hidden layer says about a completion, for the scorers beyond the paper.

One forward pass per (x, y) gives three things (``completion_states``):

* the completion's feature φ(x, y): the last hidden state averaged over y's tokens (each attends to
  x), which d-optimal design and batch diversity compare pairs by;
* log πθ(y|x), exactly as ``generation.completion_logprobs`` computes it (the same layout and mask);
* K Monte-Carlo-dropout log-probs: dropout with rate p on the last hidden state before the output
  head (inverted scaling, so each mask keeps the expectation) — a last-layer MC-dropout ensemble
  (Gal & Ghahramani 2016, arXiv 1506.02142). Draw k is one network: a mask over the H hidden units
  (``dropout_masks``), drawn once per call from ``seed`` and applied to every token of every
  completion, so y0 and y1 of a pair are scored by the same K networks whatever the batching.
  Each draw costs an output-head product over the completion's tokens only, not another pass
  through the network.

Everything is taken on the token ids the sampler drew, as every other log-prob in the kit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aplkit.generation import _by_length, _takes_logits_to_keep, encode_ids, mask_suppressed
from aplkit.models import autocast


@dataclass
class CompletionStates:
    features: torch.Tensor  # [n, H] mean last hidden state over each completion's tokens (0 for an empty one)
    logprobs: torch.Tensor  # [n] log πθ(y|x), float64
    dropout_logprobs: torch.Tensor  # [K, n] the same under K dropout masks, float64


def dropout_masks(k: int, hidden: int, p: float, seed: int) -> torch.Tensor:
    """[k, hidden] inverted-dropout masks (0 or 1/(1−p)): row k is draw k's network, the same for every token.

    Drawn on the CPU, so a seed gives the same masks on any device and for any batching.
    """
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(k, hidden, generator=gen) >= p).float() / (1.0 - p)


@torch.no_grad()
def completion_states(
    model,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    pad_id: int,
    *,
    masks: int = 0,
    p: float = 0.0,
    seed: int = 0,
    batch_size: int = 32,
) -> CompletionStates:
    """Features, log-probs and ``masks`` MC-dropout log-probs of each (x, y) in batched no-grad passes (CPU tensors).

    Every row is scored under the same ``masks`` networks (``dropout_masks(masks, H, p, seed)``): score the
    completions whose draws are compared (a pair's y0 and y1) in one call, or in calls with the same seed.
    """
    n = len(prompt_ids)
    was_training = model.training
    model.eval()
    head = model.get_output_embeddings()
    device = next(model.parameters()).device
    keep: torch.Tensor | None = None
    feats: torch.Tensor | None = None
    lp = torch.zeros(n, dtype=torch.float64)
    lp_k = torch.zeros(masks, n, dtype=torch.float64)
    try:
        keep_logits = _takes_logits_to_keep(model)  # the head at the completion positions alone
        for idx in _by_length(prompt_ids, completion_ids, batch_size):
            batch = encode_ids([prompt_ids[i] for i in idx], [completion_ids[i] for i in idx], pad_id)
            ids, comp = batch.input_ids.to(device), batch.completion_mask.to(device)
            mask = comp[:, 1:].bool()  # position t predicts token t + 1
            head_at = {"logits_to_keep": torch.cat([mask, torch.zeros_like(mask[:, :1])], 1)} if keep_logits else {}
            with autocast(model):
                out = model(input_ids=ids, attention_mask=batch.attention_mask.to(device), output_hidden_states=True, **head_at)
            h = out.hidden_states[-1].float()  # [B, L, H], what the output head reads
            if feats is None:
                feats = torch.zeros(n, h.shape[-1])
                keep = dropout_masks(masks, h.shape[-1], p, seed).to(device)
            w = comp.float()
            pooled = (h * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)
            rows = torch.tensor(idx, dtype=torch.long)
            feats[rows] = pooled.cpu()
            targets = ids[:, 1:][mask]
            which = rows[mask.nonzero()[:, 0].cpu()]
            logits = out.logits if keep_logits else out.logits[:, :-1][mask]  # [N, V]: completion positions only
            token_lp = torch.gather(F.log_softmax(mask_suppressed(model, logits.float()), -1), 1, targets.unsqueeze(1)).squeeze(1)
            lp.index_add_(0, which, token_lp.double().cpu())
            hs = h[:, :-1][mask]  # [tokens, H]
            for k in range(masks):
                with autocast(model):
                    logits = head(hs * keep[k]).float()  # mask k on hidden unit j at every token
                tok = torch.gather(F.log_softmax(mask_suppressed(model, logits), -1), 1, targets.unsqueeze(1)).squeeze(1)
                lp_k[k].index_add_(0, which, tok.double().cpu())
    finally:
        model.train(was_training)
    return CompletionStates(feats if feats is not None else torch.zeros(n, 0), lp, lp_k)
