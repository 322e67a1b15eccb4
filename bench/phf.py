"""The PHF grid: objectives × seeds of ``aplkit phf``, resumable across machines through committed rows.

Each finished run leaves its compact rows (config, ``phf_eval``, ``phf_train``, summary, the code of
each start; no samples, segments or checkpoints) in ``bench/results/phf/<objective>/seed<k>/``. A
planned run whose rows are there, complete and of the same config, is not run again, so a fresh clone
continues the grid; ``--report-only`` rebuilds ``figures/phf_*`` from the rows alone (``aplkit
phf-report``). Two shards with ``OMP_NUM_THREADS=1`` use both cores, as ``bench labels`` does; an invocation that
runs writes the report only when every planned run is recorded (the shard that ends first says how many are in),
and ``--report-only`` is refused in one line until then. ``--stop-by HH:MM`` starts no run that its objective's
rows say would end after it. ``--seed-count`` prints the seed count the planned seeds'
spread gives and writes no report: choosing n reads no difference between objectives.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.labels import before_reading, parse_seeds, parse_stop_by, plan, shard_labels, study_grid, study_runs
from bench.provenance import ROOT, commit_file

if TYPE_CHECKING:
    from aplkit.executors import Ended
    from aplkit.sweep import Run

OBJECTIVES = ("mle", "filtering", "conditional", "unlikelihood", "rwr", "awr")
KEEP = ("config.yaml", "phf_eval.jsonl", "phf_train.jsonl", "summary.json", "code.jsonl")
RECORDS = ROOT / "bench" / "results" / "phf"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench phf", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="phf-imdb-cpu")
    p.add_argument("--objectives", default=",".join(OBJECTIVES), help="comma-separated (default: all six)")
    p.add_argument("--seeds", type=parse_seeds, default="6", help="K (seeds 0..K-1), A-B or a,b,c (default 6)")
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE override, as in aplkit phf")
    p.add_argument("--records", default=str(RECORDS), help="where the compact rows live (default bench/results/phf)")
    p.add_argument("--out", default="runs/phf-imdb-cpu", help="run folders (not committed; resumed)")
    p.add_argument("--figures", default="figures", help="where phf-report writes (default figures/)")
    p.add_argument("--shard", default="0/1", help="I/N: every N-th planned run from the I-th")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--pool-strata", action="store_true", help="pool paired seeds of different code versions or CPUs (refused otherwise)")
    p.add_argument("--commit", action="store_true", help="git-commit each run's rows alone as they land")
    p.add_argument("--stop-by", default=None, metavar="TIME", help="as bench labels --stop-by (estimates from the objective's own rows)")
    p.add_argument(
        "--seed-count", action="store_true", help="print the seeds a ±0.03 misalignment half-width needs (5–12), and write no report"
    )
    return p.parse_args(argv)


def seed_count(df, half_width: float = 0.03, low: int = 5, high: int = 12) -> tuple[float, int]:
    """The grid's seed count from its first seeds' spread alone (bench/README.md, the from-scratch grid's plan).

    s is the largest sample SD, over the objectives, of the paired difference objective − MLE in misalignment at
    the last checkpoint; n the smallest count in ``low``…``high`` whose plain paired-t half-width t₀.₉₇₅,ₙ₋₁ · s / √n
    is at most ``half_width`` (``high`` if none). ``df`` is ``aplkit.results.phf.load_phf``'s table.
    """
    from scipy import stats

    from aplkit.results.phf import last_checkpoints

    last = last_checkpoints(df).set_index(["objective", "seed"])["misalignment"]
    base = last.loc["mle"]
    sds = []
    for o in sorted(set(last.index.get_level_values(0)) - {"mle"}):
        mine = last.loc[o]
        seeds = sorted(set(mine.index) & set(base.index))
        if len(seeds) > 1:
            sds.append(float((mine.loc[seeds] - base.loc[seeds]).astype(float).std(ddof=1)))
    if not sds:
        raise SystemExit("--seed-count: needs two seeds of MLE and of another objective")
    s = max(sds)
    n = next((k for k in range(low, high + 1) if stats.t.ppf(0.975, k - 1) * s / k**0.5 <= half_width), high)
    return s, n


def recorded(folder: Path, cfg) -> bool:
    """The rows of this exact run are in ``folder``: complete, and made with the same config."""
    import json

    import yaml

    from aplkit.config import config_diffs
    from aplkit.phf.config import PHFConfig

    if not (folder / "summary.json").exists() or not (folder / "config.yaml").exists():
        return False
    done = json.loads((folder / "summary.json").read_text()).get("complete")
    old = yaml.safe_load((folder / "config.yaml").read_text())
    return bool(done) and not config_diffs(old, cfg.to_dict(), ("out",), PHFConfig().to_dict())


def keep(run: Path, folder: Path) -> Path:
    """Copy a run folder's compact rows to ``folder`` (replacing what was there)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in KEEP:
        if (run / name).exists():
            shutil.copyfile(run / name, folder / name)
    return folder


def main(argv: list[str] | None = None) -> int:
    from aplkit.errors import ConfigError
    from aplkit.phf.config import load_phf_config

    args = parse(argv or [])
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or not objectives:
        raise SystemExit(f"--objectives: expected some of {', '.join(OBJECTIVES)}, got {args.objectives!r}")
    planned = plan(objectives, args.seeds)
    try:
        configs = {(o, k): load_phf_config(args.config, args.set, objective=o, seed=k) for o, k in planned}
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    records = Path(args.records)
    failed = False
    if not args.report_only:
        stop_by = parse_stop_by(args.stop_by)
        runs = study_runs(configs, Path(args.out))
        ran = study_grid(
            runs,
            shard_labels(runs, args.shard),
            Path(args.out),
            lambda r: records / r.strategy / f"seed{r.seed}",
            recorded,
            land(args.commit),
            stop_by=stop_by,
        )
        failed = bool(ran["failed"])
    early = before_reading(configs, records, where=lambda root, o, k: root / o / f"seed{k}", is_recorded=recorded)
    if early and not args.report_only:  # a shard that ends first writes no reading of part of the grid
        print(f"no report yet: {early}")
        return 1 if failed else 0
    if early:
        raise SystemExit(f"bench phf: {early}")
    if args.seed_count:  # the spread alone: no table of differences is written or printed
        from aplkit.results.phf import load_phf

        df = load_phf(records)
        df = df[[(o, k) in configs for o, k in zip(df["objective"], df["seed"], strict=True)]]
        s, n = seed_count(df)
        print(f"seed count: largest SD of objective − MLE misalignment {s:.4f} → {n} seeds for a ±0.03 paired-t half-width")
        return 1 if failed else 0
    from aplkit.results.phf import phf_report

    try:
        paths = phf_report(records, args.figures, pool_strata=args.pool_strata, planned=set(configs))
    except ConfigError as e:  # several strata, not asked to pool
        raise SystemExit(f"bench phf: {e}") from None
    for name, p in paths.items():
        print(f"{name:18} {p}")
    return 1 if failed else 0


def land(commit: bool) -> Callable[[Run, Ended, Path], str]:
    """What the grid keeps of a finished run: its compact rows (``keep``), committed alone when ``commit``; the line saying so."""

    def keep_rows(run: Run, ended: Ended, folder: Path) -> str:
        keep(run.out, folder)
        f = ended.result.get("final", {})
        line = f"misalignment {f.get('misalignment', float('nan')):.3f} lm_loss {f.get('lm_loss', float('nan')):.3f}"
        cfg = run.config
        ok = commit and commit_file(
            folder, f"PHF rows {cfg.name}: {cfg.objective} seed {cfg.seed} ({line}; {ended.seconds:.0f} s this invocation)"
        )
        return f"{line} ({ended.seconds:.0f}s) → {folder}" + (" (committed)" if ok else "")

    return keep_rows
