"""Reward-weighted regression: each segment's MLE weighted by its exponentiated reward.

L = −Σᵢ exp(R(xⁱ)/β) Σⱼ log π(xⁱ_j | c), normalised per trained token (not per weight, so a batch
of low-reward text moves the model less, which is the point).
"""

from __future__ import annotations

import torch

from aplkit.objectives.segments import SegmentLoss, TokenBatch, per_token_mean


class RWR(SegmentLoss):
    name = "rwr"

    def weights(self, batch: TokenBatch, values: torch.Tensor | None = None) -> torch.Tensor:
        return torch.exp(batch.reward / self.beta)

    def loss(
        self, logp: torch.Tensor, batch: TokenBatch, values: torch.Tensor | None = None, log1m: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        m = batch.trained.to(logp.device)
        w = self.weights(batch, values).to(logp.device)
        loss = per_token_mean(-w * logp, m)
        return loss, {"nll": float(per_token_mean(-logp.detach(), m)), "weight": float(per_token_mean(w.detach(), m))}
