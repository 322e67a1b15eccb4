"""The bridge: a PHF objective inside the APL loop, trained on the acquired pairs X_P.

Each labelled pair (x, y_w, y_l) becomes two documents: the prompt x as context (read, never
trained on) and one completion segment. Its reward R follows ``training.phf.pair_rewards``:

* ``label`` (default): y_w has R = 1 and y_l R = 0, so with the threshold t = ½ the chosen
  completion is the good segment and the rejected one the bad (filtering trains on y_w alone,
  unlikelihood pushes y_l down, RWR/AWR weight y_w by e^(1/β)).
* ``oracle``: where the oracle scores each completion (sentiment, classifier, ROUGE), R is its
  score s(x, y), carried from the verdict through the ledger into ``Preference``, and t is the
  ``threshold_percentile``-th percentile of the scores of every completion in X_P — the PHF
  experiment's rule on its training scores (``segments.threshold``). A chosen completion can then
  be bad (below t) and a rejected one good; RWR/AWR weight each by e^(R/β) (or e^(A/β)).

Conditional training puts its control token between prompt and completion (x <|good|> y_w,
x <|bad|> y_l) and conditions the policy on ``<|good|>``: the tokenizer appends it to every prompt it
encodes with special tokens (sampling, scoring and KL), and θ and θ0 never emit a control token —
every score masks them and renormalises over the rest (``generation.next_token_logits``), as the
sampler draws. Implicit rewards and KL compare the policy with θ0 reading the same prompt. θ0's
baseline completions and LM loss, and the held-out text the LM loss reads, are taken before the
tokens are added (``Evaluator.prepare_theta0``): every objective of a seed is judged against the same
θ0 as deployed.

Training follows ``training.mode``: ``reset`` restarts from θ0 and runs ``epochs`` epochs over all of
X_P in mini-batches of ``batch_size`` pairs; ``online`` takes ``online_steps`` optimiser steps, each on the
whole newest batch (Appendix D), its gradient accumulated over forward passes of ``batch_size`` pairs.
``micro_batch_size`` pairs per forward pass (when set) accumulate each step's gradient in less memory, as DPO's do.
DPO's implicit-reward statistics (``reward_acc``, ``margin``) are not defined here and are left None (null in train.jsonl).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from aplkit.config import CONDITIONAL_NEEDS_FULL, ConfigError, TrainingConfig
from aplkit.models import Models, disable_dropout
from aplkit.objectives import Objective
from aplkit.objectives.segments import Document, Segment, threshold
from aplkit.objectives.trainer import SegmentTrainer, make_loss
from aplkit.records import EpochStats, Preference

GOOD_REWARD, BAD_REWARD, THRESHOLD = 1.0, 0.0, 0.5


def condition_on(tokenizer, token: str, token_id: int) -> None:
    """Make the tokenizer append ``token`` to every text encoded with special tokens (generation's prompts)."""
    from tokenizers import processors

    template = processors.TemplateProcessing(single=f"$A {token}", pair=f"$A $B {token}", special_tokens=[(token, token_id)])
    tokenizer.backend_tokenizer.post_processor = template


class PreferenceObjective(Objective):
    def __init__(self, name: str, models: Models, cfg: TrainingConfig, batch_size: int = 32):
        if name == "conditional" and cfg.lora.enabled:
            raise ConfigError(CONDITIONAL_NEEDS_FULL)
        self.name, self.models, self.cfg = name, models, cfg
        tok = models.tokenizer
        self.loss = make_loss(name, cfg.phf, tok, [models.policy, models.reference])
        if name == "conditional":
            condition_on(tok, tok.convert_ids_to_tokens(self.loss.good_id), self.loss.good_id)
            for m in (models.policy, models.reference):
                m.aplkit_suppress_tokens = self.loss.suppress
        for p in models.reference.parameters():
            p.requires_grad_(False)
        disable_dropout(models.policy)
        self.trainer = self._new_trainer()
        if cfg.lora.enabled:
            self._theta0 = {k: v.detach().clone() for k, v in models.policy.state_dict().items() if self.trainer._trainable(k)}
        else:  # θ0 is the frozen reference (resized alike for conditional): no second copy of the weights
            self._theta0 = models.reference.state_dict()

    def _new_trainer(self) -> SegmentTrainer:
        return SegmentTrainer(self.models.policy, self.loss, self.cfg, self.models.tokenizer.pad_token_id)

    def rewards(self, p: Preference) -> tuple[float, float]:
        """(R(y_w), R(y_l)): 1 and 0 from the label, or the oracle's scores (``training.phf.pair_rewards``)."""
        if self.cfg.phf.pair_rewards == "label":
            return GOOD_REWARD, BAD_REWARD
        if p.chosen_reward is None or p.rejected_reward is None:
            raise ConfigError(
                "training.phf.pair_rewards: 'oracle' but an acquired pair has no oracle scores (a pairwise judge, or a run labelled before scores were kept)"
            )
        return float(p.chosen_reward), float(p.rejected_reward)

    def threshold(self, prefs: Sequence[Preference]) -> float:
        """t: ½ between the label's 1 and 0, or the ``threshold_percentile`` of the scores of all 2·|X_P| completions."""
        if self.cfg.phf.pair_rewards == "label":
            return THRESHOLD
        return threshold([r for p in prefs for r in self.rewards(p)], self.cfg.phf.threshold_percentile)

    def documents(self, prefs: Sequence[Preference]) -> list[Document]:
        """Two documents per pair: prompt as context, then y_w or y_l as the one segment with its reward."""
        tok = self.models.tokenizer
        out = []
        for p in prefs:
            x = tok(p.prompt, add_special_tokens=False)["input_ids"]
            w = list(p.chosen_ids) if p.chosen_ids is not None else tok(p.chosen, add_special_tokens=False)["input_ids"]
            lo = list(p.rejected_ids) if p.rejected_ids is not None else tok(p.rejected, add_special_tokens=False)["input_ids"]
            r_w, r_l = self.rewards(p)
            out += [Document([Segment(w, r_w)], context=x), Document([Segment(lo, r_l)], context=x)]
        return out

    def _epoch(self, prefs: Sequence[Preference], order: list[int], epoch: int, t: float) -> EpochStats:
        t0 = time.perf_counter()
        total, tokens = 0.0, 0
        bs = self.cfg.batch_size
        for s in range(0, len(order), bs):
            st = self.trainer.step(
                self.documents([prefs[i] for i in order[s : s + bs]]), t, micro_batch=2 * (self.cfg.micro_batch_size or 0)
            )
            total += st["loss"] * st["tokens"]
            tokens += st["tokens"]
        return EpochStats(epoch, total / max(1, tokens), None, None, len(order), time.perf_counter() - t0)

    def finetune(
        self,
        prefs: Sequence[Preference],
        seed: int,
        newest: Sequence[Preference] | None = None,
        on_epoch: Callable[[EpochStats], Any] | None = None,
    ) -> list[EpochStats]:
        gen = torch.Generator().manual_seed(seed)
        t = self.threshold(prefs)  # over all of X_P, also in online mode (the newest batch alone is a small sample)
        reset = self.cfg.mode == "reset"
        if reset:
            self.models.policy.load_state_dict(self._theta0, strict=False)
            self.trainer = self._new_trainer()
        batch = list(newest if newest is not None else prefs)
        stats = []
        for e in range(1, (self.cfg.epochs if reset else self.cfg.online_steps) + 1):
            st = self._epoch(prefs, torch.randperm(len(prefs), generator=gen).tolist(), e, t) if reset else self._online_step(batch, e, t)
            stats.append(st)
            if on_epoch is not None:
                on_epoch(st)
        return stats

    def _online_step(self, prefs: Sequence[Preference], step: int, t: float) -> EpochStats:
        """One optimiser step on all of ``prefs``, accumulated over micro-batches of ``micro_batch_size`` (else ``batch_size``)
        pairs (two documents each)."""
        t0 = time.perf_counter()
        st = self.trainer.step(self.documents(prefs), t, micro_batch=2 * (self.cfg.micro_batch_size or self.cfg.batch_size))
        return EpochStats(step, st["loss"], None, None, len(prefs), time.perf_counter() - t0)

    def state(self) -> dict:
        return self.trainer.state()

    def load_state(self, state: dict) -> None:
        self.trainer.load_state(state)
