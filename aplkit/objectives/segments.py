"""Documents cut into scored segments, and the token batch every PHF objective trains on.

Korbak et al. (2023) score each segment xⁱ of a document with a reward model, R(xⁱ) (higher is
better), and define every objective token by token: the token xⁱ_j is predicted from everything
before it and carries its segment's reward. ``encode`` lays a batch out once for all objectives:
right-padded ids and, per predicted position, whether it is trained on, its segment's reward and
whether that segment is good (R ≥ t). Objectives change the layout only through two hooks of
``SegmentLoss``: which documents stay (filtering) and which token goes before each segment (conditional).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from aplkit.models import autocast


@dataclass
class Segment:
    ids: list[int]  # the segment's token ids
    reward: float  # R(xⁱ), higher is better (the IMDB experiment: −P(negative))


@dataclass
class Document:
    segments: list[Segment]
    context: list[int] = field(default_factory=list)  # ids before the segments that are read, never trained on (a prompt)

    @property
    def reward(self) -> float:
        """R(x): the mean of its segments' rewards, as Korbak et al. score a document by its sentences' average."""
        return sum(s.reward for s in self.segments) / len(self.segments)


def threshold(rewards: Sequence[float], percentile: float) -> float:
    """t: the ``percentile``-th percentile of the training scores (a segment is good when R ≥ t)."""
    return float(np.percentile(np.asarray(rewards, dtype=np.float64), percentile))


@dataclass
class TokenBatch:
    """Right-padded ids [B, L] and, per predicted position k (target ids[:, k+1]), [B, L−1] tensors."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    trained: torch.Tensor  # float 1 where the target token is trained on
    reward: torch.Tensor  # float R of the target token's segment (0 where not trained)
    good: torch.Tensor  # bool R ≥ t of the target token's segment

    @property
    def tokens(self) -> int:
        return int(self.trained.sum().item())


class SegmentLoss:
    """One PHF objective: how a document is laid out and the loss on per-token log-probs.

    ``loss`` gets log π(x_k | c) of every target [B, L−1], for AWR the value head's V(c) there, and
    log(1 − π(x_k | c)) where ``complement`` asks for it (unlikelihood's bad tokens), 0 elsewhere.
    """

    name = "segment"
    uses_values = False

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, value_weight: float = 0.5, max_weight: float = 20.0):
        self.alpha, self.beta, self.value_weight, self.max_weight = alpha, beta, value_weight, max_weight

    def scores(self, docs: Sequence[Document]) -> list[float]:
        """What the threshold t is a percentile of (``threshold``): every segment's reward."""
        return [s.reward for d in docs for s in d.segments]

    def keep(self, doc: Document, t: float) -> bool:
        """Whether a document is trained on at all (filtering drops those scoring below t)."""
        return True

    def control(self, seg: Segment, t: float) -> int | None:
        """A token placed before the segment (conditional training), or None."""
        return None

    def complement(self, batch: TokenBatch) -> torch.Tensor | None:
        """Where ``loss`` needs log(1 − π(x_k | c)) (bool [B, L−1]); None: nowhere."""
        return None

    def loss(
        self, logp: torch.Tensor, batch: TokenBatch, values: torch.Tensor | None = None, log1m: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


def layout(
    doc: Document, t: float, loss: SegmentLoss, prefix: Sequence[int] = ()
) -> tuple[list[int], list[float], list[float], list[bool]]:
    """A document's ids and, per token, (trained, reward, good); ``prefix`` (a start token) is context."""
    ids = list(prefix) + list(doc.context)
    trained = [0.0] * len(ids)
    reward, good = [0.0] * len(ids), [False] * len(ids)
    for seg in doc.segments if loss.keep(doc, t) else []:
        ctl = loss.control(seg, t)
        toks = ([ctl] if ctl is not None else []) + list(seg.ids)
        ids += toks
        trained += [1.0] * len(toks)
        reward += [seg.reward] * len(toks)
        good += [seg.reward >= t] * len(toks)
    return ids, trained, reward, good


def encode(docs: Sequence[Document], t: float, loss: SegmentLoss, pad_id: int, prefix: Sequence[int] = ()) -> TokenBatch:
    """The batch of ``docs`` laid out by ``loss``; the first token of each row is never a target."""
    rows = [layout(d, t, loss, prefix) for d in docs]
    width = max(2, max(len(r[0]) for r in rows))
    n = len(rows)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    trained = torch.zeros((n, width))
    reward = torch.zeros((n, width))
    good = torch.zeros((n, width), dtype=torch.bool)
    for i, (x, tr, r, g) in enumerate(rows):
        k = len(x)
        ids[i, :k] = torch.tensor(x, dtype=torch.long)
        attn[i, :k] = 1
        trained[i, :k] = torch.tensor(tr)
        reward[i, :k] = torch.tensor(r)
        good[i, :k] = torch.tensor(g, dtype=torch.bool)
    return TokenBatch(ids, attn, trained[:, 1:], reward[:, 1:], good[:, 1:])


def token_logprobs(
    model, batch: TokenBatch, value_head=None, complement: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None] | tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """log π(x_k | x_<k) of every target [B, L−1] (differentiable) and V(x_<k) from ``value_head`` on the last hidden states.

    With ``complement`` (bool [B, L−1], ``SegmentLoss.complement``) also log(1 − π(x_k | x_<k)) there, 0
    elsewhere: the logsumexp of the log-softmax over every token but x_k, i.e. logsumexp_{j≠x_k} z_j −
    logsumexp_j z_j of the logits. Unlike log(−expm1(log π)) it stays finite, with its gradient, when
    π(x_k) rounds to 1; only the rows asked for are copied, not a second [B, L, V] table.
    """
    device = next(model.parameters()).device
    with autocast(model):
        out = model(
            input_ids=batch.input_ids.to(device),
            attention_mask=batch.attention_mask.to(device),
            output_hidden_states=value_head is not None,
        )
    logits = out.logits[:, :-1].float()
    targets = batch.input_ids[:, 1:].to(device)
    table = F.log_softmax(logits, dim=-1)
    logp = torch.gather(table, 2, targets.unsqueeze(-1)).squeeze(-1)
    values = None
    if value_head is not None:
        values = value_head(out.hidden_states[-1][:, :-1].float()).squeeze(-1)
    if complement is None:
        return logp, values
    where = complement.to(device).bool()
    others = table[where].scatter(1, targets[where].unsqueeze(-1), float("-inf"))
    log1m = torch.zeros_like(logp).masked_scatter(where, torch.logsumexp(others, dim=-1))
    return logp, values, log1m


def per_token_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ x·mask / Σ mask (0 for an empty mask): the objectives' sums, normalised per trained token."""
    return (x * mask).sum() / mask.sum().clamp_min(1.0)
