"""Algorithm 1 of the paper, end to end, with a run folder that survives a kill.

    X   ← prompt pool                         (load_pools)
    X_P ← {}
    T   ← ⌊B / M⌋
    θ_t ← θ0
    for t = 1..T:                             Experiment.step:
        X_M ← acquire(scorer, θ_t, X)           sample S, generate, score, keep top M
        X_M ← Oracle(X_M)                       every label stored the moment it arrives
        X_P ← X_P + X_M
        θ_{t+1} ← Finetune(θ0, θ_t, X_P, β)     reset or online
        EvaluateUsingOracle(θ_{t+1}, θ0, X_test) at waypoints (evaluation.epoch_points: after every epoch too)

Pool-based acquisition (``data.task: preferences``): the candidates are a preference data set's stored pairs
(``PromptPools.pairs``), each labelled at most once, ranked by the same scorers with the current policy; the
``dataset`` oracle answers from the stored labels, and the waypoints also measure the held-out preference
accuracy (``evaluation.HeldOutPreferences``), the win-rate only where a judge of the generations is configured.

Resume: a step is complete once its checkpoint is written. Rerunning the same command
drops the rows of any half-done step (its per-epoch evaluations too), reloads θ from the checkpoint and X_P from
acquired.jsonl, and repeats the step; its oracle questions are answered by the ledger,
so nothing is paid twice. Every random draw is seeded from (seed, step, purpose), so a
resumed run ends exactly where an uninterrupted one does. The run folder
(``aplkit.runfolder``) owns every file; this module is the algorithm.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aplkit.acquisition import ScoringContext, acquire, get_scorer
from aplkit.config import ConfigError, ExperimentConfig
from aplkit.data import PromptPools, load_pools
from aplkit.evaluation import Evaluator, HeldOutPreferences
from aplkit.models import Models, follow_core_share, load_models
from aplkit.objectives import make_objective
from aplkit.objectives.dpo import apply_lora
from aplkit.oracles import POOL_ONLY, check_oracle, make_oracle
from aplkit.oracles.base import Oracle
from aplkit.oracles.labelling import label_pairs
from aplkit.oracles.ledger import open_ledger
from aplkit.records import AcquiredRow, Candidate, EpochEvalRow, EpochStats, EvalRow, HeldOutRow, Preference, StepRow, TrainRow, to_dict
from aplkit.runfolder import SUMMARY, RunFolder
from aplkit.seeding import derive_seed, seed_everything

if TYPE_CHECKING:
    from aplkit.callbacks import Callback


def default_out(cfg: ExperimentConfig) -> Path:
    return Path("runs") / cfg.name / cfg.strategy.replace("+", "_") / f"seed{cfg.seed}"


@dataclass
class StepResult:
    """What one acquisition step produced: the labelled pairs X_M, the preferences it adds to X_P, training, evaluation."""

    step: int
    acquired: list[AcquiredRow]
    newest: list[Preference]
    train: list[EpochStats]
    eval: EvalRow | None
    seconds: dict[str, float] = field(default_factory=dict)  # per phase: acquire, label, train, evaluate
    oracle: dict[str, Any] = field(default_factory=dict)  # the ledger's stats once the step is committed (calls, cost so far)
    sampled_logprobs: bool | None = None  # the scoring context's ``sampled_logprobs()``: which passes acquisition ran
    heldout: HeldOutRow | None = None  # a pool-based run's held-out preference accuracy at a waypoint
    epoch_evals: list[EpochEvalRow] = field(default_factory=list)  # evaluation.epoch_points: after each earlier epoch


@dataclass
class RunResult:
    out: Path
    steps: list[StepResult] = field(default_factory=list)
    eval_rows: list[EvalRow] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    heldout_rows: list[HeldOutRow] = field(default_factory=list)


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
        if oracle is None:
            check_oracle(cfg.oracle)  # an API judge's key, endpoint and model: before the run folder and any model
        self.run_dir = RunFolder.open(Path(out or cfg.out or default_out(cfg)), cfg.to_dict())
        with self.run_dir.given_back_on_error():
            self.run_dir.note_phase("setup")
            self.progress = progress
            self.models = models or load_models(cfg.model.spec, cfg.model.device, cfg.model.dtype, cfg.model.revision, seed=0)
            self.pools = pools or load_pools(cfg.data, self.models.tokenizer)
            self.oracle = oracle or make_oracle(cfg.oracle, cfg.data, self.pools, self.run_dir.path)
            self.ledger = open_ledger(self.run_dir, cfg.oracle)
            self.scorer = get_scorer(cfg.strategy)
            self.models.reset_policy()  # θ_1 = θ0 even when the caller's models were trained before
            self.models.policy = apply_lora(self.models.policy, cfg.training)
            test = self.pools.test[: cfg.evaluation.test_prompts]
            self.judge = self.evaluation_oracle()
            self.evaluator = None
            if self.judge is not None:
                self.evaluator = Evaluator(cfg, self.models, test, self.judge, self.ledger, self.run_dir, self.pools.held_out_texts())
                self.evaluator.prepare_theta0()  # θ0's baseline and LM loss before the objective may add tokens: one θ0 for every objective
            self.heldout = None
            if self.pools.pairs:  # pool-based: the held-out pairs' θ0 log-probs, from θ0 as deployed too
                self.heldout = HeldOutPreferences(self.models, test, self.pools.pairs, cfg.training.beta, cfg.evaluation.batch_size)
                self.heldout.prepare_theta0()
            self.finetuner = make_objective(self.models, cfg.training, cfg.acquisition.batch_size)  # training.objective (default dpo)
            if cfg.evaluation.epoch_points and "on_epoch" not in inspect.signature(self.finetuner.finetune).parameters:
                raise ConfigError(
                    f"evaluation.epoch_points: objective '{cfg.training.objective}' cannot be evaluated after each epoch "
                    "(its finetune takes no on_epoch); leave epoch_points empty"
                )

    # ------------------------------------------------------------------ Algorithm 1
    def step(self, t: int, xp: Sequence[Preference]) -> StepResult:
        """Lines 6–13 for step t, given X_P so far; returns the step's new preferences (X_P is the caller's)."""
        clock = _Clock(lambda phase, since: self.run_dir.note_phase(phase, t, since))
        seed_everything(derive_seed(self.cfg.seed, t, "global"))
        ctx = self.scoring_context(t)
        labelled = {r.prompt_id for r in self.run_dir.read(AcquiredRow)} if self.pools.pairs else ()
        cands = clock("acquire", acquire, self.scorer, ctx, self.pools.acquirable(labelled))  # lines 6–9
        rows = clock("label", self.label, t, cands)  # line 10
        newest = [p for p in (r.preference() for r in rows) if p is not None]  # line 11
        points = _EpochPoints(self, t, len(xp) + len(newest), clock)
        seed = derive_seed(self.cfg.seed, t, "train")
        train = clock("train", self.finetuner.finetune, [*xp, *newest], seed, newest=newest, **points.hook())  # line 12
        n = len(xp) + len(newest)
        ev, held = clock("evaluate", lambda: (self.evaluate_at(t, n), self.heldout_at(t, n)))  # line 13
        points.book(clock.laps)
        return StepResult(
            t, rows, newest, train, ev, clock.laps, sampled_logprobs=ctx.sampled_logprobs(), heldout=held, epoch_evals=points.rows
        )

    def scoring_context(self, t: int) -> ScoringContext:
        m, cfg = self.models, self.cfg
        seed = derive_seed(cfg.seed, t, "acquire")
        return ScoringContext(
            m.policy, m.reference, m.tokenizer, cfg.acquisition, cfg.training.beta, seed, at_theta0=t == 1, pool=self.pools.pairs
        )  # θ_1 = θ0

    def label(self, t: int, cands: Sequence[Candidate]) -> list[AcquiredRow]:
        """The oracle's labels for X_M; each row is stored in the run folder as it is made (X_P's durable copy)."""
        o = self.cfg.oracle
        pairs = [(c.prompt.text, c.y0, c.y1) for c in cands]
        labels = label_pairs(
            self.oracle,
            self.ledger,
            pairs,
            derive_seed(self.cfg.seed, "order"),
            flip_prob=o.flip_prob,
            sample_bt=o.sample_bt,
            purpose="train",
            progress=self.progress,
        )
        rows = [AcquiredRow.of(t, i, c, lab) for i, (c, lab) in enumerate(zip(cands, labels, strict=True))]
        for r in rows:
            self.run_dir.add(r)
        return rows

    def evaluate_at(self, t: int, trained: int) -> EvalRow | None:
        """Win-rate at the waypoints (t·M labels acquired), None between them and without a judge of the generations."""
        acquired = t * self.cfg.acquisition.acquire_batch
        if self.evaluator is None or acquired not in set(self.cfg.waypoints()):
            return None
        return self.evaluator.evaluate(t, acquired, trained)

    def heldout_at(self, t: int, trained: int) -> HeldOutRow | None:
        """A pool-based run's held-out preference accuracy at the waypoints, stored in the run folder; None elsewhere."""
        acquired = t * self.cfg.acquisition.acquire_batch
        if self.heldout is None or acquired not in set(self.cfg.waypoints()):
            return None
        row = self.heldout.evaluate(t, acquired, trained)
        self.run_dir.add(row)
        return row

    def evaluation_oracle(self) -> Oracle | None:
        """The judge of the win-rate: ``evaluation.oracle`` (settings from ``oracle.*``), else the labelling oracle,
        unless that one judges only a pool's stored pairs (``oracle.kind: dataset``): then there is no win-rate."""
        kind = self.cfg.evaluation.oracle
        if kind is None or kind == self.oracle.kind:
            return None if self.oracle.kind in POOL_ONLY else self.oracle
        return make_oracle(replace(self.cfg.oracle, kind=kind), self.cfg.data, self.pools, self.run_dir.path)

    def epoch_points_at(self, t: int) -> bool:
        """Whether step t's waypoint is also evaluated after each earlier epoch (``evaluation.epoch_points``)."""
        acquired = t * self.cfg.acquisition.acquire_batch
        return acquired in set(self.cfg.evaluation.epoch_points) and acquired in set(self.cfg.waypoints())

    # ------------------------------------------------------------------ the run
    def run(
        self,
        on_step: Callable[[StepResult], Any] | None = None,
        callbacks: Sequence[Callback | Callable[[StepResult], Any]] = (),
    ) -> RunResult:
        """Resume, then ``step`` until the budget is spent; each finished step is committed to the run folder.

        ``callbacks`` (``aplkit.callbacks``) watch the run; the progress line (``progress=True``) and the
        trackers named in ``cfg.tracking`` come first, then ``callbacks``, then ``on_step``.
        """
        from aplkit.callbacks import CallbackList, ProgressBar, as_callbacks
        from aplkit.tracking import make_trackers

        cfg = self.cfg
        wall0 = time.perf_counter()
        done, xp = self.resume()
        result = RunResult(out=self.run_dir.path)
        progress = [ProgressBar()] if self.progress else []
        watchers = CallbackList([*progress, *make_trackers(cfg.tracking), *as_callbacks([*callbacks, *([on_step] if on_step else [])])])
        try:
            watchers.on_run_start(cfg, self.run_dir.path, done)
            if done < cfg.steps:
                self.run_dir.note_start()
                if self.evaluator is not None:
                    self.evaluator.baseline()
            for t in range(done + 1, cfg.steps + 1):
                res = self.step(t, xp)
                xp = [*xp, *res.newest]
                self.commit(res)
                res.oracle = self.ledger.stats()
                result.steps.append(res)
                watchers.on_step(res)
            result.eval_rows = self.run_dir.read(EvalRow)
            result.heldout_rows = self.run_dir.read(HeldOutRow)
            result.summary = self.write_summary(result.eval_rows, time.perf_counter() - wall0)
            watchers.on_run_end(result)
        except BaseException:
            with contextlib.suppress(Exception):  # the run's own error is the one to see
                watchers.close()
            raise
        watchers.close()
        return result

    def resume(self) -> tuple[int, list[Preference]]:
        """The last finished step and X_P up to it; rows of a half-done step are dropped, θ comes from the checkpoint."""
        done, state = self.run_dir.restore(self.pools.split, self.cfg.acquisition.acquire_batch)
        if state:
            self.finetuner.load_state(state["finetuner"])
        xp = [p for p in (r.preference() for r in self.run_dir.read(AcquiredRow)) if p is not None]
        return done, xp

    def commit(self, res: StepResult) -> None:
        """A step is complete once its training rows, checkpoint and step row are written."""
        t0 = time.perf_counter()
        for st in res.train:
            self.run_dir.add(TrainRow(**to_dict(st), step=res.step))
        self.run_dir.save_checkpoint({"step": res.step, "finetuner": self.finetuner.state()})
        laps = {**res.seconds, "checkpoint_s": round(time.perf_counter() - t0, 3)}
        acquired = res.step * self.cfg.acquisition.acquire_batch
        self.run_dir.add(
            StepRow(
                step=res.step,
                acquired=acquired,
                labels=len(res.newest),
                seconds=round(sum(laps.values()), 3),
                **laps,
                sampled_logprobs=res.sampled_logprobs,
            )
        )

    def write_summary(self, eval_rows: list[EvalRow], seconds: float) -> dict:
        prev = self.run_dir.read_json(SUMMARY, {}) or {}
        summary = {
            "complete": True,
            "steps": self.cfg.steps,
            "labels": len(self.run_dir.read(AcquiredRow)),
            "final_win_rate": eval_rows[-1].win_rate if eval_rows else None,
            "wall_seconds": round(float(prev.get("wall_seconds") or 0.0) + seconds, 2),
            "oracle": self.ledger.stats(),
        }
        if self.heldout is not None:
            rows = self.run_dir.read(HeldOutRow)
            summary["final_preference_accuracy"] = rows[-1].accuracy if rows else None
        self.run_dir.write_json(SUMMARY, summary)
        return summary

    def close(self) -> None:
        try:
            self.ledger.close()
            self.oracle.close()
            if self.judge is not None and self.judge is not self.oracle:
                self.judge.close()
        finally:
            self.run_dir.release()


def run_experiment(cfg: ExperimentConfig, out: str | Path | None = None, **kwargs) -> RunResult:
    """Build and run one experiment; closes the ledger and oracle even on failure."""
    progress = kwargs.pop("progress", True)
    on_step = kwargs.pop("on_step", None)
    callbacks = kwargs.pop("callbacks", ())
    exp = Experiment(cfg, out, progress=progress, **kwargs)
    try:
        return exp.run(on_step=on_step, callbacks=callbacks)
    finally:
        exp.close()


class _EpochPoints:
    """Step t's evaluations after each epoch before the last (``evaluation.epoch_points``; the last is the waypoint's
    own): ``hook()`` is ``finetune``'s keyword (none when the step has no epoch points, so an objective without the
    seam runs as before), ``rows`` what they wrote, ``book`` moves their seconds from training to evaluation.

    Each evaluation runs with the global random state forked (training after it draws as it would have), and says
    "evaluate" in phase.json while it runs."""

    def __init__(self, exp: Experiment, t: int, trained: int, clock: _Clock):
        self.exp, self.t, self.trained, self.clock = exp, t, trained, clock
        self.rows: list[EpochEvalRow] = []
        self.seconds = 0.0
        cfg = exp.cfg.training
        self.last = cfg.epochs if cfg.mode == "reset" else cfg.online_steps

    def hook(self) -> dict[str, Callable[[EpochStats], None]]:
        return {"on_epoch": self} if self.exp.epoch_points_at(self.t) else {}

    def __call__(self, st: EpochStats) -> None:
        import torch

        if st.epoch >= self.last:
            return
        exp = self.exp
        t0 = time.perf_counter()
        exp.run_dir.note_phase("evaluate", self.t, self.clock.since)
        with torch.random.fork_rng():
            acquired = self.t * exp.cfg.acquisition.acquire_batch
            self.rows.append(exp.evaluator.evaluate(self.t, acquired, self.trained, epoch=st.epoch))
        exp.run_dir.note_phase("train", self.t, self.clock.since)
        self.seconds += time.perf_counter() - t0

    def book(self, laps: dict[str, float]) -> None:
        if self.rows:
            laps["train_s"] = round(laps["train_s"] - self.seconds, 3)
            laps["evaluate_s"] = round(laps["evaluate_s"] + self.seconds, 3)


class _Clock:
    """Seconds spent in each phase of a step, for steps.jsonl (where did the time go?); ``on_phase(name, step start)``
    hears each phase begin."""

    def __init__(self, on_phase: Callable[[str, float], Any] | None = None) -> None:
        self.laps: dict[str, float] = {}
        self.on_phase = on_phase
        self.since = round(time.time(), 3)  # when the step began (epoch seconds)

    def __call__(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        follow_core_share()  # between phases a run may take the cores of a parallel run that ended
        if self.on_phase:
            self.on_phase(name, self.since)
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.laps[f"{name}_s"] = round(time.perf_counter() - t0, 3)
        return out


__all__ = ["Experiment", "RunResult", "StepResult", "derive_seed", "run_experiment"]
