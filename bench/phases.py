"""Where one step's seconds go: each phase of a real step of a preset, split into its parts by cProfile.

    OMP_NUM_THREADS=1 python -m bench phases --strategy random --dtype float32 &
    OMP_NUM_THREADS=1 python -m bench phases --strategy random --dtype bfloat16

Runs steps 1..``--step`` of the preset (budget ``step``·M, one waypoint at the last step), profiles only the last
step (from step 2 on, certainty pays its θ0 pass, which it skips at θ0) and prints, per phase, its seconds and the
inclusive seconds of the parts named in ``PARTS`` with their share of the phase, and the DPO step's model FLOP/s
(6·N per real token trained each epoch, 2·N per token of θ0's cached log-probs; padding not counted) as a share of
a one-thread matmul probe in the run's compute dtype. Evaluations after earlier epochs (``evaluation.epoch_points``)
count as evaluate, as the step books them, their parts added to evaluate's. The profiler's own overhead
lands on Python calls (≈ a few % of a decode-bound step here), so read the shares, not the absolute seconds.
Writes ``<out>/<config>-<strategy>-<dtype>.json`` with the machine and commit. Start two processes side by side
(one thread each) on cores nothing else uses.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path

from aplkit.budget import model_shape, probe_flops
from bench.provenance import machine

#: per phase, (label, module file suffix, function name): inclusive seconds of each, read from the phase's profile
PARTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "acquire": (
        ("generation (decode)", "aplkit/generation.py", "_generate"),
        ("θ0 / policy scoring pass", "aplkit/generation.py", "ids_logprobs"),
    ),
    "label": (("oracle", "aplkit/oracles/labelling.py", "label_pairs"),),
    "train": (
        ("reference log-probs", "aplkit/generation.py", "ids_logprobs"),
        ("backward", "torch/_tensor.py", "backward"),
        ("optimiser step", "torch/optim/optimizer.py", "wrapper"),
    ),
    "evaluate": (
        ("generation (decode)", "aplkit/generation.py", "_generate"),
        ("θ0 pass for the KL", "aplkit/generation.py", "kl_along_sampled"),
        ("policy + θ0 passes for the KL", "aplkit/generation.py", "completion_kl"),  # where the sampler keeps no distributions (bf16)
        ("judge", "aplkit/oracles/labelling.py", "label_pairs"),
        ("reward gap", "aplkit/evaluation.py", "reward_gaps"),
        ("LM loss", "aplkit/generation.py", "mean_token_nll"),
        ("KL at T = 1", "aplkit/evaluation.py", "kl_t1"),
    ),
}


def part_seconds(stats: pstats.Stats, suffix: str, name: str) -> float:
    """Inclusive seconds of the functions called ``name`` in a file ending in ``suffix`` (0 when not called)."""
    return sum(v[3] for (file, _, fn), v in stats.stats.items() if fn == name and file.replace("\\", "/").endswith(suffix))  # type: ignore[attr-defined]


def profile_step(config: str, strategy: str, dtype: str, step: int, sets: list[str]) -> dict:
    """Run steps 1..step of ``config`` in a temporary folder; the last step's phases with their parts."""
    from aplkit import loop
    from aplkit.checks import load_config
    from aplkit.config import read_config

    mine = [f"strategy={strategy}", f"model.dtype={dtype}", *sets]
    m = read_config(config, mine).acquisition.acquire_batch  # M, read before the budget that depends on it is set
    cfg = load_config(config, [*mine, f"acquisition.budget={step * m}", f"evaluation.waypoints=[{step * m}]"])
    found: dict[str, dict] = {}
    watch: dict = {"on": False, "prof": None, "epochs": 0}
    plain, plain_epoch = loop._Clock.__call__, loop._EpochPoints.__call__
    after_epochs = cProfile.Profile()  # the evaluations after earlier epochs (evaluation.epoch_points): evaluate's

    def clocked(self, name, fn, *args, **kwargs):
        if not watch["on"]:
            return plain(self, name, fn, *args, **kwargs)
        prof = cProfile.Profile()

        def inside(*a, **k):
            watch["prof"] = prof
            prof.enable()
            try:
                return fn(*a, **k)
            finally:
                prof.disable()
                watch["prof"] = None

        out = plain(self, name, inside, *args, **kwargs)
        stats = pstats.Stats(prof)
        seconds = self.laps[f"{name}_s"]
        parts = {label: round(part_seconds(stats, suffix, fn_name), 3) for label, suffix, fn_name in PARTS.get(name, ())}
        found[name] = {"seconds": seconds, "parts": parts}
        return out

    def epoch_point(self, st):
        train = watch["prof"]
        if not watch["on"] or train is None:
            return plain_epoch(self, st)
        before = len(self.rows)
        train.disable()
        after_epochs.enable()
        try:
            return plain_epoch(self, st)
        finally:
            after_epochs.disable()
            watch["epochs"] += len(self.rows) - before
            train.enable()

    loop._Clock.__call__ = clocked
    loop._EpochPoints.__call__ = epoch_point
    try:
        with tempfile.TemporaryDirectory() as tmp:
            exp = loop.Experiment(cfg, out=Path(tmp) / "run")
            try:
                xp: list = []
                for t in range(1, step + 1):
                    watch["on"] = t == step
                    res = exp.step(t, xp)
                    xp = [*xp, *res.newest]
                tokens = train_tokens(exp.models.tokenizer, xp, res.newest)
            finally:
                exp.close()
    finally:
        loop._Clock.__call__, loop._EpochPoints.__call__ = plain, plain_epoch
    for name in found:  # the step's own booking: evaluations after earlier epochs count as evaluate, not train
        found[name]["seconds"] = res.seconds.get(f"{name}_s", found[name]["seconds"])
    if watch["epochs"] and "evaluate" in found:
        stats = pstats.Stats(after_epochs)
        for label, suffix, fn_name in PARTS["evaluate"]:
            found["evaluate"]["parts"][label] = round(found["evaluate"]["parts"][label] + part_seconds(stats, suffix, fn_name), 3)
        found["evaluate"]["after_epochs"] = watch["epochs"]
    out = {"config": cfg.name, "strategy": strategy, "dtype": dtype, "step": step, "pairs_trained": len(xp), "phases": found}
    shape = model_shape(cfg.model.spec)
    if shape and "train" in found:  # the DPO step's model FLOPs from its real tokens (bench compute's MFU rule)
        n = shape[0]
        flops = 6 * n * cfg.training.epochs * tokens["all"] + 2 * n * tokens["new"]
        out["train_model_flops"] = flops
        out["train_flop_per_s"] = flops / found["train"]["seconds"]
    return out


def train_tokens(tokenizer, prefs: list, newest: list) -> dict[str, int]:
    """Real tokens (no padding) of both sequences of every pair trained on (``all``) and of the step's new pairs,
    whose θ0 log-probs the step computes (``new``)."""

    def count(ps: list) -> int:
        total = 0
        for p in ps:
            x = len(tokenizer(p.prompt, add_special_tokens=True)["input_ids"])
            for ids, text in ((p.chosen_ids, p.chosen), (p.rejected_ids, p.rejected)):
                total += x + len(ids if ids is not None else tokenizer(text, add_special_tokens=False)["input_ids"])
        return total

    return {"all": count(prefs), "new": count(newest)}


def lines(res: dict) -> list[str]:
    out = [f"{res['config']} · {res['strategy']} · {res['dtype']} · step {res['step']} ({res['pairs_trained']} pairs trained)"]
    for phase, r in res["phases"].items():
        after = f"  (with {r['after_epochs']} evaluations after earlier epochs)" if r.get("after_epochs") else ""
        out.append(f"  {phase:<9} {r['seconds']:8.1f} s{after}")
        for label, sec in r["parts"].items():
            share = sec / r["seconds"] if r["seconds"] else 0.0
            out.append(f"    {label:<26} {sec:8.1f} s  {share:6.1%}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench phases", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="imdb-cpu")
    p.add_argument("--strategy", default="random")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--step", type=int, default=2, help="the step profiled (steps before it run unprofiled)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="bench/results/phases")
    args = p.parse_args(argv)
    if args.step < 1:
        raise SystemExit("--step: 1 or more")
    import os

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))
    t0 = time.perf_counter()
    res = profile_step(args.config, args.strategy, args.dtype, args.step, args.set)
    res["probe_flop_per_s"] = probe_flops(args.dtype, 2.0)  # this process's core, in the run's compute dtype
    if "train_flop_per_s" in res:
        res["train_mfu"] = res["train_flop_per_s"] / res["probe_flop_per_s"]
    res["machine"] = {**machine(), "torch_threads": torch.get_num_threads(), "wall_seconds": round(time.perf_counter() - t0, 1)}
    res["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print("\n".join(lines(res)))
    if "train_mfu" in res:
        print(
            f"  DPO step: {res['train_flop_per_s'] / 1e9:.0f} GFLOP/s of model FLOPs = {res['train_mfu']:.0%} of a one-thread {args.dtype} matmul probe ({res['probe_flop_per_s'] / 1e9:.0f} GFLOP/s)"
        )
    out = Path(args.out) / f"{res['config']}-{args.strategy}-{args.dtype}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")
    return 0
