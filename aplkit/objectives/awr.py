"""Advantage-weighted regression: RWR with the advantage A = R − V(c) and a value head trained with it.

L = −Σᵢ Σⱼ min(exp((R(xⁱ) − V(c_ij))/β), w_max) log π(xⁱ_j | c) + λ Σᵢ Σⱼ (V(c_ij) − R(xⁱ))²,
each sum normalised per trained token; V(c) is a linear head on the LM's last hidden state at the
position that predicts the token, λ = ``value_weight``. The weights use V detached (the value head
learns only from its squared error) and are clipped at ``max_weight`` (A > 0 makes them unbounded).
"""

from __future__ import annotations

import torch

from aplkit.objectives.rwr import RWR
from aplkit.objectives.segments import TokenBatch, per_token_mean


def value_head(hidden_size: int, seed: int = 0) -> torch.nn.Linear:
    """V(c): a linear map of the last hidden state, zero-initialised so A = R at the start."""
    head = torch.nn.Linear(hidden_size, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return head


class AWR(RWR):
    name = "awr"
    uses_values = True

    def weights(self, batch: TokenBatch, values: torch.Tensor | None = None) -> torch.Tensor:
        if values is None:
            raise ValueError("AWR needs the value head's V(c)")
        adv = batch.reward.to(values.device) - values.detach()
        return torch.exp(adv / self.beta).clamp(max=self.max_weight)

    def loss(
        self, logp: torch.Tensor, batch: TokenBatch, values: torch.Tensor | None = None, log1m: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        lm, stats = super().loss(logp, batch, values)
        m = batch.trained.to(logp.device)
        v_loss = per_token_mean((values - batch.reward.to(values.device)) ** 2, m)
        return lm + self.value_weight * v_loss, {**stats, "value_loss": float(v_loss.detach())}
