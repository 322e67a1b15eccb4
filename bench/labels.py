"""Label efficiency: does active acquisition reach a win-rate with fewer oracle labels than random?

Runs every strategy over K seeds on one config (default: the CPU preset), each as a
normal resumable run folder, so the benchmark can be stopped and continued. Then prints
a Table-2-style table, each strategy's gain over random with a paired test, and the
data-efficiency ratio (labels random needs to match each strategy at the budget).

    python -m bench labels                       # defaults: imdb-cpu, 4 strategies x 3 seeds
    python -m bench labels --seeds 9 --config imdb --out runs/bench-labels-gpu   # the paper's protocol on a GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

STRATEGIES = ("random", "certainty", "entropy", "entropy+certainty")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench labels", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="imdb-cpu")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--seeds", type=int, default=3, help="K seeds (0..K-1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="runs/bench-labels")
    p.add_argument("--results", default="bench/results/labels.json")
    p.add_argument("--report-only", action="store_true", help="only summarise the run folders already there")
    return p.parse_args(argv)


def plan(strategies: list[str], seeds: int) -> list[tuple[str, int]]:
    """Seed-major order, so a partial benchmark is balanced across strategies."""
    return [(s, k) for k in range(seeds) for s in strategies]


def main(argv: list[str] | None = None) -> int:
    from aplkit.config import load_config
    from aplkit.loop import run_experiment
    from aplkit.runfolder import RunFolder

    args = parse(argv or [])
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    configs = {(s, k): load_config(args.config, args.set, strategy=s, seed=k) for s, k in plan(strategies, args.seeds)}
    out = Path(args.out)
    t0 = time.perf_counter()
    if not args.report_only:
        for i, ((s, k), cfg) in enumerate(configs.items(), 1):
            run = out / s.replace("+", "_") / f"seed{k}"
            if RunFolder(run).complete:
                print(f"[{i}/{len(configs)}] {s} seed {k}: complete, skipped", flush=True)
                continue
            t = time.perf_counter()
            res = run_experiment(cfg, run, progress=False)
            curve = " ".join(f"{r.acquired}:{r.win_rate:.3f}" for r in res.eval_rows)
            print(f"[{i}/{len(configs)}] {s} seed {k}: {curve}  ({time.perf_counter() - t:.0f}s)", flush=True)
    summary = summarise(out, configs)
    summary["wall_seconds_this_invocation"] = round(time.perf_counter() - t0, 1)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(summary, indent=2, default=str))
    print(summary["markdown"])
    print(f"results → {args.results}")
    return 0


def summarise(out: Path, configs: dict) -> dict:
    from aplkit import results as R
    from aplkit.runfolder import RunFolder

    df = R.load_runs(out)
    if not df.empty:  # only the planned strategies and seeds: --seeds 3 reports 3 even when more were run
        df = df[[(s, k) in configs for s, k in zip(df["strategy"], df["seed"], strict=True)]]
    if df.empty:
        return {"markdown": "no finished waypoints yet", "runs": 0}
    table = R.table2(df)
    budget = int(df["acquired"].max())
    sig = R.significance_vs_random(df)
    eff = R.data_efficiency(df, budget)
    seconds = [(RunFolder(out / r).read_json("summary.json") or {}).get("wall_seconds") for r in sorted(df["run"].unique())]
    cfg = next(iter(configs.values()))
    md = "\n\n".join(
        [
            f"Win-rate against θ0 (mean ± SE over seeds), {cfg.name}, M={cfg.acquisition.acquire_batch}, S={cfg.acquisition.prompt_batch}, "
            f"{len(df['seed'].unique())} seeds, {cfg.evaluation.test_prompts} test prompts:",
            R.to_markdown(table),
            "Gain over random (paired by seed):",
            R.significance_markdown(sig),
            f"Labels random needs to match each strategy at {budget} labels:",
            R.efficiency_markdown(eff),
        ]
    )
    return {
        "config": cfg.to_dict(),
        "runs": int(df.groupby(["strategy", "seed"]).ngroups),
        "run_seconds": seconds,
        "table2": json.loads(table.to_json(orient="split", default_handler=str)),
        "significance": json.loads(sig.to_json(orient="records")),
        "efficiency": json.loads(eff.to_json(orient="records")),
        "markdown": md,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "commit": _commit()},
    }


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
