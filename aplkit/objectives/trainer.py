"""The PHF objectives' registry and their training step, shared by the PHF experiment and the APL loop."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from aplkit.config import ConfigError, PHFLossConfig, TrainingConfig
from aplkit.objectives.awr import AWR, value_head
from aplkit.objectives.conditional import Conditional, add_control_tokens
from aplkit.objectives.filtering import Filtering
from aplkit.objectives.mle import MLE
from aplkit.objectives.rwr import RWR
from aplkit.objectives.segments import Document, SegmentLoss, TokenBatch, encode, token_logprobs
from aplkit.objectives.unlikelihood import Unlikelihood

LOSSES: dict[str, type[SegmentLoss]] = {c.name: c for c in (MLE, Filtering, Conditional, Unlikelihood, RWR, AWR)}


def make_loss(name: str, cfg: PHFLossConfig, tokenizer=None, models: Sequence = ()) -> SegmentLoss:
    """The loss of objective ``name``; conditional training adds its control tokens to ``tokenizer`` and ``models``."""
    if name not in LOSSES:
        raise ConfigError(f"training.objective: unknown PHF objective '{name}' (choose from {', '.join(LOSSES)})")
    kw = {"alpha": cfg.alpha, "beta": cfg.beta, "value_weight": cfg.value_weight, "max_weight": cfg.max_weight}
    if name == "conditional":
        good, bad = add_control_tokens(tokenizer, *models)
        return Conditional(good, bad, **kw)
    return LOSSES[name](**kw)


class SegmentTrainer:
    """θ, the optimiser and (AWR) the value head: one gradient step per batch of documents."""

    def __init__(self, policy, loss: SegmentLoss, cfg: TrainingConfig, pad_id: int, prefix: Sequence[int] = ()):
        self.policy, self.loss, self.cfg, self.pad_id, self.prefix = policy, loss, cfg, pad_id, list(prefix)
        self.value_head = None
        if loss.uses_values:
            device = next(policy.parameters()).device
            self.value_head = value_head(policy.config.hidden_size).to(device)
        self.optimizer = self.new_optimizer()

    def parameters(self) -> list[torch.nn.Parameter]:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        return params + (list(self.value_head.parameters()) if self.value_head is not None else [])

    def new_optimizer(self) -> torch.optim.Optimizer:
        cls = torch.optim.AdamW if self.cfg.optimizer == "adamw" else torch.optim.Adam
        return cls(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def batch(self, docs: Sequence[Document], t: float) -> TokenBatch:
        """``docs`` as this trainer lays them out: ``prefix``, then each document as the loss arranges it."""
        return encode(docs, t, self.loss, self.pad_id, self.prefix)

    def step(self, docs: Sequence[Document], t: float, micro_batch: int = 0) -> dict[str, float]:
        """One optimiser step on ``docs`` (threshold ``t``); the loss, its parts and the trained tokens.

        ``micro_batch`` > 0: forward passes of that many documents, their gradients accumulated, each
        weighted by its share of the trained tokens. Every loss is a mean over the trained tokens, so
        this is the one-batch step in less memory; the parts are the micro-batches' token-weighted means.
        """
        size = micro_batch if micro_batch > 0 else max(1, len(docs))
        batches = [self.batch(docs[s : s + size], t) for s in range(0, len(docs), size)]
        n = sum(b.tokens for b in batches)
        self.policy.train()
        self.optimizer.zero_grad(set_to_none=True)
        total, parts = 0.0, {}
        for batch in batches:
            logp, values, *log1m = token_logprobs(self.policy, batch, self.value_head, self.loss.complement(batch))
            loss, stats = self.loss.loss(logp, batch, values, *log1m)
            share = batch.tokens / n if n else 0.0
            if batch.tokens:
                (loss * share).backward()
            total += float(loss.detach()) * share
            for k, v in stats.items():
                parts[k] = parts.get(k, 0.0) + v * share
        if n:
            if self.cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.parameters(), self.cfg.max_grad_norm)
            self.optimizer.step()
        self.policy.eval()
        return {"loss": total, "tokens": n, **parts}

    def state(self) -> dict:
        weights = {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items() if self._trainable(k)}
        head = self.value_head.state_dict() if self.value_head is not None else None
        return {"weights": weights, "value_head": head, "optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict) -> None:
        self.policy.load_state_dict(state["weights"], strict=False)
        if self.value_head is not None and state.get("value_head") is not None:
            self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])

    def _trainable(self, name: str) -> bool:
        return not self.cfg.lora.enabled or "lora_" in name or "trainable_tokens" in name
