"""Peak resident memory (ru_maxrss), one subprocess per measurement so the peaks do not mix.

  load      load_models("smollm2-135m"): policy + frozen reference (the floor of every run)
  dpo-step  the above, --pairs sampled pairs (16; `bench compute` passes its DPO size), then one DPO epoch (batch 8, reference log-probs included)
  run       ``aplkit run imdb-cpu --set acquisition.budget=16 --set evaluation.test_prompts=16 --set evaluation.waypoints=[16]``: one whole
            acquisition step of Algorithm 1 (generate, score, label, DPO, evaluate)

Each child prints its own peak (VmHWM, which starts afresh at exec) as its last line; ru_maxrss
is not used on Linux because a child forked from this big process inherits its RSS there.
Run: ``python -m bench memory [--quick]`` (also part of ``python -m bench compute``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
# the CLI in a fresh interpreter that prints its own peak RSS as the last line
CLI = "import sys; from aplkit.cli import main; from bench.memory import report_peak; rc = main(sys.argv[1:]); report_peak(); sys.exit(rc)"


def peak_rss_mb() -> float:
    """This process image's peak RSS so far.

    Linux: VmHWM of /proc/self/status, which starts afresh at exec. Not ru_maxrss: a child forked from a
    big parent (this benchmark holds several model copies) inherits the parent's RSS in its ru_maxrss.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / MB if sys.platform == "darwin" else r / 1024


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MB


def report_peak() -> None:
    print(json.dumps({"peak_mb": peak_rss_mb()}), flush=True)


def run_child(cmd: list[str], timeout: float = 900) -> dict[str, Any]:
    """Run cmd to completion; its own peak RSS (MiB), wall seconds, core seconds (user + system CPU), exit code and the last output line."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so tell Popen
        seconds = time.perf_counter() - t0
        log.seek(0)
        tail = log.read().decode("utf-8", "replace").strip().splitlines()
    last = tail[-1] if tail else ""
    try:
        peak = json.loads(last)["peak_mb"]  # the child's own VmHWM (see peak_rss_mb)
    except (json.JSONDecodeError, KeyError, TypeError):
        peak = usage.ru_maxrss / MB if sys.platform == "darwin" else usage.ru_maxrss / 1024  # upper bound (inherits the parent's)
    core = usage.ru_utime + usage.ru_stime
    return {"peak_rss_mb": peak, "seconds": seconds, "core_seconds": core, "rc": proc.returncode, "last_line": last}


def worker(what: str, pairs: int) -> int:
    """Child side: print one JSON line with the peak RSS before and after the measured stage."""
    import torch

    from aplkit.models import load_models

    out: dict[str, Any] = {"start_mb": peak_rss_mb()}
    m = load_models("smollm2-135m", device="cpu", dtype="float32")
    out["after_load_mb"] = peak_rss_mb()
    out["rss_after_load_mb"] = current_rss_mb()  # what stays resident; the peak above includes loading transients
    if what == "dpo-step":
        from aplkit.config import DataConfig, TrainingConfig
        from aplkit.data import load_pools
        from aplkit.generation import sample_completions
        from aplkit.objectives.dpo import DPOFinetuner
        from aplkit.records import Preference

        xs = [p.text for p in load_pools(DataConfig(), m.tokenizer).train[:pairs]]
        ys = sample_completions(m.reference, m.tokenizer, xs, n=2, seed=0)
        prefs = [Preference(x, y[0], y[1]) for x, y in zip(xs, ys, strict=True)]
        out["before_step_mb"] = peak_rss_mb()
        cfg = TrainingConfig(epochs=1, batch_size=8, beta=0.2, lr=3e-5)
        ft = DPOFinetuner(m.policy, m.reference, m.tokenizer, cfg)
        t0 = time.perf_counter()
        ft.finetune(prefs, seed=0)
        out["step_seconds"] = time.perf_counter() - t0
        out["after_step_mb"] = peak_rss_mb()
    out["torch_threads"] = torch.get_num_threads()
    out["peak_mb"] = peak_rss_mb()
    print(json.dumps(out))
    return 0


def measure(quick: bool = False, pairs: int = 16) -> tuple[dict, list[str]]:
    """The three measurements (``quick``: the first two), each in a fresh interpreter; returns results and printable lines."""
    py = sys.executable
    res: dict[str, Any] = {}
    lines = []
    for what in ("load", "dpo-step"):
        r = run_child([py, "-m", "bench.memory", "--worker", what, "--pairs", str(pairs)])
        try:
            r["worker"] = json.loads(r["last_line"])
        except json.JSONDecodeError:
            r["worker"] = None
        res[what] = r
    load, step = res["load"], res["dpo-step"]
    resident = (load.get("worker") or {}).get("rss_after_load_mb", float("nan"))
    lines.append(
        f"memory      load_models (policy+reference): peak {load['peak_rss_mb']:7.0f} MiB, resident after loading {resident:.0f} MiB"
    )
    w = step.get("worker") or {}
    if w:
        lines.append(
            f"memory      DPO step alone ({pairs} pairs, bs 8): peak {step['peak_rss_mb']:7.0f} MiB "
            f"(+{w['after_step_mb'] - w['before_step_mb']:.0f} MiB over the {w['before_step_mb']:.0f} MiB before the step; {w['step_seconds']:.0f}s)"
        )
    else:
        lines.append(f"memory      DPO step failed (rc {step['rc']}): {step['last_line']}")
    if quick:
        lines.append("memory      CPU-preset run skipped with --quick (run `python -m bench memory`)")
        return res, lines
    with tempfile.TemporaryDirectory(prefix="bench_run_") as d:
        sets = ["acquisition.budget=16", "evaluation.test_prompts=16", "evaluation.waypoints=[16]"]
        cmd = [py, "-c", CLI, "run", "imdb-cpu", "--out", str(Path(d) / "run"), "--quiet"]
        for s in sets:
            cmd += ["--set", s]
        r = run_child(cmd)
        r["command"] = "aplkit run imdb-cpu " + " ".join(f"--set {s}" for s in sets) + " --out DIR --quiet"
        res["run"] = r
    if r["rc"] == 0:
        lines.append(f"memory      {r['command']}: peak {r['peak_rss_mb']:7.0f} MiB ({r['seconds']:.0f}s)")
    else:
        lines.append(f"memory      CPU-preset run failed (rc {r['rc']}): {r['last_line']}")
    return res, lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench memory", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--worker", choices=("load", "dpo-step"), help=argparse.SUPPRESS)
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.pairs)
    res, lines = measure(args.quick, args.pairs)
    for x in lines:
        print(x)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
