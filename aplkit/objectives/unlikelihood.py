"""Unlikelihood: MLE on good segments, the unlikelihood term on bad ones.

L = −Σ_{R(xⁱ) ≥ t} Σⱼ log π(xⁱ_j | c) − α Σ_{R(xⁱ) < t} Σⱼ log(1 − π(xⁱ_j | c)), normalised per trained
token. log(1 − p) is computed as log(−expm1(log p)) with p kept below 1 − 1e-6, so a bad token the
model is sure of costs a large but finite amount.
"""

from __future__ import annotations

import torch

from aplkit.objectives.segments import SegmentLoss, TokenBatch, per_token_mean

MAX_P = 1.0 - 1e-6


def log1m_exp(logp: torch.Tensor) -> torch.Tensor:
    """log(1 − p) from log p, stable near p = 0 and clamped near p = 1."""
    return torch.log(-torch.expm1(logp.clamp(max=torch.log(torch.tensor(MAX_P)).item())))


class Unlikelihood(SegmentLoss):
    name = "unlikelihood"

    def loss(self, logp: torch.Tensor, batch: TokenBatch, values: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        m = batch.trained.to(logp.device)
        good = batch.good.to(logp.device).float()
        per_token = -good * logp - self.alpha * (1.0 - good) * log1m_exp(logp)
        loss = per_token_mean(per_token, m)
        return loss, {"nll_good": float(per_token_mean(-logp.detach(), m * good))}
