"""The PHF grid: objectives × seeds of ``aplkit phf``, resumable across machines through committed rows.

Each finished run leaves its compact rows (config, ``phf_eval``, ``phf_train``, summary, the code of
each start; no samples, segments or checkpoints) in ``bench/results/phf/<objective>/seed<k>/``. A
planned run whose rows are there, complete and of the same config, is not run again, so a fresh clone
continues the grid; ``--report-only`` rebuilds ``figures/phf_*`` from the rows alone (``aplkit
phf-report``). Two shards with ``OMP_NUM_THREADS=1`` use both cores, as ``bench labels`` does.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from bench.labels import parse_seeds, plan, shard
from bench.provenance import ROOT, commit_file

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
    p.add_argument("--commit", action="store_true", help="git-commit each run's rows alone as they land")
    return p.parse_args(argv)


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
    from aplkit.errors import ConfigError, RunFolderBusy
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
    if not args.report_only:
        from aplkit.phf.experiment import run_phf

        mine = set(shard(planned, args.shard))
        for i, ((o, k), cfg) in enumerate(configs.items(), 1):
            if (o, k) not in mine:
                continue
            folder = records / o / f"seed{k}"
            if recorded(folder, cfg):
                print(f"[{i}/{len(planned)}] {o} seed {k}: recorded in {folder}, skipped", flush=True)
                continue
            t = time.perf_counter()
            try:
                s = run_phf(cfg, Path(args.out) / o / f"seed{k}", progress=False)
            except RunFolderBusy as e:  # another process (an overlapping shard) runs it and will record it
                print(f"[{i}/{len(planned)}] {o} seed {k}: skipped: {e}", flush=True)
                continue
            keep(Path(args.out) / o / f"seed{k}", folder)
            f = s.get("final", {})
            line = f"misalignment {f.get('misalignment', float('nan')):.3f} lm_loss {f.get('lm_loss', float('nan')):.3f}"
            secs = time.perf_counter() - t
            ok = args.commit and commit_file(folder, f"PHF rows {cfg.name}: {o} seed {k} ({line}; {secs:.0f} s this invocation)")
            print(f"[{i}/{len(planned)}] {o} seed {k}: {line} ({secs:.0f}s) → {folder}" + (" (committed)" if ok else ""), flush=True)
    from aplkit.results.phf import phf_report

    for name, p in phf_report(records, args.figures).items():
        print(f"{name:18} {p}")
    return 0
