"""Unlikelihood: MLE on good segments, the unlikelihood term on bad ones.

L = −Σ_{R(xⁱ) ≥ t} Σⱼ log π(xⁱ_j | c) − α Σ_{R(xⁱ) < t} Σⱼ log(1 − π(xⁱ_j | c)), normalised per trained
token. log(1 − π) is taken from the logits as log Σ_{k ≠ x_j} π(k | c) (``segments.token_logprobs``),
so a bad token the model is all but sure of costs its full −log(1 − π) and keeps its gradient.
"""

from __future__ import annotations

import torch

from aplkit.objectives.segments import SegmentLoss, TokenBatch, per_token_mean


class Unlikelihood(SegmentLoss):
    name = "unlikelihood"

    def complement(self, batch: TokenBatch) -> torch.Tensor:
        """The trained tokens of bad segments: where the unlikelihood term needs log(1 − π)."""
        return batch.trained.bool() & ~batch.good

    def loss(
        self, logp: torch.Tensor, batch: TokenBatch, values: torch.Tensor | None = None, log1m: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if log1m is None:
            raise ValueError("unlikelihood needs log(1 − π) of its bad tokens: token_logprobs(..., complement=loss.complement(batch))")
        m = batch.trained.to(logp.device)
        good = batch.good.to(logp.device).float()
        per_token = -good * logp - self.alpha * (1.0 - good) * log1m
        loss = per_token_mean(per_token, m)
        return loss, {"nll_good": float(per_token_mean(-logp.detach(), m * good))}
