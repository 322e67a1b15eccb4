"""DPO fine-tuning (Algorithm 1, line 12): L = −E log σ(r̂(x,y_w) − r̂(x,y_l)),  r̂ = β log πθ/πθ0.

Two modes:
  ``reset``  (paper §3.3) restart from θ0 every acquisition step and train ``epochs`` epochs on all of X_P;
  ``online`` (Appendix D) keep θ and the optimiser, take ``online_steps`` steps on the newest batch.

Reference log-probs log πθ0(y|x) never change, so each pair's are computed once and
cached for every later epoch and step (``RefCache``). Batches are laid out as TRL's
``DPOTrainer`` lays them out — chosen rows stacked over rejected rows — so the
equivalence test can feed both the same tensors.

Each ``finetune`` call tokenises X_P and looks up θ0's values once (``encode``); epochs and micro-batches
index into them, and an epoch's statistics are summed on the device and read once at its end: on a GPU a
read per micro-batch would wait for the queued kernels every time. ``training.micro_batch_size`` pairs per
forward/backward pass accumulate one optimiser step of ``batch_size`` pairs (Pythia-1B at the paper's 64 TL;DR
pairs does not fit one card in one pass); None passes the whole mini-batch at once.

Completions are trained on as the token ids that were sampled, EOS included when the
model stopped, so DPO also learns when to stop. Dropout is off (r̂ = 0 at θ = θ0, as in
TRL); the weights are fp32 and a bf16/fp16 compute dtype runs under autocast (fp16 with a
gradient scaler), so an update of lr 1e-6 is never rounded away.

θ0 keeps fp32 weights as well and runs under the same autocast, although autocast then casts its frozen
weights again on every forward pass (it keeps the casts of trainable weights only). Held once in bf16, its
embeddings, norms and residual stream would round where the policy's do not: at θ = θ0, r̂ would not be 0,
θ0's log-probs would not be those a policy at θ0 computes, and ``reset`` (θ ← θ0, copied from the
reference's weights) would start from rounded weights. The casts cost little here: θ0 scores each pair
once (``RefCache``), not once per epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass
class EncodedPreferences:
    """Pairs as token ids, chosen rows then rejected rows (``preference_ids``), and θ0's log-probs of those rows (on the device)."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    ref: torch.Tensor

    @property
    def pairs(self) -> int:
        return len(self.prompt_ids) // 2


class _Sums:
    """An epoch's loss, reward accuracy and margin summed on the device: read once per epoch, not once per micro-batch."""

    def __init__(self) -> None:
        self.sums: list = [0.0, 0.0, 0.0]  # Σ loss·pairs, Σ [r̂_w > r̂_l], Σ (r̂_w − r̂_l): tensors once added to

    def add(self, loss: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor, pairs: int) -> None:
        terms = (loss.detach() * pairs, (rc > rr).double().sum(), (rc - rr).sum())
        self.sums = [s + t for s, t in zip(self.sums, terms, strict=True)]

    def stats(self, pairs: int, t0: float) -> EpochStats:
        n = max(1, pairs)
        loss, acc, margin = torch.stack(self.sums).tolist() if isinstance(self.sums[0], torch.Tensor) else self.sums
        return EpochStats(0, loss / n, acc / n, margin / n, pairs, time.perf_counter() - t0)


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

    def encode(self, prefs: Sequence[Preference]) -> EncodedPreferences:
        """X_P's ids and θ0's log-probs, once per ``finetune`` call: every epoch and micro-batch indexes into them."""
        p_ids, c_ids = preference_ids(self.tokenizer, prefs)
        ref = self.ref.get(p_ids, c_ids).to(next(self.policy.parameters()).device)
        return EncodedPreferences(p_ids, c_ids, ref)

    def _loss(self, enc: EncodedPreferences, pairs: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean DPO loss and implicit rewards of the pairs at these indices of ``enc`` (chosen rows over rejected rows)."""
        rows = [*pairs, *(i + enc.pairs for i in pairs)]
        batch = encode_ids([enc.prompt_ids[r] for r in rows], [enc.completion_ids[r] for r in rows], self.tokenizer.pad_token_id)
        ref = enc.ref[torch.tensor(rows, device=enc.ref.device)]
        logps = completion_logprobs(self.policy, batch).double()
        k = len(pairs)
        return dpo_loss(logps[:k], logps[k:], ref[:k], ref[k:], self.cfg.beta)

    def _step(self, prefs: Sequence[Preference]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The loss and implicit rewards of one batch (no update)."""
        return self._loss(self.encode(prefs), range(len(prefs)))

    def _train_on(self, enc: EncodedPreferences, order: list[int]) -> EpochStats:
        """One epoch: a step per mini-batch of ``batch_size`` pairs in ``order``, each accumulated over micro-batches."""
        t0 = time.perf_counter()
        sums = _Sums()
        bs = self.cfg.batch_size
        for s in range(0, len(order), bs):
            self._accumulated_step(enc, order[s : s + bs], sums)
        return sums.stats(len(order), t0)

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
        batch = list(prefs if reset else (newest if newest is not None else prefs))
        enc = self.encode(batch)
        for epoch in range(1, (self.cfg.epochs if reset else self.cfg.online_steps) + 1):
            if reset:
                st = self._train_on(enc, torch.randperm(len(prefs), generator=gen).tolist())
            else:  # Appendix D: one step on the whole newest batch
                t0, sums = time.perf_counter(), _Sums()
                self._accumulated_step(enc, list(range(len(batch))), sums)
                st = sums.stats(len(batch), t0)
            st.epoch = epoch
            stats.append(st)
            if on_epoch is not None:
                on_epoch(st)
                self.policy.train()
        self.policy.eval()
        return stats

    def _accumulated_step(self, enc: EncodedPreferences, pairs: list[int], sums: _Sums) -> None:
        """One optimiser step over ``pairs``, its gradient accumulated over forward passes of ``training.micro_batch_size``
        pairs (None: ``batch_size``, so a reset-mode mini-batch is one pass and an online batch passes of ``batch_size``).

        Each micro-batch's mean loss is weighted by its share of the pairs, so the gradient is the whole
        batch's mean (a last, smaller micro-batch counts for its pairs); one micro-batch is the batch's own loss.
        """
        self.optimizer.zero_grad(set_to_none=True)
        micro = self.cfg.micro_batch_size or self.cfg.batch_size
        n = len(pairs)
        for s in range(0, n, micro):
            part = pairs[s : s + micro]
            loss, rc, rr = self._loss(enc, part)
            self.scaler.scale(loss if len(part) == n else loss * len(part) / n).backward()
            sums.add(loss, rc, rr, len(part))
        self._optimizer_step()

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
