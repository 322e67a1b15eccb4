"""Algorithm 1 of the paper, end to end, with a run folder that survives a kill.

    X   ← prompt pool                         (load_pools)
    X_P ← {}
    T   ← ⌊B / M⌋
    θ_t ← θ0
    for t = 1..T:
        X_M ← acquire(scorer, θ_t, X)         sample S, generate, score, keep top M
        X_M ← Oracle(X_M)                     every label stored the moment it arrives
        X_P ← X_P + X_M
        θ_{t+1} ← Finetune(θ0, θ_t, X_P, β)   reset or online
        EvaluateUsingOracle(θ_{t+1}, θ0, X_test) at waypoints

Resume: a step is complete once its checkpoint is written. Rerunning the same command
truncates rows of any half-done step, reloads θ from the checkpoint and X_P from
acquired.jsonl, and repeats the step; its oracle questions are answered by the ledger,
so nothing is paid twice. Every random draw is seeded from (seed, step, purpose), so a
resumed run ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aplkit.acquisition import ScoringContext, acquire, get_scorer
from aplkit.config import ConfigError, ExperimentConfig
from aplkit.data import PromptPools, load_pools
from aplkit.dpo import DPOFinetuner, EpochStats, apply_lora
from aplkit.evaluation import WinRate, resolve_against, win_rate
from aplkit.generation import sample_completions
from aplkit.models import Models, load_models
from aplkit.oracles import make_oracle
from aplkit.oracles.base import Oracle
from aplkit.oracles.ledger import Ledger, label_pairs
from aplkit.records import Candidate, Label, Preference
from aplkit.runfolder import RunFolder


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 31-bit seed for one purpose of one step (independent of Python's hash salt)."""
    h = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def default_out(cfg: ExperimentConfig) -> Path:
    return Path("runs") / cfg.name / cfg.strategy.replace("+", "_") / f"seed{cfg.seed}"


@dataclass
class StepResult:
    step: int
    acquired: list[dict]
    train: list[EpochStats]
    eval: dict | None
    seconds: float


@dataclass
class RunResult:
    out: Path
    steps: list[StepResult] = field(default_factory=list)
    eval_rows: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


class Experiment:
    """One strategy × seed. Build it, then ``run()``; the notebook and CLI both use this."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        out: str | Path | None = None,
        *,
        models: Models | None = None,
        oracle: Oracle | None = None,
        pools: PromptPools | None = None,
        progress: bool = True,
    ):
        self.cfg = cfg
        self.run_dir = RunFolder(Path(out or cfg.out or default_out(cfg))).ensure()
        self._check_config()
        self.progress = progress
        self.models = models or load_models(cfg.model.spec, cfg.model.device, cfg.model.dtype, cfg.model.revision, seed=0)
        self.pools = pools or load_pools(cfg.data, self.models.tokenizer)
        self.test = self.pools.test[: cfg.evaluation.test_prompts]
        self.against = resolve_against(cfg.evaluation.against, all(p.reference for p in self.test), cfg.oracle.kind)
        self.oracle = oracle or make_oracle(cfg.oracle, cfg.data, self.pools, self.run_dir.path)
        o = cfg.oracle
        self.ledger = Ledger(self._ledger_path(), price_in=o.price_in, price_out=o.price_out)
        self.scorer = get_scorer(cfg.strategy)
        self.models.reset_policy()  # θ_1 = θ0 even when the caller's models were trained before
        self.models.policy = apply_lora(self.models.policy, cfg.training)
        self.finetuner = DPOFinetuner(
            self.models.policy, self.models.reference, self.models.tokenizer, cfg.training, cfg.acquisition.batch_size
        )

    # ------------------------------------------------------------------ setup
    def _check_config(self) -> None:
        """A run folder belongs to one config; resuming with another would mix two experiments."""
        path = self.run_dir / "config.yaml"
        new = self.cfg.to_dict()
        new.pop("out", None)
        if path.exists():
            import yaml

            old = yaml.safe_load(path.read_text()) or {}
            old.pop("out", None)
            diff = _first_diff(old, new)
            if diff:
                raise ConfigError(f"{self.run_dir.path} was made with a different config ({diff}); use another --out")
        else:
            self.cfg.dump(path)

    def _check_split(self) -> None:
        """The prompt pools must be the ones the run started with (a data upgrade would change them)."""
        old = self.run_dir.read_json("split.json")
        if old is None:
            self.run_dir.write_json("split.json", self.pools.split)
            return
        for key in ("train_ids", "test_ids", "tokenizer_fingerprint"):
            if old.get(key) != self.pools.split.get(key):
                raise ConfigError(
                    f"{self.run_dir.path}: the prompt pools differ from split.json ({key}); the data or tokenizer changed since this run began"
                )

    def _ledger_path(self) -> Path:
        c = self.cfg.oracle.cache
        if c == "run":
            return self.run_dir / "labels.sqlite"
        if c == "user":
            from aplkit.models import cache_dir

            (cache_dir() / "labels").mkdir(parents=True, exist_ok=True)
            return cache_dir() / "labels" / "ledger.sqlite"
        return Path(c)

    # ------------------------------------------------------------------ resume
    def _completed_step(self) -> int:
        ckpt = self.run_dir / "checkpoint" / "state.pt"
        if not ckpt.exists():
            return 0
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        self.finetuner.load_state(state["finetuner"])
        return int(state["step"])

    def _save_checkpoint(self, step: int) -> None:
        d = self.run_dir / "checkpoint"
        d.mkdir(exist_ok=True)
        tmp = d / "state.pt.tmp"
        torch.save({"step": step, "finetuner": self.finetuner.state()}, tmp)
        os.replace(tmp, d / "state.pt")

    def _preferences(self, rows: list[dict]) -> list[Preference]:
        """X_P from acquired rows: ties and invalid answers are not trained on; the sampled ids are kept.

        Rows written before ids were stored (``y0_ids`` absent) fall back to tokenising the text.
        """
        prefs = []
        for r in rows:
            if r["preferred"] is None:
                continue
            w, lose = ("1", "0") if r["preferred"] == 1 else ("0", "1")
            prefs.append(Preference(r["prompt"], r[f"y{w}"], r[f"y{lose}"], r.get(f"y{w}_ids"), r.get(f"y{lose}_ids")))
        return prefs

    # ------------------------------------------------------------------ baseline
    def baseline(self) -> list[str]:
        """θ0's test completions (made once, stored) or the human references."""
        if self.against == "reference":
            return [p.reference or "" for p in self.test]
        rows = self.run_dir.rows("baseline.jsonl")
        if len(rows) == len(self.test):
            return [r["completion"] for r in rows]
        ys = self._sample_test(self.models.reference, derive_seed(self.cfg.seed, "baseline"))
        (self.run_dir / "baseline.jsonl").unlink(missing_ok=True)
        for p, y in zip(self.test, ys, strict=True):
            self.run_dir.append("baseline.jsonl", {"prompt_id": p.id, "prompt": p.text, "completion": y})
        return ys

    def _sample_test(self, model, seed: int) -> list[str]:
        e, a = self.cfg.evaluation, self.cfg.acquisition
        out = sample_completions(
            model,
            self.models.tokenizer,
            [p.text for p in self.test],
            n=1,
            temperature=e.temperature,
            max_new_tokens=e.max_new_tokens or a.max_new_tokens,
            batch_size=e.batch_size,
            seed=seed,
        )
        return [o[0] for o in out]

    # ------------------------------------------------------------------ steps
    def evaluate(self, step: int, acquired: int, trained: int | None = None) -> dict:
        """Win-rate of the current policy (y1) against the baseline (y0) on the test prompts.

        ``acquired`` is t·M labels paid for; ``trained`` the pairs X_P held (ties and invalid answers excluded).
        """
        base = self.baseline()
        ys = self._sample_test(self.models.policy, derive_seed(self.cfg.seed, step, "eval"))
        pairs = [(p.text, b, y) for p, b, y in zip(self.test, base, ys, strict=True)]
        labels = label_pairs(self.oracle, self.ledger, pairs, derive_seed(self.cfg.seed, "eval-order"), purpose="eval")
        wr: WinRate = win_rate(labels, policy_index=1)
        for p, b, y, lab in zip(self.test, base, ys, labels, strict=True):
            self.run_dir.append(
                "eval_pairs.jsonl",
                {"step": step, "prompt_id": p.id, "prompt": p.text, "baseline": b, "policy": y, "preferred": lab.preferred, "tie": lab.tie},
            )
        row = {"step": step, "acquired": acquired, "trained": trained, **wr.as_row(), "against": self.against}
        self.run_dir.append("eval.jsonl", row)
        return row

    def _label(self, cands: list[Candidate]) -> list[Label]:
        o = self.cfg.oracle
        pairs = [(c.prompt.text, c.y0, c.y1) for c in cands]
        return label_pairs(
            self.oracle,
            self.ledger,
            pairs,
            derive_seed(self.cfg.seed, "order"),
            flip_prob=o.flip_prob,
            sample_bt=o.sample_bt,
            purpose="train",
            progress=self.progress,
        )

    def step(self, t: int, xp: list[Preference]) -> StepResult:
        t0 = time.perf_counter()
        cfg, m = self.cfg, self.models
        seed_everything(derive_seed(cfg.seed, t, "global"))
        ctx = ScoringContext(m.policy, m.reference, m.tokenizer, cfg.acquisition, cfg.training.beta, derive_seed(cfg.seed, t, "acquire"))
        clock = _Clock()
        cands = acquire(self.scorer, ctx, self.pools.train)  # lines 6–9
        clock.lap("acquire")
        labels = self._label(cands)  # line 10
        clock.lap("label")
        rows = []
        for i, (c, lab) in enumerate(zip(cands, labels, strict=True)):
            row = _acquired_row(t, i, c, lab)
            self.run_dir.append("acquired.jsonl", row)
            rows.append(row)
        newest = self._preferences(rows)
        xp.extend(newest)  # line 11
        epochs = self.finetuner.finetune(xp, derive_seed(cfg.seed, t, "train"), newest=newest)  # line 12
        clock.lap("train")
        for st in epochs:
            self.run_dir.append("train.jsonl", {"step": t, **st.__dict__})
        acquired = t * cfg.acquisition.acquire_batch
        ev = self.evaluate(t, acquired, len(xp)) if acquired in set(cfg.waypoints()) else None  # line 13
        clock.lap("evaluate")
        self._save_checkpoint(t)
        clock.lap("checkpoint")
        secs = time.perf_counter() - t0
        self.run_dir.append("steps.jsonl", {"step": t, "acquired": acquired, "labels": len(newest), "seconds": secs, **clock.laps})
        return StepResult(t, rows, epochs, ev, secs)

    def run(self, on_step: Callable[[StepResult], None] | None = None) -> RunResult:
        from tqdm.auto import tqdm

        cfg = self.cfg
        wall0 = time.perf_counter()
        done = self._completed_step()
        rd = self.run_dir
        for name in ("acquired.jsonl", "train.jsonl", "eval.jsonl", "eval_pairs.jsonl", "steps.jsonl"):
            rd.truncate_after_step(name, done)
        if done and not any(r["step"] == done for r in rd.rows("steps.jsonl")):
            rd.append("steps.jsonl", {"step": done, "acquired": done * cfg.acquisition.acquire_batch, "labels": None, "seconds": None})
        self._check_split()
        xp = self._preferences(rd.rows("acquired.jsonl"))
        result = RunResult(out=rd.path)
        if done < cfg.steps:
            self.baseline()
        bar = tqdm(
            range(done + 1, cfg.steps + 1), desc=f"{cfg.strategy} seed {cfg.seed}", disable=not self.progress, initial=done, total=cfg.steps
        )
        for t in bar:
            res = self.step(t, xp)
            result.steps.append(res)
            if res.eval:
                bar.set_postfix(win_rate=f"{res.eval['win_rate']:.3f}", labels=t * cfg.acquisition.acquire_batch)
            if on_step:
                on_step(res)
        result.eval_rows = rd.rows("eval.jsonl")
        prev = rd.read_json("summary.json", {}) or {}
        stats = self.ledger.stats()
        result.summary = {
            "complete": True,
            "steps": cfg.steps,
            "labels": len(rd.rows("acquired.jsonl")),
            "final_win_rate": result.eval_rows[-1]["win_rate"] if result.eval_rows else None,
            "wall_seconds": round(float(prev.get("wall_seconds") or 0.0) + time.perf_counter() - wall0, 2),
            "oracle": stats,
        }
        rd.write_json("summary.json", result.summary)
        return result

    def close(self) -> None:
        self.ledger.close()
        self.oracle.close()


def run_experiment(cfg: ExperimentConfig, out: str | Path | None = None, **kwargs) -> RunResult:
    """Build and run one experiment; closes the ledger and oracle even on failure."""
    progress = kwargs.pop("progress", True)
    on_step = kwargs.pop("on_step", None)
    exp = Experiment(cfg, out, progress=progress, **kwargs)
    try:
        return exp.run(on_step=on_step)
    finally:
        exp.close()


class _Clock:
    """Seconds spent in each phase of a step, for steps.jsonl (where did the time go?)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[f"{name}_s"] = round(now - self._t, 3)
        self._t = now


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _acquired_row(step: int, index: int, c: Candidate, lab: Label) -> dict:
    return {
        "step": step,
        "index": index,
        "prompt_id": c.prompt.id,
        "prompt": c.prompt.text,
        "y0": c.y0,
        "y1": c.y1,
        "y0_ids": c.y0_ids,
        "y1_ids": c.y1_ids,
        "score": c.score,
        "entropy": c.entropy,
        "reward0": c.reward0,
        "reward1": c.reward1,
        "bt_prob": c.bt_prob,
        "shown_order": lab.shown_order,
        "choice": lab.verdict.choice,
        "preferred": lab.preferred,
        "oracle_p_y1": lab.p_y1,
        "raw": lab.verdict.raw,
        "flipped": lab.flipped,
        "cached": lab.cached,
    }


def _first_diff(a: object, b: object, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} → {b!r}"


__all__ = ["Experiment", "RunResult", "StepResult", "derive_seed", "run_experiment"]
