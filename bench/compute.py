"""Compute benchmarks: each aplkit stage against a plain baseline, side by side in one process.

Both sides of a comparison get the same model, inputs and hyper-parameters and run
interleaved (A B, B A, A B, ...), so a change in machine load during the run hits both
alike; we print the median of the repeats and the ratio aplkit / baseline (> 1: aplkit faster).

  dpo         DPOFinetuner.finetune vs TRL DPOTrainer.train, one epoch, reference log-probs included
  mfu         the DPO epoch's model FLOP/s as a fraction of a torch.matmul probe's FLOP/s
  certainty   ScoringContext.implicit_rewards vs a per-sequence loop (policy and reference forwards)
  entropy     ScoringContext.entropies vs per-prompt, per-sample generate + score
  generation  sample_completions (batched) vs per-prompt model.generate
  judge       LLMJudge concurrency 1 vs N on a local llama.cpp server; a cached re-run through the ledger
  memory      peak RSS of a short CPU-preset run and of the DPO step alone (bench/memory.py, subprocesses)
  speed       one APL step made cheaper: each candidate setting against today's preset (bench/speed.py);
              off by default, run with ``--only speed`` (writes bench/results/speed.json)

Run: ``python -m bench compute [--quick] [--only SECTIONS | --skip SECTIONS]``.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.provenance import git

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Settings:
    dpo_pairs: int
    dpo_repeats: int
    score_pairs: int
    entropy_prompts: int
    entropy_samples: int
    gen_prompts: int
    repeats: int  # scorers and generation
    matmul_sizes: tuple[int, ...]
    matmul_repeats: int
    judge_items: int
    judge_concurrency: int
    max_new_tokens: int = 24
    temperature: float = 0.7


# Sized for 2 CPU cores: the one-at-a-time baselines are slow (a single-sequence generate is ~10x slower
# per token than a batch), so their inputs are small; FULL is about half a CPU-preset step (S = 64 pairs).
QUICK = Settings(8, 1, 8, 2, 4, 4, 1, (1024, 2048), 3, 4, 4)
FULL = Settings(32, 3, 32, 4, 4, 8, 3, (1024, 1536, 2048), 5, 8, 4)


# --------------------------------------------------------------------------- machine and timing


def machine_info() -> dict[str, Any]:
    """Where the figures come from: CPU (model, ISA, cores), threads, versions, date, commit, load."""
    import transformers
    import trl

    from aplkit.provenance import machine

    info = {
        **machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "python": platform.python_version(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def interleaved(fns: dict[str, Callable[[], dict]], repeats: int, warmup: bool = False) -> dict[str, list[dict]]:
    """Run each fn ``repeats`` times, alternating the order every round; each fn times itself (setup excluded).

    ``warmup`` runs each fn once first and discards it: with fewer than 3 repeats the median cannot drop
    the cold first run (first backward, allocator growth), which would penalise whichever side goes first.
    """
    names = list(fns)
    if warmup:
        for n in names:
            fns[n]()
    out: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names if r % 2 == 0 else names[::-1]:
            out[n].append(fns[n]())
    return out


def med(runs: list[dict], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in runs)


def rate(runs: list[dict]) -> float:
    """Median throughput (units per second) over the repeats."""
    return statistics.median(r["units"] / r["seconds"] for r in runs)


def line(name: str, base: str, r_ours: float, r_base: float, unit: str, note: str = "") -> tuple[str, float]:
    ratio = r_ours / r_base if r_base else float("nan")
    s = f"{name:<11} aplkit {r_ours:9.2f} {unit} | {base} {r_base:9.2f} {unit} | ratio {ratio:5.2f}x"
    return (s + (f"  ({note})" if note else "")), ratio


# --------------------------------------------------------------------------- shared state


class Bench:
    """The embedded model, its tokenizer and real IMDB prompts, loaded once for every section."""

    def __init__(self, s: Settings):
        from aplkit.config import DataConfig
        from aplkit.data import load_pools
        from aplkit.models import load_models

        self.s = s
        t0 = time.perf_counter()
        self.models = load_models("smollm2-135m", device="auto", dtype="float32")
        self.tok = self.models.tokenizer
        self.pools = load_pools(DataConfig(), self.tok)
        self.load_seconds = time.perf_counter() - t0
        self._pairs: dict[int, list[tuple[str, str, str]]] = {}

    @property
    def reference(self):
        return self.models.reference

    def prompts(self, n: int, offset: int = 0) -> list[str]:
        return [p.text for p in self.pools.train[offset : offset + n]]

    def pairs(self, n: int) -> list[tuple[str, str, str]]:
        """n (prompt, y0, y1) with y0, y1 ~ πθ0 on real IMDB prompts; sampled once, reused by every section."""
        if n not in self._pairs:
            from aplkit.generation import sample_completions

            xs = self.prompts(n)
            ys = sample_completions(
                self.reference, self.tok, xs, n=2, temperature=self.s.temperature, max_new_tokens=self.s.max_new_tokens, seed=0
            )
            self._pairs[n] = [(x, y[0], y[1]) for x, y in zip(xs, ys, strict=True)]
        return self._pairs[n]

    def fresh_policy(self):
        policy = copy.deepcopy(self.reference)
        for p in policy.parameters():
            p.requires_grad_(True)
        return policy.train()

    def n_params(self) -> int:
        return sum(p.numel() for p in self.reference.parameters())


# --------------------------------------------------------------------------- 1 + 4: DPO and MFU


def dpo_prefs(b: Bench, n: int):
    """Preference pairs with EOS appended, as TRL appends it, so both sides see identical token ids."""
    from aplkit.records import Preference

    eos = b.tok.eos_token
    return [Preference(x, y0 + eos, y1 + eos) for x, y0, y1 in b.pairs(n)]


def dpo_tokens(b: Bench, prefs, batch_size: int, seed: int) -> dict[str, int]:
    """Real and padded tokens one aplkit epoch pushes through the policy (same real count for TRL)."""
    from aplkit.objectives.dpo import make_batch

    order = torch.randperm(len(prefs), generator=torch.Generator().manual_seed(seed)).tolist()
    real = padded = 0
    for s in range(0, len(order), batch_size):
        batch, _, _ = make_batch(b.tok, [prefs[i] for i in order[s : s + batch_size]])
        real += int(batch.attention_mask.sum())
        padded += batch.input_ids.numel()
    return {"real": real, "padded": padded}


def run_aplkit_dpo(b: Bench, prefs, cfg) -> dict:
    from aplkit.objectives.dpo import DPOFinetuner

    policy = b.fresh_policy()
    t0 = time.perf_counter()
    ft = DPOFinetuner(policy, b.reference, b.tok, cfg)
    t1 = time.perf_counter()
    stats = ft.finetune(prefs, seed=0)
    t2 = time.perf_counter()
    del ft, policy
    return {"seconds": t2 - t1, "setup_seconds": t1 - t0, "units": len(prefs), "loss": stats[-1].loss}


def run_trl_dpo(b: Bench, prefs, cfg, workdir: str) -> dict:
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    policy, ref = b.fresh_policy(), copy.deepcopy(b.reference)  # TRL patches the models it gets
    ds = Dataset.from_list([{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in prefs])
    args = DPOConfig(
        output_dir=workdir,
        beta=cfg.beta,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=1,
        lr_scheduler_type="constant",  # aplkit: fixed lr
        optim="adamw_torch",  # with weight_decay=0 this is Adam, as aplkit's torch.optim.Adam
        weight_decay=0.0,
        max_grad_norm=0.0,  # aplkit default: no clipping
        activation_checkpointing=False,  # TRL's default (gradient_checkpointing=True) recomputes; aplkit does not
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        seed=0,
        dataloader_num_workers=0,
    )
    t0 = time.perf_counter()
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=ds, processing_class=b.tok)
    trainer.remove_callback(PrinterCallback)  # disable_tqdm swaps the progress bar for a printer of the logs
    t1 = time.perf_counter()
    out = trainer.train()
    t2 = time.perf_counter()
    del trainer, policy, ref
    return {"seconds": t2 - t1, "setup_seconds": t1 - t0, "units": len(prefs), "loss": float(out.training_loss)}


def bench_dpo(b: Bench) -> tuple[dict, list[str]]:
    from aplkit.config import TrainingConfig

    s = b.s
    prefs = dpo_prefs(b, s.dpo_pairs)
    cfg = TrainingConfig(mode="reset", optimizer="adam", lr=3e-5, epochs=1, batch_size=8, beta=0.2)
    with tempfile.TemporaryDirectory(prefix="bench_trl_") as work:
        runs = interleaved(
            {"aplkit": lambda: run_aplkit_dpo(b, prefs, cfg), "trl": lambda: run_trl_dpo(b, prefs, cfg, work)},
            s.dpo_repeats,
            warmup=s.dpo_repeats < 3,
        )
    ours, base = rate(runs["aplkit"]), rate(runs["trl"])
    l1, ratio = line(
        "dpo",
        "TRL DPOTrainer",
        ours,
        base,
        "pairs/s",
        f"{s.dpo_pairs} pairs, bs 8, 1 epoch, ref log-probs incl., median of {s.dpo_repeats}",
    )
    e2e = {k: statistics.median(len(prefs) / (r["seconds"] + r["setup_seconds"]) for r in v) for k, v in runs.items()}
    l2, ratio2 = line(
        "dpo+setup",
        "TRL DPOTrainer",
        e2e["aplkit"],
        e2e["trl"],
        "pairs/s",
        "incl. DPOFinetuner() / DPOTrainer() construction (TRL tokenises there)",
    )
    res = {
        "pairs": len(prefs),
        "hyper": {"optimizer": "adam", "lr": cfg.lr, "batch_size": cfg.batch_size, "beta": cfg.beta, "epochs": 1},
        "aplkit_pairs_per_s": ours,
        "trl_pairs_per_s": base,
        "ratio": ratio,
        "end_to_end_pairs_per_s": e2e,
        "end_to_end_ratio": ratio2,
        "runs": runs,
        "tokens": dpo_tokens(b, prefs, cfg.batch_size, seed=0),
    }
    return res, [l1, l2]


def matmul_probe(sizes: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """Dense fp32 matmul FLOP/s (2n³ per n×n product), median over repeats; the best size is the machine's peak."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    per_size = {}
    for n in sizes:
        g = torch.Generator(device="cpu").manual_seed(n)
        a, c = torch.randn(n, n, generator=g).to(dev), torch.randn(n, n, generator=g).to(dev)
        torch.matmul(a, c)  # warm-up
        ts = []
        for _ in range(repeats):
            if dev == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            torch.matmul(a, c)
            if dev == "cuda":
                torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
        per_size[str(n)] = 2 * n**3 / statistics.median(ts)
    return {"flops_per_s": per_size, "peak_flops_per_s": max(per_size.values()), "dtype": "float32", "device": dev}


def bench_mfu(b: Bench, dpo: dict) -> tuple[dict, list[str]]:
    """Model FLOPs of one DPO epoch: 6·N·T (policy forward+backward) + 2·N·T (reference forward, computed once
    per pair in this epoch: aplkit caches it, TRL recomputes it per batch, the same count for one epoch)."""
    s = b.s
    probe = matmul_probe(s.matmul_sizes, s.matmul_repeats)
    n, t = b.n_params(), dpo["tokens"]["real"]
    flops = 8 * n * t
    peak = probe["peak_flops_per_s"]
    res: dict[str, Any] = {
        "params": n,
        "tokens_real": t,
        "tokens_padded": dpo["tokens"]["padded"],
        "model_flops_per_epoch": flops,
        "probe": probe,
    }
    lines = []
    for who, runs in dpo["runs"].items():
        achieved = flops / med(runs)
        res[who] = {"achieved_flops_per_s": achieved, "mfu": achieved / peak}
    l1, ratio = line(
        "mfu",
        "TRL DPOTrainer",
        100 * res["aplkit"]["mfu"],
        100 * res["trl"]["mfu"],
        "%    ",
        f"8·N·T, N={n / 1e6:.1f}M, T={t} real tokens; matmul probe {peak / 1e9:.1f} GFLOP/s fp32",
    )
    res["ratio"] = ratio
    lines.append(l1)
    return res, lines


# --------------------------------------------------------------------------- 2: scorers


def one_logprob(model, tok, x: str, y: str) -> float:
    """The straightforward way: one sequence, one forward."""
    from aplkit.generation import completion_logprobs, encode_ids, tokenize_pairs

    p, c = tokenize_pairs(tok, [x], [y])
    with torch.no_grad():
        return float(completion_logprobs(model, encode_ids(p, c, tok.pad_token_id))[0])


def one_generate(model, tok, x: str, n: int, s: Settings) -> list[str]:
    enc = tok([x], return_tensors="pt").to(next(model.parameters()).device)
    with torch.no_grad():
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=s.temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=s.max_new_tokens,
            num_return_sequences=n,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
    return tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def scoring_context(b: Bench):
    from aplkit.acquisition import ScoringContext
    from aplkit.config import AcquisitionConfig

    s = b.s
    acq = AcquisitionConfig(entropy_samples=s.entropy_samples, temperature=s.temperature, max_new_tokens=s.max_new_tokens)
    return ScoringContext(policy=b.models.policy.eval(), reference=b.reference, tokenizer=b.tok, acq=acq, beta=0.2, seed=0)


def bench_certainty(b: Bench) -> tuple[dict, list[str]]:
    """Implicit rewards r̂ = β(log πθ − log πθ0) of both completions of each pair: 4 sequence forwards per pair."""
    import numpy as np

    ctx = scoring_context(b)
    pairs = b.pairs(b.s.score_pairs)
    xs = [p[0] for p in pairs] * 2
    ys = [p[1] for p in pairs] + [p[2] for p in pairs]

    def ours() -> dict:
        t0 = time.perf_counter()
        ctx.implicit_rewards(xs, ys)
        return {"seconds": time.perf_counter() - t0, "units": len(pairs)}

    def loop() -> dict:
        t0 = time.perf_counter()
        [0.2 * (one_logprob(ctx.policy, b.tok, x, y) - one_logprob(b.reference, b.tok, x, y)) for x, y in zip(xs, ys, strict=True)]
        return {"seconds": time.perf_counter() - t0, "units": len(pairs)}

    runs = interleaved({"aplkit": ours, "loop": loop}, b.s.repeats)
    # the policy is θ0 here, so r̂ = 0 on both sides; check the batched log-probs against the loop's instead
    lp_b = ctx.logprobs("policy", xs[:4], ys[:4])
    lp_l = np.array([one_logprob(ctx.policy, b.tok, x, y) for x, y in zip(xs[:4], ys[:4], strict=True)])
    agree = float(np.max(np.abs(lp_b - lp_l)))
    ln, ratio = line(
        "certainty",
        "per-seq loop",
        rate(runs["aplkit"]),
        rate(runs["loop"]),
        "pairs/s",
        f"{len(pairs)} pairs, 4 forwards each; |Δ log p| vs loop ≤ {agree:.1e}",
    )
    res = {
        "pairs": len(pairs),
        "aplkit_pairs_per_s": rate(runs["aplkit"]),
        "loop_pairs_per_s": rate(runs["loop"]),
        "ratio": ratio,
        "max_abs_logprob_diff": agree,
        "runs": runs,
    }
    return res, [ln]


def bench_entropy(b: Bench) -> tuple[dict, list[str]]:
    """Predictive entropy: N samples per prompt, then their log-probs (ScoringContext.entropies vs a loop)."""
    import numpy as np

    from aplkit.records import Prompt

    s = b.s
    ctx = scoring_context(b)
    xs = b.prompts(s.entropy_prompts, offset=64)
    prompts = [Prompt(id=f"bench-{i}", text=x) for i, x in enumerate(xs)]
    n = s.entropy_samples

    def ours() -> dict:
        t0 = time.perf_counter()
        ctx.entropies(prompts, n)
        return {"seconds": time.perf_counter() - t0, "units": len(xs)}

    def loop() -> dict:
        torch.manual_seed(1)
        t0 = time.perf_counter()
        for x in xs:
            samples = [one_generate(ctx.policy, b.tok, x, 1, s)[0] for _ in range(n)]
            -np.mean([one_logprob(ctx.policy, b.tok, x, y) for y in samples])
        return {"seconds": time.perf_counter() - t0, "units": len(xs)}

    runs = interleaved({"aplkit": ours, "loop": loop}, s.repeats)
    ln, ratio = line(
        "entropy",
        "per-seq loop",
        rate(runs["aplkit"]),
        rate(runs["loop"]),
        "prompts/s",
        f"{len(xs)} prompts × N={n} samples: generate + score",
    )
    res = {
        "prompts": len(xs),
        "samples": n,
        "aplkit_prompts_per_s": rate(runs["aplkit"]),
        "loop_prompts_per_s": rate(runs["loop"]),
        "ratio": ratio,
        "runs": runs,
    }
    return res, [ln]


# --------------------------------------------------------------------------- 3: generation


def bench_generation(b: Bench) -> tuple[dict, list[str]]:
    from aplkit.generation import sample_completions

    s = b.s
    xs = b.prompts(s.gen_prompts, offset=128)
    model = b.models.policy.eval()

    def new_tokens(texts: list[str]) -> int:
        return sum(len(t) for t in b.tok(texts, add_special_tokens=False)["input_ids"])

    def ours() -> dict:
        t0 = time.perf_counter()
        out = sample_completions(model, b.tok, xs, n=2, temperature=s.temperature, max_new_tokens=s.max_new_tokens, batch_size=32, seed=0)
        sec = time.perf_counter() - t0
        return {"seconds": sec, "units": new_tokens([y for ys in out for y in ys])}

    def loop() -> dict:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        out = [one_generate(model, b.tok, x, 2, s) for x in xs]
        sec = time.perf_counter() - t0
        return {"seconds": sec, "units": new_tokens([y for ys in out for y in ys])}

    runs = interleaved({"aplkit": ours, "loop": loop}, s.repeats)
    l1, ratio = line(
        "generation",
        "per-prompt generate",
        rate(runs["aplkit"]),
        rate(runs["loop"]),
        "tok/s  ",
        f"{len(xs)} prompts × 2, ≤{s.max_new_tokens} new tokens, batch 32",
    )
    return {
        "prompts": len(xs),
        "n": 2,
        "aplkit_tokens_per_s": rate(runs["aplkit"]),
        "loop_tokens_per_s": rate(runs["loop"]),
        "ratio": ratio,
        "runs": runs,
    }, [l1]


# --------------------------------------------------------------------------- 5: LLM judge on llama.cpp


def start_llama_server():
    """Start the local server with tests/llama_server.py's fixture logic; returns (url, stop) or (None, reason)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return None, "llama-cpp-python is not installed (pip install 'llama-cpp-python[server]')"
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from _pytest.outcomes import OutcomeException

    from tests.llama_server import llama_server

    gen = llama_server.__wrapped__()
    try:
        url = next(gen)
    except OutcomeException as e:  # the fixture skips/fails with a reason
        return None, str(getattr(e, "msg", e))
    return url, gen.close


def bench_judge(b: Bench) -> tuple[dict, list[str]]:
    from aplkit.oracles.labelling import label_pairs
    from aplkit.oracles.ledger import Ledger
    from aplkit.oracles.llm import LLMJudge
    from aplkit.records import Comparison

    s = b.s
    url, stop = start_llama_server()
    if url is None:
        msg = f"judge       skipped: {stop}"
        return {"skipped": stop}, [msg]
    try:
        pairs = b.pairs(max(s.judge_items, s.score_pairs))[: s.judge_items]
        comps = [Comparison(x, y0, y1) for x, y0, y1 in pairs]
        judges = {c: LLMJudge("smollm2", base_url=url, template="sentiment", concurrency=c) for c in (1, s.judge_concurrency)}
        judges[1].judge(comps[:1])  # warm the server (first request loads caches)

        def run(c: int) -> Callable[[], dict]:
            def f() -> dict:
                t0 = time.perf_counter()
                vs = judges[c].judge(comps)
                return {
                    "seconds": time.perf_counter() - t0,
                    "units": len(comps),
                    "valid": sum(v.choice is not None for v in vs),
                    "requests": sum(v.attempts for v in vs),
                    "tokens_out": sum(v.tokens_out for v in vs),
                }

            return f

        cN, judge = f"c{s.judge_concurrency}", judges[s.judge_concurrency]  # the configured side
        runs = interleaved({"c1": run(1), cN: run(s.judge_concurrency)}, 1)
        l1, ratio = line(
            "judge",
            "concurrency 1",
            rate(runs[cN]),
            rate(runs["c1"]),
            "cmp/s  ",
            f"aplkit side = concurrency {s.judge_concurrency}; {len(comps)} comparisons, llama.cpp server, mode {judge.mode}",
        )
        with tempfile.TemporaryDirectory(prefix="bench_ledger_") as d:
            path = Path(d) / "ledger.sqlite"
            with Ledger(path) as led:
                t0 = time.perf_counter()
                label_pairs(judge, led, pairs, seed=0)
                fresh_s = time.perf_counter() - t0
                fresh = led.stats()
            with Ledger(path) as led:
                t0 = time.perf_counter()
                labels = label_pairs(judge, led, pairs, seed=0)
                cached_s = time.perf_counter() - t0
                cached = led.stats()
        l2 = (
            f"ledger      fresh {len(pairs)} pairs: {fresh['calls']} calls in {fresh_s:.1f}s | cached re-run: {cached['calls']} calls, "
            f"{cached['cache_hits']} hits in {cached_s * 1000:.1f} ms (all cached: {all(lab.cached for lab in labels)})"
        )
        for j in judges.values():
            j.close()
        res = {
            "items": len(comps),
            "concurrency": s.judge_concurrency,
            "c1_cmp_per_s": rate(runs["c1"]),
            f"{cN}_cmp_per_s": rate(runs[cN]),
            "ratio": ratio,
            "runs": runs,
            "ledger_fresh": {"seconds": fresh_s, "stats": fresh},
            "ledger_cached": {"seconds": cached_s, "stats": cached},
        }
        return res, [l1, l2]
    finally:
        stop()


# --------------------------------------------------------------------------- main


SECTIONS = ("dpo", "mfu", "certainty", "entropy", "generation", "judge", "memory", "speed")
OPT_IN = {"speed"}  # long; run only when named in --only
QUICK_OUT = ROOT / "runs" / "bench" / "compute-quick.json"  # runs/ is not tracked


def output_path(quick: bool, out: str | None = None, only: set[str] | None = None) -> Path:
    """Where the JSON goes: ``out``, else the committed full results, else (``--quick``) a run-scoped file.

    ``--only speed`` has its own file (bench/results/speed.json; quick: runs/bench/speed-quick.json).
    """
    if out:
        return Path(out)
    if only == {"speed"}:
        return QUICK_OUT.with_name("speed-quick.json") if quick else RESULTS / "speed.json"
    return QUICK_OUT if quick else RESULTS / "compute.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench compute", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer pairs and repeats (a few minutes on 2 cores)")
    ap.add_argument(
        "--out",
        help="JSON path (default: bench/results/compute.json; with --quick runs/bench/compute-quick.json, "
        "so a smoke run leaves the committed results alone: --out bench/results/compute-quick.json refreshes them)",
    )
    ap.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {', '.join(SECTIONS)}")
    ap.add_argument(
        "--only", default="", help=f"comma-separated sections to run, alone ({', '.join(sorted(OPT_IN))} runs only when named here)"
    )
    args = ap.parse_args(argv)
    skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    for flag, names in (("--skip", skip), ("--only", only)):
        if names - set(SECTIONS):
            print(f"bench compute: {flag}: unknown section(s) {sorted(names - set(SECTIONS))} (use {', '.join(SECTIONS)})", file=sys.stderr)
            return 2
    skip |= (set(SECTIONS) - only) if only else set(OPT_IN)
    out = output_path(args.quick, args.out, only or None)
    s = QUICK if args.quick else FULL
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass

    t_start = time.perf_counter()
    info = machine_info()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} threads), load {info.get('loadavg_start')}"
    )
    b = Bench(s)
    print(f"loaded smollm2-135m + IMDB pools in {b.load_seconds:.1f}s; {'quick' if args.quick else 'full'} settings")
    results: dict[str, Any] = {}
    lines: list[str] = []

    def save() -> None:
        if hasattr(os, "getloadavg"):
            info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        info["wall_seconds"] = round(time.perf_counter() - t_start, 1)
        doc = {"machine": info, "settings": {"quick": args.quick, **s.__dict__}, "lines": lines, "results": results}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1, default=float) + "\n")

    def emit(name: str, fn: Callable[[], tuple[dict, list[str]]]) -> None:
        """Run one section; a failing section is reported and recorded, the others still run; save after each."""
        t0 = time.perf_counter()
        try:
            res, ls = fn()
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the others' figures
            res, ls = (
                {"error": f"{type(e).__name__}: {e}"},
                [f"{name:<11} FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"],
            )
        res["section_seconds"] = time.perf_counter() - t0
        shown = results.get(name, {}).get("lines", [])  # a section that printed its lines as it went (speed)
        results[name] = res
        for x in ls:
            if x not in shown:
                print(x, flush=True)
            lines.append(x)
        save()

    # warm-up: first forward/backward/generate pay one-off kernel and allocator costs
    from aplkit.generation import sample_completions

    sample_completions(b.models.policy, b.tok, b.prompts(2), n=2, max_new_tokens=4)
    b.pairs(max(s.dpo_pairs, s.score_pairs, s.judge_items))
    if "dpo" not in skip:
        emit("dpo", lambda: bench_dpo(b))
        if "mfu" not in skip and "error" not in results["dpo"]:
            emit("mfu", lambda: bench_mfu(b, results["dpo"]))
    if "certainty" not in skip:
        emit("certainty", lambda: bench_certainty(b))
    if "entropy" not in skip:
        emit("entropy", lambda: bench_entropy(b))
    if "generation" not in skip:
        emit("generation", lambda: bench_generation(b))
    if "judge" not in skip:
        emit("judge", lambda: bench_judge(b))
    if "speed" not in skip:
        from bench.speed import bench_speed

        probe = results.get("mfu", {}).get("probe", {}).get("peak_flops_per_s")

        def partial(res: dict, ls: list[str]) -> None:  # the section is long: show and keep each finished group
            for x in ls[len(results.get("speed", {}).get("lines", [])) :]:
                print(x, flush=True)
            results["speed"] = {**res, "lines": list(ls), "partial": True}
            save()

        emit("speed", lambda: bench_speed(b, args.quick, probe, partial))
    if "memory" not in skip:
        from bench.memory import measure

        del b  # the memory workers are separate processes; free this one's models first
        emit("memory", lambda: measure(quick=args.quick, pairs=s.dpo_pairs))
    save()
    print(f"wrote {out} ({info['wall_seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
