"""The physical-limit table: each phase's FLOPs at the machine's matmul peak beside its measured seconds.

``python -m bench limits RECORD_OR_RUN ...`` reads compact study records (``bench/results/labels/...json``)
or run folders, counts each run's FLOPs per phase with the model of ``aplkit.budget`` (the one ``--dry-run``
prints), measures a one-thread matmul probe in fp32 and bf16, and prints per phase: FLOPs, the seconds they
would take at the probe's rate (the physical limit on one core), the measured seconds (mean over the runs,
from each step's ``acquire_s``/``train_s``/``evaluate_s``) and their ratio — the headroom, and so where the
time goes that is not matrix multiplication.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PHASES = {"acquire": "acquire_s", "train": "train_s", "evaluate": "evaluate_s"}


def load(path: Path) -> tuple[dict, list[dict]]:
    """(config tree, step rows) of a compact record or a run folder."""
    if path.is_dir():
        import yaml

        from aplkit.runfolder import read_jsonl

        return yaml.safe_load((path / "config.yaml").read_text()), list(read_jsonl(path / "steps.jsonl"))
    rec = json.loads(path.read_text())
    return rec["head"]["config"], rec["steps"]


def table(paths: list[Path], rates: dict[str, float]) -> list[dict]:
    from aplkit.budget import run_bill
    from aplkit.config import config_from_tree

    rows: dict[tuple[str, str, str], dict] = {}
    for p in paths:
        tree, steps = load(p)
        cfg = config_from_tree(tree)
        bill = run_bill(cfg)
        dtype = "bfloat16" if cfg.model.dtype == "bfloat16" else "float32"
        for phase, key in PHASES.items():
            key_ = (cfg.strategy, phase, dtype)
            r = rows.setdefault(key_, {"strategy": cfg.strategy, "phase": phase, "dtype": dtype, "runs": 0, "flops": 0.0, "seconds": 0.0})
            r["runs"] += 1
            r["flops"] += bill.phases[phase].flops
            r["seconds"] += sum(float(s.get(key) or 0.0) for s in steps)
    out = []
    for r in rows.values():
        n = r["runs"]
        peak = r["flops"] / n / rates[r["dtype"]]
        out.append({**r, "flops": r["flops"] / n, "seconds": r["seconds"] / n, "at_peak": peak, "ratio": (r["seconds"] / n) / peak})
    return out


def markdown(rows: list[dict], rates: dict[str, float]) -> str:
    lines = [
        f"One-thread matmul probe: fp32 {rates['float32'] / 1e9:.0f} GFLOP/s, bf16 {rates['bfloat16'] / 1e9:.0f} GFLOP/s.",
        "",
        "| strategy | phase | dtype | runs | TFLOP per run | s at the probe's peak | measured s | measured ÷ peak |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['strategy']} | {r['phase']} | {r['dtype']} | {r['runs']} | {r['flops'] / 1e12:.1f} | {r['at_peak']:.0f} | {r['seconds']:.0f} | {r['ratio']:.2f}× |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench limits", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", help="compact records (*.json) or run folders")
    p.add_argument("--seconds", type=float, default=2.0, help="probe duration per dtype")
    args = p.parse_args(argv)
    import torch

    from aplkit.budget import probe_flops

    torch.set_num_threads(1)
    rates = {d: probe_flops(d, args.seconds) for d in ("float32", "bfloat16")}
    print(markdown(table([Path(x) for x in args.paths], rates), rates))
    return 0
