"""What each PHF objective's extra work costs: tokens/s against MLE on the same batches, and AWR's value-head memory.

  throughput  one optimiser step per objective on the same documents (random ids, random segment
              rewards, the same for all), interleaved A B C…, reversed every round; median tokens/s
              over the repeats and the ratio objective / MLE (< 1: slower than MLE). Tokens are the
              review tokens of the batch, so filtering's smaller trained set counts as saved work.
  memory      peak RSS (VmHWM) of a fresh process that takes ``steps`` steps with MLE and with AWR;
              the ratio and the difference are the value head's cost (parameters, hidden states kept
              for it, its optimiser state).

Run: ``python -m bench objectives [--quick] [--model tiny-random|smollm2-135m | --config PHF-PRESET]``; JSON to
runs/bench/objectives.json (not tracked) unless --out says otherwise. Kept short by design.

``--config`` measures at a PHF preset's setting: its model (a scratch model at the seed's initialisation),
``training`` section (lr, gradient clipping, LoRA, the objectives' knobs) and a batch of ``phf.batch_docs``
documents of ``phf.doc_tokens`` tokens. Without it: the named model, full training at lr 1e-5, 8 × 128.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aplkit.config import TrainingConfig

ROOT = Path(__file__).resolve().parent.parent
CHILD = (
    "import sys; from bench.objectives import train_steps; from bench.memory import report_peak; "
    "train_steps(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] or None); report_peak()"
)


def documents(vocab: int, n_docs: int, doc_tokens: int, seed: int = 0):
    """Documents of 4 equal segments of random ids with rewards in [−1, 0]: the same batch for every objective."""
    import torch

    from aplkit.objectives.segments import Document, Segment

    g = torch.Generator().manual_seed(seed)
    seg = doc_tokens // 4
    return [
        Document(
            [Segment(torch.randint(10, vocab - 10, (seg,), generator=g).tolist(), -float(torch.rand(1, generator=g))) for _ in range(4)]
        )
        for _ in range(n_docs)
    ]


def setting(model: str, config: str | None = None) -> tuple[str, int, TrainingConfig]:
    """The model spec, its initialisation seed and the ``training`` section measured: a PHF preset's, or full training at lr 1e-5."""
    from aplkit.config import TrainingConfig

    if config is None:
        return model, 0, TrainingConfig(lr=1e-5)
    from aplkit.phf.config import load_phf_config

    cfg = load_phf_config(config)
    return cfg.model.spec, cfg.seed, cfg.training


def trainer(models, objective: str, training: TrainingConfig):
    """One objective's trainer on ``models`` (changed in place: control tokens, LoRA adapters), as ``aplkit phf`` builds it."""
    from aplkit.objectives.dpo import apply_lora
    from aplkit.objectives.trainer import SegmentTrainer, make_loss

    tok = models.tokenizer
    loss = make_loss(objective, training.phf, tok, [models.policy, models.reference])
    policy = apply_lora(models.policy, training, getattr(loss, "suppress", None))
    return SegmentTrainer(policy, loss, dataclasses.replace(training, objective=objective), tok.pad_token_id, [tok.eos_token_id])


def train_steps(model: str, objective: str, steps: int, n_docs: int, doc_tokens: int, config: str | None = None) -> None:
    """The memory child: ``steps`` optimiser steps of one objective."""
    import torch

    from aplkit.models import load_models

    torch.manual_seed(0)
    spec, seed, training = setting(model, config)
    m = load_models(spec, device="cpu", dtype="float32", seed=seed)
    t = trainer(m, objective, training)
    docs = documents(len(m.tokenizer), n_docs, doc_tokens)
    for _ in range(steps):
        t.step(docs, -0.5)


def throughput(
    model: str, objectives: list[str], repeats: int, n_docs: int, doc_tokens: int, config: str | None = None
) -> dict[str, float]:
    import copy
    import statistics

    from aplkit.models import load_models

    spec, seed, training = setting(model, config)
    base = load_models(spec, device="cpu", dtype="float32", seed=seed)
    docs = documents(len(base.tokenizer), n_docs, doc_tokens)
    tokens = sum(len(s.ids) for d in docs for s in d.segments)
    runs = {}
    for o in objectives:  # each its own copy of θ0, so no objective trains on another's result
        runs[o] = trainer(copy.deepcopy(base), o, training)
    for t in runs.values():
        t.step(docs, -0.5)  # warm-up: first backward, allocator growth
    times: dict[str, list[float]] = {o: [] for o in objectives}
    for r in range(repeats):
        for o in objectives if r % 2 == 0 else objectives[::-1]:
            t0 = time.perf_counter()
            runs[o].step(docs, -0.5)
            times[o].append(time.perf_counter() - t0)
    return {o: tokens / statistics.median(ts) for o, ts in times.items()}


def peak_mb(model: str, objective: str, steps: int, n_docs: int, doc_tokens: int, config: str | None = None) -> float:
    out = (
        subprocess.run(
            [sys.executable, "-c", CHILD, model, objective, str(steps), str(n_docs), str(doc_tokens), config or ""],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=1200,
        )
        .stdout.strip()
        .splitlines()
    )
    return float(json.loads(out[-1])["peak_mb"])


def main(argv: list[str] | None = None) -> int:
    from aplkit.objectives import PHF_OBJECTIVES

    ap = argparse.ArgumentParser(prog="python -m bench objectives")
    ap.add_argument("--quick", action="store_true", help="3 repeats of 4 documents × 64 tokens")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--config", default=None, help="a PHF preset (e.g. phf-imdb-scratch): its model, training section and batch")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "objectives.json"))
    args = ap.parse_args(argv)
    repeats, n_docs, doc_tokens = (3, 4, 64) if args.quick else (5, 8, 128)
    if args.config and not args.quick:
        from aplkit.phf.config import load_phf_config

        phf = load_phf_config(args.config).phf
        n_docs, doc_tokens = phf.batch_docs, phf.doc_tokens
    from bench.compute import machine_info

    t0 = time.perf_counter()
    info = machine_info()
    spec, _, training = setting(args.model, args.config)
    rates = throughput(args.model, list(PHF_OBJECTIVES), repeats, n_docs, doc_tokens, args.config)
    mem = {o: peak_mb(args.model, o, 2, n_docs, doc_tokens, args.config) for o in ("mle", "awr")}
    result = {
        "machine": info,
        "model": spec,
        **({"config": args.config, "training": dataclasses.asdict(training)} if args.config else {}),
        "settings": {"repeats": repeats, "docs": n_docs, "doc_tokens": doc_tokens},
        "tokens_per_s": rates,
        "ratio_vs_mle": {o: r / rates["mle"] for o, r in rates.items()},
        "peak_rss_mb": mem,
        "awr_value_head_mb": mem["awr"] - mem["mle"],
        "awr_over_mle_memory": mem["awr"] / mem["mle"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if hasattr(os, "getloadavg"):
        result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    for o in PHF_OBJECTIVES:
        print(f"{o:<13} {rates[o]:9.1f} tokens/s   ratio vs MLE {rates[o] / rates['mle']:5.2f}x")
    print(
        f"peak RSS: MLE {mem['mle']:.0f} MB, AWR {mem['awr']:.0f} MB ({mem['awr'] / mem['mle']:.3f}x, value head {mem['awr'] - mem['mle']:+.0f} MB)"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"→ {out}")
    return 0
