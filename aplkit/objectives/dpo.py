"""DPO fine-tuning (Algorithm 1, line 12): L = −E log σ(r̂(x,y_w) − r̂(x,y_l)),  r̂ = β log πθ/πθ0.

Two modes:
  ``reset``  (paper §3.3) restart from θ0 every acquisition step and train ``epochs`` epochs on all of X_P;
  ``online`` (Appendix D) keep θ and the optimiser, take ``online_steps`` steps on the newest batch.

Reference log-probs log πθ0(y|x) never change, so each pair's are computed once and
cached for every later epoch and step (``RefCache``). Batches are laid out as TRL's
``DPOTrainer`` lays them out — chosen rows stacked over rejected rows — so the
equivalence test can feed both the same tensors.

Completions are trained on as the token ids that were sampled, EOS included when the
model stopped, so DPO also learns when to stop. Dropout is off (r̂ = 0 at θ = θ0, as in
TRL); the weights are fp32 and a bf16/fp16 compute dtype runs under autocast (fp16 with a
gradient scaler), so an update of lr 1e-6 is never rounded away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from aplkit.config import TrainingConfig
from aplkit.generation import completion_logprobs, encode_ids, ids_logprobs, prompt_ids
from aplkit.models import disable_dropout
from aplkit.objectives import Objective
from aplkit.records import EpochStats, Preference


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean DPO loss and the implicit rewards β(log πθ − log πθ0) of chosen and rejected."""
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return loss, chosen_rewards.detach(), rejected_rewards.detach()


class RefCache:
    """log πθ0(y|x) per (prompt ids, completion ids): computed once, reused across epochs and steps."""

    def __init__(self, reference, tokenizer, batch_size: int = 32):
        self.reference, self.tokenizer, self.batch_size = reference, tokenizer, batch_size
        self._store: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {}

    def get(self, p_ids: Sequence[Sequence[int]], c_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        keys = [(tuple(p), tuple(c)) for p, c in zip(p_ids, c_ids, strict=True)]
        missing = sorted(set(keys) - self._store.keys())
        if missing:
            values = ids_logprobs(
                self.reference, [list(m[0]) for m in missing], [list(m[1]) for m in missing], self.tokenizer.pad_token_id, self.batch_size
            )
            self._store.update(zip(missing, values.tolist(), strict=True))
        return torch.tensor([self._store[k] for k in keys], dtype=torch.float64)

    def __len__(self) -> int:
        return len(self._store)


def preference_ids(tokenizer, prefs: Sequence[Preference]) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt ids and completion ids, chosen rows then rejected rows; sampled ids are used as they are."""

    def ids(text: str, given: list[int] | None) -> list[int]:
        return list(given) if given is not None else tokenizer(text, add_special_tokens=False)["input_ids"]

    p_ids = prompt_ids(tokenizer, [p.prompt for p in prefs]) * 2
    c_ids = [ids(p.chosen, p.chosen_ids) for p in prefs] + [ids(p.rejected, p.rejected_ids) for p in prefs]
    return p_ids, c_ids


def make_batch(tokenizer, prefs: Sequence[Preference]):
    """Chosen rows then rejected rows, right-padded, completion-masked (TRL's layout)."""
    p_ids, c_ids = preference_ids(tokenizer, prefs)
    return encode_ids(p_ids, c_ids, tokenizer.pad_token_id), p_ids, c_ids


class DPOFinetuner(Objective):
    """Holds θ0's snapshot, the optimiser and the reference cache across acquisition steps (objective ``dpo``)."""

    name = "dpo"

    def __init__(self, policy, reference, tokenizer, cfg: TrainingConfig, ref_batch_size: int = 32):
        self.policy, self.tokenizer, self.cfg = policy, tokenizer, cfg
        if any(p.requires_grad and p.dtype != torch.float32 for p in policy.parameters()):
            raise ValueError(
                "DPO trains fp32 weights (set model.dtype for the compute precision): low-precision weights lose updates at small lr"
            )
        disable_dropout(policy)
        self.ref = RefCache(reference, tokenizer, ref_batch_size)
        self.scaler = self._new_scaler()
        if cfg.lora.enabled:  # θ0 = base weights + fresh adapters: snapshot the (small) adapters
            self._theta0 = {k: v.detach().clone() for k, v in policy.state_dict().items() if self._trainable(k)}
        else:  # full fine-tuning: θ0 is the frozen reference itself, no second copy of the weights
            self._theta0 = reference.state_dict()
        self.optimizer = self._new_optimizer()

    def _trainable(self, name: str) -> bool:
        if not self.cfg.lora.enabled:
            return True
        return "lora_" in name

    def _new_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        cls = torch.optim.AdamW if self.cfg.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def _new_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 compute (bf16 and fp32 need none)."""
        compute = getattr(self.policy, "aplkit_compute_dtype", None)
        return torch.amp.GradScaler(next(self.policy.parameters()).device.type, enabled=compute == torch.float16)

    def reset(self) -> None:
        """θ ← θ0 and a fresh optimiser (the paper's default, §3.3)."""
        self.policy.load_state_dict(self._theta0, strict=False)
        self.optimizer = self._new_optimizer()
        self.scaler = self._new_scaler()

    def _step(self, prefs: Sequence[Preference]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, p_ids, c_ids = make_batch(self.tokenizer, prefs)
        ref = self.ref.get(p_ids, c_ids).to(next(self.policy.parameters()).device)
        logps = completion_logprobs(self.policy, batch).double()
        n = len(prefs)
        loss, rc, rr = dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], self.cfg.beta)
        return loss, rc, rr

    def _train_on(self, prefs: Sequence[Preference], order: list[int]) -> EpochStats:
        t0 = time.perf_counter()
        losses, accs, margins = [], [], []
        bs = self.cfg.batch_size
        for s in range(0, len(order), bs):
            chunk = [prefs[i] for i in order[s : s + bs]]
            self.optimizer.zero_grad(set_to_none=True)
            loss, rc, rr = self._step(chunk)
            self.scaler.scale(loss).backward()
            self._optimizer_step()
            losses.append(loss.item() * len(chunk))
            accs.append((rc > rr).double().sum().item())
            margins.append((rc - rr).sum().item())
        n = max(1, len(order))
        return EpochStats(0, sum(losses) / n, sum(accs) / n, sum(margins) / n, len(order), time.perf_counter() - t0)

    def finetune(
        self,
        prefs: Sequence[Preference],
        seed: int,
        newest: Sequence[Preference] | None = None,
        on_epoch: Callable[[EpochStats], Any] | None = None,
    ) -> list[EpochStats]:
        """Fine-tune per the configured mode. ``prefs`` is all of X_P; ``newest`` the latest batch (online);
        ``on_epoch`` hears each epoch's (online: step's) row as it ends."""
        self.policy.train()
        gen = torch.Generator().manual_seed(seed)
        stats = []
        reset = self.cfg.mode == "reset"
        if reset:
            self.reset()
        batch = list(newest if newest is not None else prefs)
        for epoch in range(1, (self.cfg.epochs if reset else self.cfg.online_steps) + 1):
            if reset:
                st = self._train_on(prefs, torch.randperm(len(prefs), generator=gen).tolist())
            else:
                st = self._accumulated_step(batch)
            st.epoch = epoch
            stats.append(st)
            if on_epoch is not None:
                on_epoch(st)
                self.policy.train()
        self.policy.eval()
        return stats

    def _accumulated_step(self, prefs: Sequence[Preference]) -> EpochStats:
        """One optimiser step over the whole batch, accumulated in micro-batches (Appendix D)."""
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        tot, acc, mar = 0.0, 0.0, 0.0
        n = len(prefs)
        for s in range(0, n, self.cfg.batch_size):
            chunk = prefs[s : s + self.cfg.batch_size]
            loss, rc, rr = self._step(chunk)
            self.scaler.scale(loss * len(chunk) / n).backward()
            tot += loss.item() * len(chunk)
            acc += (rc > rr).double().sum().item()
            mar += (rc - rr).sum().item()
        self._optimizer_step()
        return EpochStats(0, tot / n, acc / n, mar / n, n, time.perf_counter() - t0)

    def _optimizer_step(self) -> None:
        if self.cfg.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def state(self) -> dict:
        """What a checkpoint needs to continue exactly (trainable weights, and the optimiser in online mode)."""
        weights = {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items() if self._trainable(k)}
        return {"weights": weights, "optimizer": self.optimizer.state_dict() if self.cfg.mode == "online" else None}

    def load_state(self, state: dict) -> None:
        self.policy.load_state_dict(state["weights"], strict=False)
        if state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])


def apply_lora(policy, cfg: TrainingConfig, trainable_tokens: list[int] | None = None):
    """Wrap the policy with fresh LoRA adapters (peft); θ0 is the base model plus zero-initialised B.

    ``trainable_tokens``: embedding rows trained beside the adapters (conditional training's control
    tokens, which LoRA would otherwise freeze at their initial value); tied output rows follow.
    """
    if not cfg.lora.enabled:
        return policy
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        task_type="CAUSAL_LM",
        trainable_token_indices={"embed_tokens": list(trainable_tokens)} if trainable_tokens else None,
    )
    return get_peft_model(policy, lcfg)
