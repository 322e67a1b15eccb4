"""The pilot written down before the study's preset is fixed (its rules and result: docs/results.md, "The pilot").

Certainty against random on the CPU preset at S/M = 4, 16, 32 (M = 16, B = 64), each run evaluated
once on 512 test prompts at the final budget; every metric is then recomputed on the first 64, 256
and 512 prompts from the records' per-prompt verdicts (``bench.spread``). Random draws only
M prompts, so its runs do not depend on S and are shared by every S/M (common random numbers).
The pilot's seeds (1000…) are not the study's (0…8): the preset is chosen on other seeds than the
ones that then measure it.

    python -m bench pilot                          # all cells, one process
    python -m bench pilot --shard 0/2 & python -m bench pilot --shard 1/2   # both cores, one thread each
    python -m bench pilot --report-only            # the table from bench/results/pilot/ alone

Each finished run's compact record goes to ``bench/results/pilot/<cell>/seed<k>.json`` (commit it);
a recorded run is not run again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aplkit.executors import Ended
    from aplkit.sweep import Run

M = 16
RATIOS = (4, 16, 32)  # S/M
TEST_SIZES = (64, 256, 512)
WAYPOINTS = 4  # the study evaluates at 16, 32, 48, 64 labels
SEEDS = (1000, 1001, 1002)
#: what the pilot changes on the CPU preset: compute batching (not maths), the largest test set, one waypoint
COMMON = (
    "acquisition.batch_size=128",
    "evaluation.batch_size=128",
    f"evaluation.test_prompts={max(TEST_SIZES)}",
    "evaluation.waypoints=[64]",
    "name=pilot",
)


#: LoRA for the DPO step, paired with the full fine-tuning random runs of the same seeds (docs/results.md, "The pilot"):
#: r and α the config's defaults, lr 10× full fine-tuning's (fixed before it ran, not tuned)
LORA = ("training.lora.enabled=true", "training.lr=3.0e-4")


def cells(seeds=SEEDS, lora: bool = False) -> list[tuple[str, str, int, list[str]]]:
    """(cell name, strategy, seed, overrides) in seed-major order, so a partial pilot is balanced."""
    out = []
    for k in seeds:
        if lora:
            out.append(("random-lora", "random", k, [*COMMON, f"acquisition.prompt_batch={M * RATIOS[0]}", *LORA]))
            continue
        out.append(("random", "random", k, [*COMMON, f"acquisition.prompt_batch={M * RATIOS[0]}"]))
        for r in RATIOS:
            out.append((f"certainty-S{M * r}", "certainty", k, [*COMMON, f"acquisition.prompt_batch={M * r}"]))
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench pilot", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="imdb-cpu")
    p.add_argument("--shard", default="0/1", help="I/N: run every N-th cell starting at I (two processes, both cores)")
    p.add_argument("--seeds", type=int, default=len(SEEDS))
    p.add_argument("--out", default="runs/pilot", help="run folders (not committed)")
    p.add_argument("--records", default="bench/results/pilot")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--lora", action="store_true", help="run the LoRA cells (random with LoRA DPO) instead of the S/M cells")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from aplkit.checks import load_config
    from aplkit.sweep import Run
    from bench.labels import recorded, shard_labels, study_grid

    args = parse(argv or [])
    records = Path(args.records)
    plan = cells(SEEDS[: args.seeds], lora=args.lora)
    failed = False
    if not args.report_only:
        runs = [Run.of(f"{cell}/seed{k}", load_config(args.config, sets, strategy=s, seed=k), args.out) for cell, s, k, sets in plan]
        mine = shard_labels(runs, args.shard)
        ran = study_grid(
            runs, mine, Path(args.out), lambda r: records / f"{r.label}.json", recorded, _keep, name=lambda r: r.label.split("/")[0]
        )
        failed = bool(ran["failed"])
    table = report(records)
    print(table)
    return 1 if failed else 0


def _keep(run: Run, ended: Ended, rec: Path) -> str:
    """A finished run's compact record at ``rec``; the line saying so, with its final win-rate and soft win-rate."""
    from bench.archive import write_record

    write_record(run.out, rec)
    last = ended.result.eval_rows[-1]
    return f"win {last.win_rate:.3f} soft {last.soft_win_rate:.3f} ({ended.seconds:.0f}s) → {rec} (commit it)"


def load_pairs(records: Path):
    """Every recorded run's per-prompt verdicts, with its cell as ``group`` (random's is "*": shared by all S/M)."""
    import pandas as pd

    from bench.archive import read_record

    frames = []
    for path in sorted(records.glob("*/seed*.json")):
        rec = read_record(path)
        if not rec["summary"].get("complete") or not rec["eval_pairs"] or _lora(rec):
            continue
        df = pd.DataFrame(rec["eval_pairs"])
        cfg = rec["config"]
        df["strategy"] = cfg["strategy"]
        df["seed"] = int(cfg["seed"])
        df["group"] = "*" if cfg["strategy"] == "random" else f"S/M={int(cfg['acquisition']['prompt_batch']) // M}"
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def report(records: Path) -> str:
    from bench.spread import spread, spread_markdown, study_cost, study_cost_markdown

    pairs = load_pairs(records)
    if pairs.empty:
        return "no pilot runs recorded yet"
    table = spread(pairs, TEST_SIZES)
    cost = study_cost(table, run_seconds(records), max(TEST_SIZES), WAYPOINTS)
    md = "\n\n".join(
        [
            spread_markdown(table),
            f"Study cost to a ±0.03 interval (rule 1'): seeds needed × one seed's certainty and random runs, each run at "
            f"{WAYPOINTS} waypoints (evaluation seconds scaled from the measured 512-prompt one):",
            study_cost_markdown(cost),
            lora_markdown(records),
        ]
    )
    (records / "pilot.md").write_text(md + "\n")
    (records / "pilot.json").write_text(json.dumps(json.loads(table.to_json(orient="records")), indent=1) + "\n")
    return md


def run_seconds(records: Path) -> dict[str, dict[str, float]]:
    """Mean training, acquisition and evaluation seconds of each cell's complete runs (full fine-tuning)."""
    from bench.archive import read_record

    acc: dict[str, list[dict[str, float]]] = {}
    for path in sorted(records.glob("*/seed*.json")):
        rec = read_record(path)
        if not rec["summary"].get("complete") or _lora(rec):
            continue
        phase = {k: _seconds(rec, k) for k in ("train", "acquire", "evaluate")}
        acc.setdefault(path.parent.name, []).append(phase)
    return {cell: {k: sum(p[k] for p in ps) / len(ps) for k in ps[0]} for cell, ps in acc.items()}


def _seconds(rec: dict, phase: str) -> float:
    """A record's seconds in one phase (train, acquire, evaluate), summed over its steps."""
    return sum(r.get(f"{phase}_s") or 0.0 for r in rec["steps"])


def _lora(rec: dict) -> bool:
    return bool(rec["config"].get("training", {}).get("lora", {}).get("enabled"))


def lora_rows(records: Path) -> list[dict]:
    """Per seed with both: LoRA's and full fine-tuning's win-rate at the final budget and training seconds (random runs)."""
    from bench.archive import read_record

    runs: dict[tuple[bool, int], dict] = {}
    for path in sorted(records.glob("random*/seed*.json")):
        rec = read_record(path)
        if rec["summary"].get("complete") and rec["eval"]:
            runs[(_lora(rec), int(rec["config"]["seed"]))] = rec
    out = []
    for (lora, k), rec in sorted(runs.items()):
        full = runs.get((False, k))
        if not lora or full is None:
            continue
        out.append(
            {
                "seed": k,
                "win_lora": rec["eval"][-1]["win_rate"],
                "win_full": full["eval"][-1]["win_rate"],
                "train_s_lora": _seconds(rec, "train"),
                "train_s_full": _seconds(full, "train"),
            }
        )
    return out


def lora_markdown(records: Path) -> str:
    """LoRA − full fine-tuning, paired by seed: win-rate difference with a t interval, training-time ratio."""
    import numpy as np

    from aplkit.results.compare import t_interval, verdict

    rows = lora_rows(records)
    if not rows:
        return "LoRA: no paired runs recorded yet (`python -m bench pilot --lora`)."
    d = np.array([r["win_lora"] - r["win_full"] for r in rows])
    lo, hi = t_interval(d) if len(d) > 1 else (float("nan"), float("nan"))
    speed = sum(r["train_s_full"] for r in rows) / max(1e-9, sum(r["train_s_lora"] for r in rows))
    lines = [
        "LoRA for the DPO step against full fine-tuning (random, paired by seed, win-rate at the final budget, 512 test prompts):",
        "",
        "| Seed | Win full | Win LoRA | Δ | Train s full | Train s LoRA |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {r['seed']} | {r['win_full']:.3f} | {r['win_lora']:.3f} | {r['win_lora'] - r['win_full']:+.3f} | "
            f"{r['train_s_full']:.0f} | {r['train_s_lora']:.0f} |"
            for r in rows
        ),
        "",
        f"Mean Δ {d.mean():+.3f}, 95 % t interval [{lo:+.3f}, {hi:+.3f}] ({verdict(lo, hi) if len(d) > 1 else 'one seed'}); "
        f"training {speed:.2f}× faster with LoRA.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
