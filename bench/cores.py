"""Both cores: two single-threaded runs side by side, or one two-threaded run after the other?

One unit of work is the two costly pieces of an APL step on the embedded SmolLM2-135M and real IMDB
prompts: sampling 64 prompts × 2 completions (≤ 24 new tokens, T 0.7, 128 rows per call) and one DPO
epoch (full fine-tuning, batch 8) on 16 of those pairs. Two units are done

  side by side   by two processes at OMP_NUM_THREADS=1 started together (what two shards do), and
  one by one     by one process at OMP_NUM_THREADS=2 doing them in turn (one run using both cores),

and the wall seconds of the work (model loading excluded: each child times its own work and the
parent takes first start to last end) are compared. Run on an idle machine: ``python -m bench cores``
(JSON to bench/results/cores.json; ``--repeats`` alternates the two layouts that many times).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "cores.json"
PROMPTS, PAIRS, MAX_NEW, ROWS = 64, 16, 24, 128


def unit(m, prompts: list[str], seed: int) -> None:
    """Sample the prompts' pairs with the policy, then one DPO epoch on the first ``PAIRS`` of them."""
    from aplkit.config import TrainingConfig
    from aplkit.generation import sample
    from aplkit.objectives.dpo import DPOFinetuner
    from aplkit.records import Preference

    out = sample(m.policy, m.tokenizer, prompts, n=2, temperature=0.7, max_new_tokens=MAX_NEW, batch_size=ROWS, seed=seed)
    prefs = [Preference(x, a.text, b.text, chosen_ids=a.ids, rejected_ids=b.ids) for x, (a, b) in zip(prompts, out, strict=True)]
    m.reset_policy()
    cfg = TrainingConfig(epochs=1, batch_size=8, beta=0.2, lr=3e-5)
    DPOFinetuner(m.policy, m.reference, m.tokenizer, cfg).finetune(prefs[:PAIRS], seed=seed)


def child(units: int) -> int:
    """One process: load, then ``units`` units of work; prints its work's start and end (epoch seconds) and threads."""
    import torch

    from aplkit.config import DataConfig
    from aplkit.data import load_pools
    from aplkit.models import load_models

    m = load_models("smollm2-135m", device="cpu", dtype="float32")
    prompts = [p.text for p in load_pools(DataConfig(), m.tokenizer).train[:PROMPTS]]
    start = time.time()
    for k in range(units):
        unit(m, prompts, seed=k)
    print(json.dumps({"start": start, "end": time.time(), "threads": torch.get_num_threads()}), flush=True)
    return 0


def _spawn(threads: int, units: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cores", "--child", str(units)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )


def _work_seconds(procs: list[subprocess.Popen]) -> float:
    """First start to last end of the children's own work (loading excluded)."""
    times = []
    for p in procs:
        out, _ = p.communicate(timeout=3600)
        if p.returncode:
            raise SystemExit(f"bench cores: a child failed (exit {p.returncode})")
        times.append(json.loads(out.strip().splitlines()[-1]))
    return max(t["end"] for t in times) - min(t["start"] for t in times)


def layouts(repeats: int) -> dict[str, list[float]]:
    """Wall seconds of two units in each layout, alternated ``repeats`` times."""
    runs: dict[str, list[float]] = {"side by side (2 × 1 thread)": [], "one by one (1 × 2 threads)": []}
    for _ in range(repeats):
        runs["side by side (2 × 1 thread)"].append(_work_seconds([_spawn(1, 1), _spawn(1, 1)]))
        runs["one by one (1 × 2 threads)"].append(_work_seconds([_spawn(2, 2)]))
    return runs


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child(int(argv[1]))
    ap = argparse.ArgumentParser(prog="bench cores", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    runs = layouts(args.repeats)
    med = {k: statistics.median(v) for k, v in runs.items()}
    side, one = med.values()
    from bench.provenance import machine

    doc = {"runs": runs, "median_seconds": med, "one_by_one_over_side_by_side": one / side, "loadavg_start": load, "machine": machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2))
    for k, v in med.items():
        print(f"cores  {k:<30} {v:7.1f} s for two units")
    print(f"cores  side by side is {one / side:.2f}x as fast as one by one (load at start {load}); → {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
