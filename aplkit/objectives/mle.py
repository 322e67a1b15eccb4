"""MLE, the baseline: L = −Σᵢ Σⱼ log π(xⁱ_j | c), normalised per trained token."""

from __future__ import annotations

import torch

from aplkit.objectives.segments import SegmentLoss, TokenBatch, per_token_mean


class MLE(SegmentLoss):
    name = "mle"

    def loss(
        self, logp: torch.Tensor, batch: TokenBatch, values: torch.Tensor | None = None, log1m: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        m = batch.trained.to(logp.device)
        loss = per_token_mean(-logp, m)
        return loss, {"nll": float(loss.detach())}
