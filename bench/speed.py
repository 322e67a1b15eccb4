"""Speed of one APL step on the CPU preset: each candidate setting against today's, side by side.

The ``speed`` section of ``python -m bench compute`` (``--only speed`` runs it alone). Every group runs its
variants in one process, interleaved, and reports medians and the ratio variant / today's setting
(> 1: the variant is faster), on the embedded SmolLM2-135M and real IMDB prompts:

  generation   new tokens/s at 32, 64, 128, 256 rows per ``generate`` call (today: 32)
  logprobs     sampling with the sampled tokens' log-probs: ``output_scores`` (the path before 78f0674,
               kept here as the baseline) vs the ``_Tempered`` logits processor, and vs no log-probs
  dtype        fp32 (today) vs bf16 autocast vs bf16 weights
  cache        dynamic KV cache (today) vs ``cache_implementation="static"`` vs static + ``torch.compile``
               (in a subprocess with a time limit; compile time reported apart)
  profile      one decode step: linear-layer (matmul) time vs attention, sampling and the rest, against
               the fp32 matmul probe: the ceiling on new tokens/s this machine allows
  acquisition  certainty and entropy pairs (prompts) scored per second: preset (batch 32, old paths) vs new settings
  evaluation   the KL from θ0 on the test prompts: sampling + a pass of both models vs the sampler's own distributions
               + a θ0 pass (same ids, same KL to float noise)
  dpo          LoRA (``training.lora``) vs full fine-tuning: seconds per epoch on the same pairs, peak RSS
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SpeedSettings:
    gen_prompts: int  # × n = 2 rows in all
    rows: tuple[int, ...]  # rows per generate call; the first is today's (acquisition.batch_size)
    big_rows: int  # the candidate new setting for the other groups
    repeats: int
    acq_prompts: int  # S
    entropy_samples: int
    dpo_pairs: int
    profile_steps: int
    compile_limit_s: float
    max_new_tokens: int = 24
    temperature: float = 0.7


QUICK = SpeedSettings(32, (32, 64), 64, 1, 32, 4, 16, 8, 180.0)
FULL = SpeedSettings(128, (32, 64, 128, 256), 128, 2, 64, 4, 32, 16, 180.0)


# --------------------------------------------------------------------------- sampling, as aplkit does it and as it did


def generate(
    model,
    tok,
    prompts: list[str],
    *,
    rows: int,
    n: int = 2,
    temperature: float = 0.7,
    max_new_tokens: int = 24,
    seed: int = 0,
    logprobs: str | None = None,
    pad_to: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """``aplkit.generation.sample``'s loop with the knobs under test; returns the ids, log-probs and timing.

    ``logprobs``: None, ``"new"`` (the ``_Tempered`` processor, today's code) or ``"old"``
    (``generate(output_scores=True)`` and a log-softmax over every step's stacked [rows, steps, V]
    scores, as ``sample`` did at d5c6d0a). ``pad_to`` left-pads every prompt to that many tokens, so a
    static cache keeps one shape across calls. ``extra`` goes to ``generate`` (cache, compile config).
    """
    from transformers import LogitsProcessorList

    from aplkit.generation import _cut, _generation_config, _Tempered
    from aplkit.models import autocast

    model.eval()
    device = next(model.parameters()).device
    pad, eos = tok.pad_token_id, tok.eos_token_id
    per = max(1, rows // n)
    ids: list[list[int]] = []
    lps: list[float] = []
    padded = 0
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    for s in range(0, len(prompts), per):
        chunk = prompts[s : s + per]
        kw: dict[str, Any] = {"padding": "max_length", "max_length": pad_to} if pad_to else {"padding": True}
        enc = tok(chunk, return_tensors="pt", padding_side="left", add_special_tokens=True, **kw).to(device)
        cfg = _generation_config(max_new_tokens, pad, eos)
        with torch.no_grad(), autocast(model):
            if logprobs == "old":
                cfg.temperature = temperature
                out = model.generate(
                    **enc, generation_config=cfg, num_return_sequences=n, return_dict_in_generate=True, output_scores=True, **extra
                )
                seqs = out.sequences
            else:
                tempered = _Tempered(temperature, logprobs == "new")
                seqs = model.generate(
                    **enc, generation_config=cfg, num_return_sequences=n, logits_processor=LogitsProcessorList([tempered]), **extra
                )
        new = seqs[:, enc["input_ids"].shape[1] :].cpu()
        padded += new.numel()
        cut = [_cut(r, eos, pad) for r in new.tolist()]
        ids += cut
        if logprobs:
            if logprobs == "old":
                scores = torch.stack(out.scores, dim=1).float().cpu()
                token_lp = torch.gather(F.log_softmax(scores, dim=-1), 2, new.unsqueeze(-1)).squeeze(-1)
            else:
                token_lp = tempered.logprobs(new)
            lens = torch.tensor([len(r) for r in cut])
            mask = torch.arange(new.shape[1]).unsqueeze(0) < lens.unsqueeze(1)
            lps += (token_lp * mask).sum(-1).double().tolist()
    sec = time.perf_counter() - t0
    return {"seconds": sec, "units": sum(len(r) for r in ids), "padded_tokens": padded, "ids": ids, "logprobs": lps or None}


def timed(fn: Callable[[], dict]) -> Callable[[], dict]:
    """The run's timing only (the ids stay out of the JSON)."""

    def f() -> dict:
        r = fn()
        return {k: v for k, v in r.items() if k not in ("ids", "logprobs", "kl")}

    return f


def bf16_weights(model):
    m = copy.deepcopy(model).to(torch.bfloat16)
    m.aplkit_compute_dtype = None
    return m.eval()


def bf16_autocast(model):
    from aplkit.models import set_compute_dtype

    m = copy.copy(model)  # shares the weights; only the compute dtype attribute differs
    set_compute_dtype(m, torch.bfloat16)
    return m


# --------------------------------------------------------------------------- report helpers


def _ratios(runs: dict[str, list[dict]], today: str) -> dict[str, dict[str, float]]:
    from bench.compute import rate

    base = rate(runs[today])
    return {k: {"tokens_per_s": rate(v), "ratio": rate(v) / base} for k, v in runs.items()}


def _lines(group: str, table: dict[str, dict[str, float]], today: str, unit: str = "tok/s", note: str = "") -> list[str]:
    out = []
    for k, v in table.items():
        tag = " (today)" if k == today else ""
        out.append(f"{group:<11} {k:<26} {v['tokens_per_s']:9.1f} {unit}  ratio {v['ratio']:5.2f}x{tag}")
    if note:
        out.append(f"{group:<11} {note}")
    return out


# --------------------------------------------------------------------------- groups


def bench_generation(b, s: SpeedSettings) -> tuple[dict, list[str]]:
    """Rows per generate call, log-prob paths, dtypes; equal maths checked (same ids, same log-probs)."""
    from aplkit.generation import sample

    model = b.models.policy.eval()
    xs = b.prompts(s.gen_prompts, offset=256)
    kw = {"temperature": s.temperature, "max_new_tokens": s.max_new_tokens}
    res: dict[str, Any] = {"prompts": len(xs), "n": 2, "rows_total": 2 * len(xs)}
    lines: list[str] = []

    # the local loop is aplkit's sample: identical ids at the same rows and seed
    mine = generate(model, b.tok, xs[:8], rows=s.rows[0], **kw)["ids"]
    theirs = [x.ids for row in sample(model, b.tok, xs[:8], n=2, batch_size=s.rows[0], seed=0, **kw) for x in row]
    res["same_ids_as_aplkit_sample"] = mine == theirs

    today = f"rows {s.rows[0]}"
    runs = {f"rows {r}": timed(lambda r=r: generate(model, b.tok, xs, rows=r, **kw)) for r in s.rows}
    runs = interleaved_runs(runs, s.repeats)
    res["rows"] = {"table": _ratios(runs, today), "runs": runs}
    lines += _lines(
        "gen rows", res["rows"]["table"], today, note=f"{len(xs)} prompts × 2, ≤{s.max_new_tokens} new tokens, T {s.temperature}, fp32"
    )

    # log-probs: old output_scores vs the processor, equal maths first
    old = generate(model, b.tok, xs[:16], rows=s.rows[0], logprobs="old", **kw)
    new = generate(model, b.tok, xs[:16], rows=s.rows[0], logprobs="new", **kw)
    diff = max(abs(a - c) for a, c in zip(old["logprobs"], new["logprobs"], strict=True))
    res["logprobs_equal_maths"] = {"same_ids": old["ids"] == new["ids"], "max_abs_logprob_diff": diff}
    big = s.big_rows
    variants = {
        f"old output_scores, {s.rows[0]}": lambda: generate(model, b.tok, xs, rows=s.rows[0], logprobs="old", **kw),
        f"new _Tempered, {s.rows[0]}": lambda: generate(model, b.tok, xs, rows=s.rows[0], logprobs="new", **kw),
        f"old output_scores, {big}": lambda: generate(model, b.tok, xs, rows=big, logprobs="old", **kw),
        f"new _Tempered, {big}": lambda: generate(model, b.tok, xs, rows=big, logprobs="new", **kw),
        f"no log-probs, {big}": lambda: generate(model, b.tok, xs, rows=big, **kw),
    }
    today_lp = f"old output_scores, {s.rows[0]}"
    runs = interleaved_runs({k: timed(v) for k, v in variants.items()}, s.repeats)
    res["logprobs"] = {"table": _ratios(runs, today_lp), "runs": runs}
    lines += _lines(
        "gen lp",
        res["logprobs"]["table"],
        today_lp,
        note=f"same ids old/new: {old['ids'] == new['ids']}; |Δ log p| ≤ {diff:.1e}",
    )

    # dtypes at the new rows
    wb = bf16_weights(model)
    ab = bf16_autocast(model)
    for m in (wb, ab):  # first bf16 kernels are built on first use
        generate(m, b.tok, xs[:2], rows=4, max_new_tokens=2)
    variants = {
        f"fp32, {big}": lambda: generate(model, b.tok, xs, rows=big, **kw),
        f"bf16 autocast, {big}": lambda: generate(ab, b.tok, xs, rows=big, **kw),
        f"bf16 weights, {big}": lambda: generate(wb, b.tok, xs, rows=big, **kw),
    }
    runs = interleaved_runs({k: timed(v) for k, v in variants.items()}, s.repeats)
    res["dtype"] = {"table": _ratios(runs, f"fp32, {big}"), "runs": runs}
    lines += _lines("gen dtype", res["dtype"]["table"], f"fp32, {big}")
    return res, lines


def interleaved_runs(fns: dict[str, Callable[[], dict]], repeats: int, warmup: bool = False) -> dict[str, list[dict]]:
    """``bench.compute.interleaved``; no warm-up round by default: ``compute.main`` has warmed generation and scoring."""
    from bench.compute import interleaved

    return interleaved(fns, repeats, warmup=warmup)


def profile_decode(b, s: SpeedSettings, probe_flops: float) -> tuple[dict, list[str]]:
    """One decode step at ``big_rows``: where the time goes, and the tokens/s ceiling the matmul rate allows.

    The step is timed three ways: a whole ``generate`` step (forced to run every step), the model's
    forward alone on one new token with a KV cache, and the sampling maths alone (softmax +
    multinomial over [rows, V]); a profiler splits the forward into linear layers, attention and the rest.
    """
    from transformers import LogitsProcessorList

    from aplkit.generation import _generation_config, _Tempered

    model = b.models.policy.eval()
    rows = s.big_rows
    xs = b.prompts(rows // 2, offset=512)
    enc = b.tok(xs, return_tensors="pt", padding=True, padding_side="left")
    steps = s.profile_steps

    def gen_seconds(k: int) -> float:
        cfg = _generation_config(k, b.tok.pad_token_id, b.tok.eos_token_id)
        cfg.min_new_tokens = k  # every row runs every step
        torch.manual_seed(0)
        t0 = time.perf_counter()
        with torch.no_grad():
            model.generate(
                **enc, generation_config=cfg, num_return_sequences=2, logits_processor=LogitsProcessorList([_Tempered(0.7, False)])
            )
        return time.perf_counter() - t0

    gen_seconds(2)  # warm
    t1 = statistics.median(gen_seconds(1) for _ in range(3))
    tk = statistics.median(gen_seconds(steps + 1) for _ in range(2))
    per_step = (tk - t1) / steps

    ids = enc["input_ids"].repeat_interleave(2, 0)
    mask = enc["attention_mask"].repeat_interleave(2, 0)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, use_cache=True)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        mask1 = torch.cat([mask, torch.ones_like(nxt)], 1)
        pkv = out.past_key_values

        def decode() -> torch.Tensor:
            c = copy.deepcopy(pkv)  # the cache grows in place; each timed step starts from the same one
            t0 = time.perf_counter()
            o = model(input_ids=nxt, attention_mask=mask1, past_key_values=c, use_cache=True, logits_to_keep=1)
            return time.perf_counter() - t0, o.logits[:, -1]

        decode()
        fwd = statistics.median(decode()[0] for _ in range(5))
        logits = decode()[1]

        def sampling() -> float:
            t0 = time.perf_counter()
            p = F.softmax(logits.float() / 0.7, dim=-1)
            torch.multinomial(p, 1)
            return time.perf_counter() - t0

        samp = statistics.median(sampling() for _ in range(5))

        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                c = copy.deepcopy(pkv)
                model(input_ids=nxt, attention_mask=mask1, past_key_values=c, use_cache=True, logits_to_keep=1)
    cats = {"linear (matmul)": 0.0, "attention": 0.0, "other": 0.0}
    for ev in prof.key_averages():
        name, us = ev.key, ev.self_cpu_time_total
        if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"):
            cats["linear (matmul)"] += us
        elif "attention" in name or "softmax" in name:
            cats["attention"] += us
        else:  # norms, activations, rotary embeddings, cache copies, dispatch
            cats["other"] += us
    total = sum(cats.values()) or 1.0
    share = {k: v / total for k, v in cats.items()}
    n = b.n_params()
    step_flops = 2 * n * rows  # one token per row through every weight (the tied embedding as the output head)
    matmul_s = share["linear (matmul)"] * fwd
    res = {
        "rows": rows,
        "generate_step_seconds": per_step,
        "forward_step_seconds": fwd,
        "sampling_seconds": samp,
        "overhead_seconds": per_step - fwd - samp,
        "forward_share": share,
        "matmul_flops_per_s": step_flops / matmul_s if matmul_s else None,
        "probe_flops_per_s": probe_flops,
        "tokens_per_s_generate_step": rows / per_step,
        "tokens_per_s_ceiling_at_probe": probe_flops / (2 * n),
    }
    lines = [
        f"profile     decode step at {rows} rows: generate {per_step * 1e3:.0f} ms = forward {fwd * 1e3:.0f} ms "
        f"(linear {share['linear (matmul)']:.0%}, attention {share['attention']:.0%}, other {share['other']:.0%}) "
        f"+ sampling {samp * 1e3:.1f} ms + loop {res['overhead_seconds'] * 1e3:.0f} ms",
        f"profile     {rows / per_step:.0f} tok/s in steady decode; linear layers at {res['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s "
        f"vs probe {probe_flops / 1e9:.0f} GFLOP/s: ceiling {res['tokens_per_s_ceiling_at_probe']:.0f} tok/s at 2·N FLOPs per token",
    ]
    return res, lines


# --------------------------------------------------------------------------- static cache and torch.compile, in a child


def cache_worker(out_path: str, prompts: int, rows: int, repeats: int, max_new: int) -> int:
    """Child side: dynamic vs static cache vs static + compile, all prompts padded to one length; JSON after each phase."""
    from transformers import CompileConfig
    from transformers.utils import logging as hf_logging

    from aplkit.config import DataConfig
    from aplkit.data import load_pools
    from aplkit.models import load_models

    hf_logging.set_verbosity_error()
    m = load_models("smollm2-135m", device="cpu", dtype="float32")
    tok = m.tokenizer
    xs = [p.text for p in load_pools(DataConfig(), tok).train[256 : 256 + prompts]]
    pad_to = max(len(t) for t in tok(xs)["input_ids"])
    model = m.policy.eval()
    res: dict[str, Any] = {"pad_to": pad_to, "rows": rows, "prompts": len(xs)}

    def save() -> None:
        Path(out_path).write_text(json.dumps(res, default=float))

    kw = {"rows": rows, "max_new_tokens": max_new, "pad_to": pad_to}
    variants = {
        "dynamic cache": timed(lambda: generate(model, tok, xs, **kw)),
        "static cache": timed(lambda: generate(model, tok, xs, cache_implementation="static", **kw)),
    }
    res["runs"] = interleaved_runs(variants, repeats)
    save()
    cc = CompileConfig(mode="default", fullgraph=False, dynamic=None)
    cc._compile_all_devices = True  # generate compiles only on accelerators unless told
    comp = timed(lambda: generate(model, tok, xs, cache_implementation="static", compile_config=cc, **kw))
    res["compile_started"] = True
    save()
    t0 = time.perf_counter()
    first = comp()
    res["compile_first_call_seconds"] = time.perf_counter() - t0
    save()
    variants["static + compile"] = comp
    res["runs"] = interleaved_runs(variants, repeats)
    res["first_call"] = first
    save()
    return 0


def bench_cache(s: SpeedSettings) -> tuple[dict, list[str]]:
    from bench.memory import run_child

    with tempfile.TemporaryDirectory(prefix="bench_cache_") as d:
        path = Path(d) / "cache.json"
        cmd = [
            sys.executable,
            "-m",
            "bench.speed",
            "--cache-worker",
            str(path),
            str(s.gen_prompts),
            str(s.big_rows),
            str(s.repeats),
            str(s.max_new_tokens),
        ]
        child = run_child(cmd, timeout=s.compile_limit_s + 240)
        res = json.loads(path.read_text()) if path.exists() else {}
    res["child"] = {k: child[k] for k in ("seconds", "rc", "last_line", "peak_rss_mb")}
    lines = []
    if "runs" in res:
        table = _ratios(res["runs"], "dynamic cache")
        res["table"] = table
        lines += _lines(
            "gen cache",
            table,
            "dynamic cache",
            note=f"{res['prompts']} prompts × 2, rows {res['rows']}, prompts left-padded to {res['pad_to']} tokens",
        )
    if "compile_first_call_seconds" in res:
        steady = res["table"].get("static + compile", {}).get("tokens_per_s")
        first = res["first_call"]
        comp_s = first["seconds"] - first["units"] / steady if steady else float("nan")
        res["compile_seconds_estimate"] = comp_s
        lines.append(f"gen cache   torch.compile: first call {res['compile_first_call_seconds']:.0f}s, of which ≈ {comp_s:.0f}s compiling")
    elif res.get("compile_started"):
        lines.append(
            f"gen cache   torch.compile did not finish within {s.compile_limit_s + 240:.0f}s (child rc {child['rc']}): {child['last_line'][:160]}"
        )
    elif child["rc"] != 0:
        lines.append(f"gen cache   child failed (rc {child['rc']}): {child['last_line'][:200]}")
    return res, lines


# --------------------------------------------------------------------------- acquisition throughput


@contextlib.contextmanager
def scored_policy() -> Iterator[None]:
    """The policy's log-probs by a scoring forward pass, as before they were recorded by the sampler."""
    from aplkit import acquisition

    orig = acquisition.ScoringContext.sampled_logprobs
    acquisition.ScoringContext.sampled_logprobs = lambda self: False
    try:
        yield
    finally:
        acquisition.ScoringContext.sampled_logprobs = orig


@contextlib.contextmanager
def old_generation_path() -> Iterator[None]:
    """ScoringContext.generate through the pre-78f0674 output_scores path (same ids, same maths)."""
    from aplkit import acquisition
    from aplkit.generation import Sample

    orig = acquisition.ScoringContext.generate

    def gen(self, prompts, n, seed_offset=0, with_logprobs=False):
        r = generate(
            self.policy,
            self.tokenizer,
            list(prompts),
            rows=self.acq.batch_size,
            n=n,
            temperature=self.acq.temperature,
            max_new_tokens=self.acq.max_new_tokens,
            seed=self.seed + seed_offset,
            logprobs="old" if with_logprobs else None,
        )
        text = self.tokenizer.batch_decode(r["ids"], skip_special_tokens=True)
        lps = r["logprobs"] or [None] * len(text)
        flat = [Sample(t, i, lp, self.tokenizer.eos_token_id) for t, i, lp in zip(text, r["ids"], lps, strict=True)]
        return [flat[k * n : (k + 1) * n] for k in range(len(prompts))]

    acquisition.ScoringContext.generate = gen
    try:
        yield
    finally:
        acquisition.ScoringContext.generate = orig


def bench_acquisition(b, s: SpeedSettings) -> tuple[dict, list[str]]:
    """Certainty (a pair per prompt + r̂ of both, policy and θ0) and entropy (N samples + log-probs) per step."""
    import numpy as np

    from aplkit.acquisition import CertaintyScorer, EntropyScorer, ScoringContext
    from aplkit.config import AcquisitionConfig
    from aplkit.records import Prompt

    prompts = [Prompt(id=f"speed-{i}", text=x) for i, x in enumerate(b.prompts(s.acq_prompts, offset=768))]
    res: dict[str, Any] = {"prompts": len(prompts)}
    lines: list[str] = []

    def ctx(batch: int) -> ScoringContext:
        acq = AcquisitionConfig(
            batch_size=batch, entropy_samples=s.entropy_samples, temperature=s.temperature, max_new_tokens=s.max_new_tokens
        )
        # at_theta0=False: the work of every step after the first (θ_t ≠ θ0), whatever the weights hold
        return ScoringContext(policy=b.models.policy.eval(), reference=b.reference, tokenizer=b.tok, acq=acq, beta=0.2, seed=0)

    def run(scorer, batch: int, old: bool) -> Callable[[], dict]:
        def f() -> dict:
            c = ctx(batch)
            with contextlib.ExitStack() as stack:
                if old:  # today: the output_scores sampler (it records no policy log-probs) and a policy scoring pass
                    stack.enter_context(old_generation_path())
                    stack.enter_context(scored_policy())
                t0 = time.perf_counter()
                cands = scorer.propose(c, prompts)
                scores = scorer.score(c, cands)
                sec = time.perf_counter() - t0
            return {"seconds": sec, "units": len(prompts), "score_sum": float(np.sum(scores))}

        return f

    big = s.big_rows
    for name, scorer in (("certainty", CertaintyScorer()), ("entropy", EntropyScorer())):
        today = f"batch {s.rows[0]}, today"
        fns = {
            today: run(scorer, s.rows[0], True),
            f"batch {s.rows[0]}, new": run(scorer, s.rows[0], False),
            f"batch {big}, new": run(scorer, big, False),
        }
        runs = interleaved_runs(fns, s.repeats)
        table = _ratios(runs, today)
        res[name] = {"table": table, "runs": runs}
        note = (
            "a pair per prompt + r̂; today: policy and θ0 passes, new: θ0 pass, policy log-probs from the sampler"
            if name == "certainty"
            else f"N={s.entropy_samples} samples + their log-probs; today: output_scores path"
        )
        lines += _lines(f"acq {name[:7]}", table, today, unit="prompts/s", note=f"{len(prompts)} prompts: {note}")
    return res, lines


def bench_evaluation(b, s: SpeedSettings) -> tuple[dict, list[str]]:
    """The evaluation's KL from θ0: sampling then ``completion_kl`` (both models) vs ``sample(kl_reference=)`` (θ0 only)."""
    from aplkit.generation import completion_kl, prompt_ids, sample

    policy = copy.deepcopy(b.models.policy).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # a policy that has moved from θ0, so the KL compared is not ≈ 0
        for w in policy.parameters():
            w.add_(torch.randn_like(w) * 0.02 * w.std())
    xs = b.prompts(s.gen_prompts, offset=1024)
    kw = {"n": 1, "temperature": 0.25, "max_new_tokens": s.max_new_tokens, "batch_size": s.big_rows, "seed": 0}
    pad = b.tok.pad_token_id

    def before() -> dict:
        t0 = time.perf_counter()
        ids = [r[0].ids for r in sample(policy, b.tok, xs, **kw)]
        kl = completion_kl(policy, b.reference, prompt_ids(b.tok, xs), ids, pad, s.big_rows)
        return {"seconds": time.perf_counter() - t0, "units": len(xs), "ids": ids, "kl": kl.tolist()}

    def after() -> dict:
        t0 = time.perf_counter()
        out = [r[0] for r in sample(policy, b.tok, xs, kl_reference=b.reference, **kw)]
        return {"seconds": time.perf_counter() - t0, "units": len(xs), "ids": [x.ids for x in out], "kl": [x.kl for x in out]}

    old, new = before(), after()
    rel = max(abs(a - c) / max(abs(a), 1e-9) for a, c in zip(old["kl"], new["kl"], strict=True))
    res: dict[str, Any] = {"prompts": len(xs), "same_ids": old["ids"] == new["ids"], "max_rel_kl_diff": rel}
    today = "sample + completion_kl"
    runs = interleaved_runs({today: timed(before), "sample(kl_reference)": timed(after)}, s.repeats)
    res["table"], res["runs"] = _ratios(runs, today), runs
    note = f"{len(xs)} test prompts, T 0.25, {s.big_rows} rows; same ids: {res['same_ids']}; KL |Δ|/KL ≤ {rel:.1e}"
    return res, _lines("eval kl", res["table"], today, unit="prompts/s", note=note)


# --------------------------------------------------------------------------- DPO: LoRA vs full


def dpo_worker(pairs_path: str, lora: bool) -> int:
    """Child side: peak RSS of one DPO epoch, full or LoRA, on the pairs in ``pairs_path``."""
    from aplkit.config import LoraConfig, TrainingConfig
    from aplkit.models import load_models
    from aplkit.objectives.dpo import DPOFinetuner, apply_lora
    from aplkit.records import Preference
    from bench.memory import current_rss_mb, peak_rss_mb

    m = load_models("smollm2-135m", device="cpu", dtype="float32")
    prefs = [Preference(*p) for p in json.loads(Path(pairs_path).read_text())]
    cfg = TrainingConfig(epochs=1, batch_size=8, beta=0.2, lr=3e-5, lora=LoraConfig(enabled=lora))
    policy = apply_lora(m.policy, cfg)
    ft = DPOFinetuner(policy, m.reference, m.tokenizer, cfg)
    from aplkit.objectives.dpo import make_batch

    _, p_ids, c_ids = make_batch(m.tokenizer, prefs)
    ft.ref.get(p_ids, c_ids)
    before = current_rss_mb()
    base_peak = peak_rss_mb()
    t0 = time.perf_counter()
    ft.finetune(prefs, seed=0)
    out = {"before_mb": before, "peak_before_mb": base_peak, "epoch_seconds": time.perf_counter() - t0, "peak_mb": peak_rss_mb()}
    print(json.dumps(out))
    return 0


def bench_dpo_lora(b, s: SpeedSettings) -> tuple[dict, list[str]]:
    from aplkit.config import LoraConfig, TrainingConfig
    from aplkit.objectives.dpo import DPOFinetuner, apply_lora, make_batch
    from bench.compute import dpo_prefs
    from bench.memory import run_child

    prefs = dpo_prefs(b, s.dpo_pairs)
    res: dict[str, Any] = {"pairs": len(prefs)}
    tuners = {}
    for name, lora in (("full", False), ("lora", True)):
        cfg = TrainingConfig(mode="reset", optimizer="adam", lr=3e-5, epochs=1, batch_size=8, beta=0.2, lora=LoraConfig(enabled=lora))
        policy = apply_lora(b.fresh_policy(), cfg)
        ft = DPOFinetuner(policy, b.reference, b.tok, cfg)
        _, p_ids, c_ids = make_batch(b.tok, prefs)
        ft.ref.get(p_ids, c_ids)  # reference log-probs are cached once per run either way: time the training epoch
        trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
        tuners[name] = ft
        res[f"{name}_trainable_params"] = trainable

    def run(name: str) -> Callable[[], dict]:
        def f() -> dict:
            t0 = time.perf_counter()
            st = tuners[name].finetune(prefs, seed=0)
            return {"seconds": time.perf_counter() - t0, "units": len(prefs), "loss": st[-1].loss}

        return f

    runs = interleaved_runs({"full": run("full"), "lora": run("lora")}, s.repeats, warmup=True)  # first backward of each
    from bench.compute import med

    table = {
        k: {"tokens_per_s": len(prefs) / med(v), "ratio": med(runs["full"]) / med(v), "epoch_seconds": med(v)} for k, v in runs.items()
    }
    res.update(table=table, runs=runs)
    tuners.clear()  # free the two models' optimiser state before the memory children
    with tempfile.TemporaryDirectory(prefix="bench_lora_") as d:
        path = Path(d) / "pairs.json"
        path.write_text(json.dumps([[p.prompt, p.chosen, p.rejected] for p in prefs]))
        for name in ("full", "lora"):
            cmd = [sys.executable, "-m", "bench.speed", "--dpo-worker", str(path)] + (["--lora"] if name == "lora" else [])
            child = run_child(cmd, timeout=600)
            try:
                res[f"{name}_memory"] = json.loads(child["last_line"])
            except json.JSONDecodeError:
                res[f"{name}_memory"] = {"error": child["last_line"][:200], "rc": child["rc"]}
    lines = []
    for k, v in table.items():
        mem = res.get(f"{k}_memory", {})
        grow = f", peak RSS +{mem['peak_mb'] - mem['before_mb']:.0f} MiB over {mem['before_mb']:.0f}" if "peak_mb" in mem else ""
        lines.append(
            f"dpo {k:<7} {v['epoch_seconds']:6.1f} s/epoch ({len(prefs)} pairs, bs 8) ratio {v['ratio']:5.2f}x"
            f"{' (today)' if k == 'full' else ''}; trainable {res[f'{k}_trainable_params'] / 1e6:.2f}M{grow}"
        )
    return res, lines


# --------------------------------------------------------------------------- the section


def bench_speed(
    b, quick: bool, probe_flops: float | None = None, checkpoint: Callable[[dict, list[str]], None] | None = None
) -> tuple[dict, list[str]]:
    """All groups; each failing group is recorded and the others still run; ``checkpoint`` saves after each."""
    from bench.compute import matmul_probe

    s = QUICK if quick else FULL
    res: dict[str, Any] = {"settings": s.__dict__}
    lines: list[str] = []
    if probe_flops is None:
        probe = matmul_probe((1024, 2048), 3)
        res["probe"] = probe
        probe_flops = probe["peak_flops_per_s"]
    groups: list[tuple[str, Callable[[], tuple[dict, list[str]]]]] = [
        ("generation", lambda: bench_generation(b, s)),
        ("profile", lambda: profile_decode(b, s, probe_flops)),
        ("acquisition", lambda: bench_acquisition(b, s)),
        ("evaluation", lambda: bench_evaluation(b, s)),
        ("dpo_lora", lambda: bench_dpo_lora(b, s)),
        ("cache", lambda: bench_cache(s)),
    ]
    only = {x for x in os.environ.get("BENCH_SPEED_GROUPS", "").split(",") if x}
    for name, fn in groups:
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        try:
            r, ls = fn()
        except Exception as e:  # noqa: BLE001 - one broken group must not lose the others' figures
            r, ls = {"error": f"{type(e).__name__}: {e}"}, [f"speed       {name} FAILED: {type(e).__name__}: {str(e)[:200]}"]
        r["seconds"] = time.perf_counter() - t0
        r["loadavg"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
        res[name] = r
        lines += ls
        if checkpoint:
            checkpoint(res, lines)
    return res, lines


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--cache-worker"]:
        path, prompts, rows, repeats, max_new = argv[1:6]
        return cache_worker(path, int(prompts), int(rows), int(repeats), int(max_new))
    if argv[:1] == ["--dpo-worker"]:
        return dpo_worker(argv[1], "--lora" in argv)
    print("bench.speed is run by `python -m bench compute --only speed [--quick]`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
