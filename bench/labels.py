"""Label efficiency: does active acquisition reach a win-rate with fewer oracle labels than random?

Runs every strategy over K seeds on one config (default: the CPU preset), through the sweep's driver
(``aplkit.sweep.run_grid``, in process; ``study_grid`` here adds what a study keeps). Each run is a normal
resumable run folder under ``--out``; when it finishes, its compact record (``bench.archive``:
config, eval/train/step rows, per-pair ranking and label; no texts, weights or ledgers) is written to
``--records`` — commit those. A planned run whose record is already in the repository is not run
again, so a study continues on a fresh clone where the last invocation stopped, and ``--report-only``
rebuilds every table and figure from the records alone. A plan is read once: an invocation that runs prints the
report only when every planned run is recorded (a shard that ends first says how many are in), and
``--report-only --seeds`` with a planned run missing is refused unless the complete seeds are one of the declared
``--looks`` or ``--interim`` marks the report as not the plan's reading.

The summary (``summarise``; every number comes from ``aplkit.results``): Table 2; beside every win-rate its
companions (soft win-rate, reward gap, KL from θ0, LM loss); paired differences from random with t and
bootstrap intervals, on the win-rate and again on the lower-variance soft win-rate and reward gap (and, for a
pool-based run, its held-out preference accuracy and margin); Holm-adjusted tests; data efficiency with a bootstrap
interval; Fig 3 as a number; acquisition cost; and the paper's four findings with a verdict each (``bench.findings``).
A study whose plan names another primary endpoint (``--endpoint heldout_accuracy``: a pool-based study's) reads the
headline comparison in it — the intervals, the power and decision lines, the paired tests and the ranking's Holm
family — and the win-rate beside the other metrics.

    python -m bench labels                       # defaults: imdb-cpu, 4 strategies x 9 seeds (the paper's count)
    python -m bench labels --seeds 3             # a quicker look: seeds 0..2 (their records are the 9-seed study's)
    python -m bench labels --report-only         # tables and figures from bench/results/labels/imdb-cpu/
    python -m bench labels --config imdb --out runs/bench-labels-gpu   # the paper's protocol on a GPU
    python -m bench labels --import my_scorers.py --strategies random,certainty,dpo-weight   # your own scorer beside the paper's
    kill -USR1 PID                               # pause: the study stops after its current step; the same command continues
    python -m bench labels --stop-by 21:10       # start no run that its strategy's records say would end after 21:10
    python -m bench labels --config imdb-cpu-pool --endpoint heldout_accuracy --report-only   # a pool study's endpoint
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

from aplkit.executors import Ended
from aplkit.sweep import CELL_LOG, Run, StopGrid
from bench.provenance import commit_file, machine

PAPER = ("random", "certainty", "entropy", "entropy+certainty")


#: set by SIGUSR1 (``kill -USR1 PID``): the study stops after the current run's next finished step, nothing lost
PAUSE = threading.Event()


class Paused(StopGrid):
    """The study was asked to pause; every finished step is in its run folder and the same command continues."""


def pause_on_signal() -> None:
    """Free the machine for a while without losing a half-done step (an idle benchmark, another job)."""
    signal.signal(signal.SIGUSR1, lambda *_: PAUSE.set())


def _pause_after_step(res) -> None:
    if PAUSE.is_set():
        raise Paused(f"after step {res.step}")


#: what a metric not on the win-rate's scale is measured in, by the rows it is read from (``aplkit.metrics.Metric.row``)
UNITS = {"eval": "the oracle's units", "heldout": "β-scaled nats"}

#: the study is decided when the 95 % interval of certainty − random at the final budget is no wider than this
TARGET_HALF_WIDTH = 0.03


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench labels", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="imdb-cpu")
    p.add_argument("--strategies", default=",".join(PAPER), help="any registered scorers, comma-separated")
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module that registers scorers (dotted name importable from here, or a .py path), imported before the configs are checked; repeatable",
    )
    p.add_argument(
        "--seeds",
        type=parse_seeds,
        default=None,
        help="K (seeds 0..K-1), a range A-B (inclusive) or a list a,b,c; default the paper's 9 (0..8), "
        "with --report-only every seed recorded for the planned strategies (the committed report)",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="runs/bench-labels", help="run folders (not committed)")
    p.add_argument(
        "--records",
        default=None,
        help="compact records, committed (default bench/results/labels/<config name>, plus -<objective> when training.objective is not dpo)",
    )
    p.add_argument("--results", default=None, help="summary JSON (default <records>/summary.json)")
    p.add_argument("--figures", default=None, help="Fig 2/3 and tables (default <records>/figures)")
    p.add_argument("--report-only", action="store_true", help="only summarise the records already there")
    p.add_argument(
        "--interim",
        action="store_true",
        help="with --report-only and --seeds: read before every planned run is recorded, marked as not the plan's reading",
    )
    p.add_argument(
        "--endpoint",
        default="win_rate",
        metavar="FIELD",
        help="the metric of the headline comparison (the study plan's primary endpoint): win_rate, or another on its "
        "0–1 scale (heldout_accuracy: a pool-based study's held-out preference accuracy)",
    )
    p.add_argument(
        "--pool-strata",
        action="store_true",
        help="pool paired seeds of different code versions or CPUs (refused otherwise); each stratum's estimate is printed first",
    )
    p.add_argument(
        "--looks",
        type=parse_looks,
        default=None,
        metavar="N1,N2,...",
        help="the seed counts at which the study is read, declared before its runs (the last the maximum): "
        "beside each plain t interval at a look, Pocock's look-adjusted one",
    )
    p.add_argument(
        "--shard", default="0/1", help="I/N: run every N-th planned run from the I-th (two processes with OMP_NUM_THREADS=1 use both cores)"
    )
    p.add_argument("--commit", action="store_true", help="git-commit each record alone as it lands (a study that spans sessions)")
    p.add_argument(
        "--stop-by",
        default=None,
        metavar="TIME",
        help="HH:MM (its next occurrence, so 01:05 late at night means tomorrow) or an ISO date-time: start no run expected (from its strategy's records) to end after it; a shorter one may still start",
    )
    args = p.parse_args(argv)
    args.seeds_given = args.seeds is not None
    if not args.seeds_given:
        args.seeds = list(range(9))  # the paper's count
    return args


def recorded_seeds(records: Path, strategies: list[str]) -> list[int]:
    """Every seed with a record of any of ``strategies``: what ``--report-only`` reads when no ``--seeds`` is given."""
    found = {int(f.stem[4:]) for s in strategies for f in record_path(records, s, 0).parent.glob("seed*.json") if f.stem[4:].isdigit()}
    return sorted(found)


def parse_stop_by(text: str | None, now: datetime | None = None) -> datetime | None:
    """The local time after which no run may end; one line naming the flag when it is not a time or a date-time has passed."""
    if text is None:
        return None
    now = now or datetime.now()
    try:
        if len(text) <= 5 and ":" in text:
            h, m = (int(x) for x in text.split(":"))
            when = now.replace(hour=h, minute=m, second=0, microsecond=0)
            if when <= now:  # an end after midnight is named by the clock
                when += timedelta(days=1)
        else:
            when = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"--stop-by: expected HH:MM or an ISO date-time (2026-12-02T21:10), got {text!r}") from None
    if when.tzinfo is not None:
        when = when.astimezone().replace(tzinfo=None)
    if when <= now:
        raise SystemExit(f"--stop-by: {text} has passed (now {now:%Y-%m-%d %H:%M})")
    return when


def expected_seconds(records: Path, strategy: str, here: dict | None = None) -> tuple[float, str] | None:
    """How long a run of ``strategy`` takes: the median wall time of its complete records, those made on this kind of
    machine when there are any (a run folder does not outlive the machine it runs on, so a run that cannot end is time lost)."""
    from aplkit.provenance import start_machine
    from bench.archive import read_record

    here = here if here is not None else machine()
    mine, other = [], []
    for path in sorted((Path(records) / strategy.replace("+", "_")).glob("seed*")):
        head = read_record(path) if path.suffix == ".json" else _folder_head(path)
        secs = head["summary"].get("wall_seconds")
        if not head["summary"].get("complete") or not secs:
            continue
        made = start_machine((head.get("code") or [{}])[-1])
        same = bool(made) and all(made.get(k) == here.get(k) for k in ("cpu", "isa", "cores"))
        (mine if same else other).append(float(secs))

    def of(n: int) -> str:
        return "1 record" if n == 1 else f"median of {n} records"

    if mine:
        return median(mine), f"{of(len(mine))} made on this machine"
    if other:
        return median(other), f"{of(len(other))}, none made on this machine"
    return None


def _folder_head(folder: Path) -> dict:
    """A record kept as a folder of a run's rows (``bench phf``): its summary and code rows, as ``read_record``'s head."""
    from aplkit.runfolder import read_jsonl

    summary = folder / "summary.json"
    return {"summary": json.loads(summary.read_text()) if summary.exists() else {}, "code": list(read_jsonl(folder / "code.jsonl"))}


def too_late(
    records: Path, strategy: str, stop_by: datetime | None, now: datetime | None = None, fallback: Path | None = None
) -> str | None:
    """Why a run of ``strategy`` is not started before ``stop_by`` (None: start it). With no record of its own the
    estimate comes from ``fallback``'s (another study of the same preset), else from the slowest strategy recorded
    in ``records`` (a new rule, such as an arena scorer, does at least the work of the rules it is compared with
    and often more); with nothing recorded anywhere, it starts."""
    if stop_by is None:
        return None
    est = expected_seconds(records, strategy)
    if est is None and fallback is not None:
        est = expected_seconds(fallback, strategy)
        est = est and (est[0], est[1] + f", in {fallback}")
    if est is None:
        known = [(e, d.name) for d in sorted(Path(records).glob("*/")) if (e := expected_seconds(records, d.name))]
        if known:
            (secs, basis), name = max(known, key=lambda x: x[0][0])
            est = secs, f"none of its own: {name}'s, the slowest recorded, {basis}"
    if est is None:
        return None
    secs, basis = est
    end = (now or datetime.now()) + timedelta(seconds=secs)
    if end <= stop_by:
        return None
    return f"not started: ≈ {secs / 60:.0f} min ({basis}) would end at {end:%H:%M}, after --stop-by {stop_by:%H:%M}"


def parse_looks(text: str) -> list[int]:
    """``--looks``: the seed counts a study is read at, increasing (``20,26,30``)."""
    try:
        looks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        looks = []
    if not looks or looks[0] < 2 or any(b <= a for a, b in zip(looks, looks[1:], strict=False)):
        raise argparse.ArgumentTypeError(f"expected increasing seed counts of at least 2, comma-separated (20,26,30), got {text!r}")
    return looks


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``K`` is seeds 0..K−1, ``A-B`` the seeds A..B, ``a,b,c`` those. A range lets a study pair with
    records of later seeds (the arena with the seeds random ran on this machine and code)."""
    try:
        if "," in text:
            seeds = [int(x) for x in text.split(",") if x.strip()]
        elif "-" in text.strip("-"):
            a, b = (int(x) for x in text.split("-"))
            seeds = list(range(a, b + 1))
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K, A-B or a,b,c (non-negative integers), got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected at least one seed, none negative or repeated, got {text!r}")
    return seeds


def plan(strategies: list[str], seeds: int | list[int]) -> list[tuple[str, int]]:
    """Seed-major order, so a partial benchmark is balanced across strategies; ``seeds``: K (0..K−1) or a list."""
    return [(s, k) for k in (range(seeds) if isinstance(seeds, int) else seeds) for s in strategies]


def shard(planned: list, spec: str) -> list:
    """The planned (strategy, seed) runs of shard I of N (``"I/N"``), so N processes split a plan without overlap.

    Every N-th run from the I-th, the offset turning by one per seed: with 2 shards and 4 strategies a
    shard does not get the same (cheap or costly) strategies for every seed.
    """
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise SystemExit(f"--shard: expected I/N (e.g. 0/2), got {spec!r}") from None
    if not 0 <= i < n:
        raise SystemExit(f"--shard: I must be in 0..N-1, got {spec!r}")
    seeds = list(dict.fromkeys(k for _, k in planned))
    return [p for j, p in enumerate(planned) if (j + seeds.index(p[1])) % n == i]


def shard_labels(runs: list[Run], spec: str) -> set[str]:
    """The labels of the runs (in plan order) that shard ``spec`` runs (``shard``)."""
    return {label for label, _ in shard([(r.label, r.seed) for r in runs], spec)}


def record_path(records: Path, strategy: str, seed: int) -> Path:
    return records / strategy.replace("+", "_") / f"seed{seed}.json"


RECORDS = Path("bench/results/labels")


def records_dir(root: Path, cfg) -> Path:
    """A study's records folder: ``root/<config name>``, plus ``-<objective>`` when the APL loop trains with
    another objective than DPO (unless the name already ends so), so that study never lands on the DPO study's records."""
    objective = cfg.training.objective
    if objective == "dpo" or cfg.name.endswith(f"-{objective}"):
        return Path(root) / cfg.name
    return Path(root) / f"{cfg.name}-{objective}"


def _differences(path: Path, cfg) -> tuple[bool, list[str]]:
    """(complete, the settings in which the record at ``path`` differs from ``cfg``); the record must exist."""
    from aplkit.config import ExperimentConfig, config_diffs, migrate
    from bench.archive import read_record

    rec = read_record(path)
    diffs = config_diffs(migrate(rec["config"]), cfg.to_dict(), ("out",), ExperimentConfig().to_dict())
    return bool(rec["summary"].get("complete")), diffs


def recorded(path: Path, cfg) -> bool:
    """The record of this exact experiment is in the repository (a record of another config is not)."""
    if not path.exists():
        return False
    complete, diffs = _differences(path, cfg)
    return complete and not diffs


def foreign_record(path: Path, cfg) -> str | None:
    """One line when ``path`` holds the complete record of another experiment, which running ``cfg`` would overwrite."""
    if not path.exists():
        return None
    complete, diffs = _differences(path, cfg)
    if not complete or not diffs:
        return None
    shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
    return (
        f"{path}: holds the complete record of another experiment ({shown}); running would overwrite it — "
        f"give this study its own records with --set name=NEW_NAME or --records DIR"
    )


def check_no_overwrite(records: Path, configs: dict) -> None:
    """Before any run: stop in one line if a planned record path holds another experiment's complete record."""
    for (s, k), cfg in configs.items():
        clash = foreign_record(record_path(records, s, k), cfg)
        if clash:
            raise SystemExit(clash)


def check_endpoint(field: str) -> str:
    """``--endpoint``: a registered metric on the win-rate's scale (the decision target and power effect are in its
    units); one line naming the flag otherwise."""
    from aplkit.metrics import ENDPOINTS

    if field not in ENDPOINTS:
        raise SystemExit(f"--endpoint: expected one of {', '.join(ENDPOINTS)} (a metric on the win-rate's 0–1 scale), got {field!r}")
    return field


def check_strategies(spec: str, imports: list[str]) -> list[str]:
    """The planned strategies, after the user's modules registered theirs; one line naming the flag otherwise."""
    from aplkit.acquisition import SCORERS
    from aplkit.errors import ConfigError
    from aplkit.plugins import import_modules

    try:
        import_modules(imports, "--import")
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    strategies = [s.strip() for s in spec.split(",") if s.strip()]
    if not strategies:
        raise SystemExit(f"--strategies: expected registered scorers, comma-separated, got {spec!r}")
    for s in strategies:
        if s not in SCORERS:
            hint = "" if imports else "; a scorer of your own needs --import MODULE"
            raise SystemExit(f"--strategies: unknown strategy {s!r} (registered: {', '.join(sorted(SCORERS))}){hint}")
    return list(dict.fromkeys(strategies))


def main(argv: list[str] | None = None) -> int:
    from aplkit.errors import ConfigError

    args = parse(argv or [])
    endpoint = check_endpoint(args.endpoint)
    strategies = check_strategies(args.strategies, args.imports)
    try:
        configs = planned_configs(args, strategies)
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    records = Path(args.records) if args.records else records_dir(RECORDS, next(iter(configs.values())))
    seen = recorded_seeds(records, strategies) if args.report_only and not args.seeds_given else []
    if seen:  # rebuild the committed report, not a 9-seed one over it
        args.seeds = seen
        configs = planned_configs(args, strategies)
    out = Path(args.out)
    t0 = time.perf_counter()
    failed = False
    if not args.report_only:
        stop_by = parse_stop_by(args.stop_by)
        check_no_overwrite(records, configs)
        pause_on_signal()
        runs = study_runs(configs, out)
        ran = study_grid(
            runs,
            shard_labels(runs, args.shard),
            out,
            lambda r: record_path(records, r.strategy, r.seed),
            recorded,
            keep_record(args.commit),
            stop_by=stop_by,
        )
        if ran["stopped"]:
            return 0
        failed = bool(ran["failed"])
    early = before_reading(configs, records, args.looks)
    if early and not args.report_only:  # a shard that ends first does not print a reading of part of the plan
        print(f"no report yet: {early}")
        return 1 if failed else 0
    if early and args.seeds_given and not args.interim:
        raise SystemExit(f"bench labels: {early} (--interim reads the records so far, marked as not the plan's reading)")
    figures = Path(args.figures or records / "figures")
    summary = report(records, with_reference(configs, args), figures, args.pool_strata, args.looks, endpoint)
    if early and args.seeds_given:  # --interim (without --seeds the report reads every recorded seed, by design)
        summary["interim"] = early
        summary["markdown"] = f"**Interim, not the plan's reading**: {early}.\n\n{summary['markdown']}"
    summary["wall_seconds_this_invocation"] = round(time.perf_counter() - t0, 1)
    results = Path(args.results or records / "summary.json")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(summary, indent=2, default=str))
    print(summary["markdown"])
    print(f"results → {results}")
    return 1 if failed else 0


def before_reading(
    configs: Mapping[tuple[str, int], Any],
    records: Path,
    looks: list[int] | None = None,
    where: Callable[[Path, str, int], Path] = record_path,
    is_recorded: Callable[[Path, Any], bool] = recorded,
) -> str | None:
    """One line when the plan is not to be read yet: some planned run has no record (``where(records, strategy,
    seed)``, ``is_recorded``), and the seeds with every planned strategy recorded are not one of the declared
    ``looks``. None when it may be read."""
    absent = [(s, k) for (s, k), cfg in configs.items() if not is_recorded(where(records, s, k), cfg)]
    if not absent:
        return None
    complete = {k for _, k in configs} - {k for _, k in absent}
    if looks and len(complete) in looks:
        return None
    missing = [f"{s} seed {k}" for s, k in absent]
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    return (
        f"{len(configs) - len(missing)} of the plan's {len(configs)} runs are recorded (not yet: {shown}); the plan is read once they are"
    )


def planned_configs(args: argparse.Namespace, strategies: list[str], extra: tuple[str, ...] = ()) -> dict:
    """(strategy, seed) → the config the study runs for it, in ``plan`` order; ``extra`` overrides follow ``--set``."""
    from aplkit.checks import load_config

    sets = [*args.set, *extra]
    return {(s, k): load_config(args.config, sets, strategy=s, seed=k) for s, k in plan(strategies, args.seeds)}


def with_reference(configs: dict, args: argparse.Namespace) -> dict:
    """The planned runs plus random's at the planned seeds when the plan has none: every paired number is against
    random, so ``--strategies certainty`` (or an arena scorer alone) reports against random's records, never runs them."""
    if any(s == "random" for s, _ in configs):
        return configs
    return {**planned_configs(args, ["random"]), **configs}


def study_runs(configs: Mapping[tuple[str, int], Any], out: Path, prefix: str = "") -> list[Run]:
    """The planned runs, in plan order: one resumable folder each at ``out/[prefix]STRATEGY/seedK``."""
    return [Run.of(f"{prefix}{s.replace('+', '_')}/seed{k}", cfg, out) for (s, k), cfg in configs.items()]


def study_grid(
    runs: list[Run],
    mine: set[str],
    out: Path,
    record: Callable[[Run], Path],
    recorded: Callable[[Path, Any], bool],
    land: Callable[[Run, Ended, Path], str],
    name: Callable[[Run], str] = lambda r: r.strategy,
    stop_by: datetime | None = None,
    fallback: Path | None = None,
) -> dict:
    """A study's planned runs through the sweep's driver (``aplkit.sweep.run_grid``), in process, one at a time.

    ``runs``: every shard's, in plan order (they number the lines); those labelled in ``mine`` (this shard's) run
    unless ``recorded`` finds their kept rows at ``record(run)``, resuming their folders; a finished run's rows are
    kept by ``land``, which returns the line saying where. A run whose strategy's records (else ``fallback``'s) say
    it would end after ``stop_by`` is not started, a folder another process holds is skipped, and ``PAUSE`` stops
    the study after a finished step. One line per run. Returns the driver's summary ("stopped" when paused).
    """
    from aplkit.sweep import InProcessCell, Sweep, run_grid

    tags = {r.label: f"[{i}/{len(runs)}] {name(r)} seed {r.seed}" for i, r in enumerate(runs, 1)}

    def skip(run: Run) -> str | None:
        rec = record(run)
        if not recorded(rec, run.config):
            return None
        print(f"{tags[run.label]}: recorded in {rec}, skipped", flush=True)
        return "recorded"

    def before(run: Run) -> str | None:
        if PAUSE.is_set():
            raise Paused("before it started")
        return too_late(record(run).parent.parent, run.strategy, stop_by, fallback=fallback)

    def on_end(run: Run, ended: Ended) -> None:
        if ended.done:
            line = land(run, ended, record(run))
        elif ended.error is not None:
            line = f"FAILED after {ended.seconds:.0f}s: {ended.error} (see {run.out / CELL_LOG})"
        elif ended.stopped:
            line = f"paused {ended.stopped}; run the same command to continue"
        else:
            line = ended.skipped
        print(f"{tags[run.label]}: {line}", flush=True)

    cell = InProcessCell(before=before, on_step=_pause_after_step)
    return run_grid(Sweep(Path(out), [r for r in runs if r.label in mine]), cell, skip=skip, on_end=on_end, title="study")


def keep_record(commit: bool) -> Callable[[Run, Ended, Path], str]:
    """What a study keeps of a finished run: its compact record at ``rec``, committed alone when ``commit``; the
    line saying so, with the run's win-rate curve."""

    def land(run: Run, ended: Ended, rec: Path) -> str:
        from bench.archive import write_record

        cfg = run.config
        write_record(run.out, rec)
        curve = " ".join(f"{r.acquired}:{r.win_rate:.3f}" for r in ended.result.eval_rows)
        line = f"{curve}  ({ended.seconds:.0f}s) → {rec}"
        if not commit:
            return line + " (commit it)"
        what = f"{cfg.name}" + (f"-{cfg.training.objective}" if cfg.training.objective != "dpo" else "")
        ok = commit_file(rec, f"study record {what}: {cfg.strategy} seed {cfg.seed} ({curve}; {ended.seconds:.0f} s this invocation)")
        return line + (" (committed)" if ok else "")

    return land


def report(
    records: Path, configs: dict, figures: Path, pool_strata: bool = False, looks: list[int] | None = None, endpoint: str = "win_rate"
) -> dict:
    """Tables and figures from the planned runs' records alone (materialised into a temporary folder). One line, and
    nothing written, when the paired seeds span several code versions or CPUs and ``pool_strata`` is not given.
    ``endpoint``: the metric of the headline comparison (``summarise``)."""
    from aplkit.results.compare import StrataError
    from aplkit.results.load import load_code
    from bench.archive import materialise

    paths = [record_path(records, s, k) for (s, k), cfg in configs.items() if recorded(record_path(records, s, k), cfg)]
    with tempfile.TemporaryDirectory() as tmp:
        root = materialise(paths, tmp)
        try:
            summary = summarise(root, configs, pool_strata, looks, endpoint)
        except StrataError as e:
            raise SystemExit(f"{records}: {e}") from None
        code = load_code(root)  # which code made the records (package tree → runs, and the commits it was seen at)
        summary["code"] = {
            "code": {k: len(runs) for k, runs in code["code"].items()},
            "commits": code["commits"],
            "resumed_across": code["resumed_across"],
            "records_without_code": len(code["without"]),
            "machines": {k: len(runs) for k, runs in code["machines"].items()},  # records made before 2026-12-02 name none
        }
        if summary.get("runs"):
            from aplkit.results.report import report as write_report

            # the records, not the temporary folder: a rebuilt notes.md is unchanged
            write_report(root, figures, source=records, pool_strata=pool_strata, endpoint=endpoint)
    summary["records"] = [str(p) for p in paths]
    return summary


def summarise(out: Path, configs: dict, pool_strata: bool = False, looks: list[int] | None = None, endpoint: str = "win_rate") -> dict:
    """The study's summary (module docstring). Paired seeds of several strata (code version · CPU) are refused
    unless ``pool_strata``; pooled, each stratum's estimate and a test of their difference come first. ``looks``: the
    declared looks, whose Pocock-adjusted intervals are printed beside the plain ones. ``endpoint``: the metric of the
    headline comparison (strata, intervals and power, looks, the decision line, the paired tests, the ranking); every
    other metric that asks the question, and is recorded, follows it."""
    import pandas as pd

    from aplkit import results as R
    from aplkit.metrics import HEADLINE, metric, shown
    from bench.findings import findings, findings_markdown

    df = R.load_runs(out)
    if not df.empty:  # only the planned strategies and seeds: --seeds 3 reports 3 even when more were run
        df = df[[(s, k) in configs for s, k in zip(df["strategy"], df["seed"], strict=True)]]
    if df.empty:
        return {"markdown": "no finished runs recorded yet", "runs": 0}
    strata = R.load_strata(out)
    present = R.check_strata(df, strata, pool_strata)
    table = R.table2(df)
    budget = int(df["acquired"].max())
    by_stratum, strata_tests = R.by_stratum(df, strata, budget, metric=endpoint)
    look_rows = R.looks_table(df, looks, budget, metric=endpoint) if looks else None
    sig = R.significance_vs_random(df, endpoint)
    cmp = R.paired_comparison(df, metric=endpoint)
    metrics = R.companion_metrics(df)
    # the same question on the other metrics that ask it (an opt-in one only where a run recorded it); one not on the
    # win-rate's scale gets no power line
    others = [m for m in shown(df) if m.question and m.field != endpoint]
    lower = [R.paired_comparison(df, effect=0.05 if m.probability else None, metric=m.field) for m in others]
    scales = [m.label + ("" if m.probability else f" in {UNITS[m.row]}") for m in others]
    of = "" if endpoint == HEADLINE.field else f" in {metric(endpoint).label} (the study's endpoint)"
    lower = pd.concat([x for x in lower if len(x)] or lower[:1], ignore_index=True)
    has_random = bool((df["strategy"] == "random").any())  # the reference every ratio needs; absent when none is recorded
    eff = R.efficiency_intervals(df, budget) if has_random else pd.DataFrame(columns=R.EFFICIENCY_INTERVAL_COLUMNS)
    acq = R.load_acquired(out)
    acq = acq[[(s, k) in configs for s, k in zip(acq["strategy"], acq["seed"], strict=True)]] if not acq.empty else acq
    wrong = R.confident_errors(acq)
    steps = R.load_steps(out)
    steps = steps[[(s, k) in configs for s, k in zip(steps["strategy"], steps["seed"], strict=True)]] if not steps.empty else steps
    cost = R.acquisition_cost(steps, R.load_configs(out))
    rank = R.ranking(cmp, df)
    matched = R.kl_matched(df, budget)
    prec = R.precision(cmp, TARGET_HALF_WIDTH, metric=endpoint)
    found = findings(df, acq)
    cfg = next(iter(configs.values()))
    md = "\n\n".join(
        [
            f"Win-rate against θ0 (mean ± SE over seeds), {cfg.name}, M={cfg.acquisition.acquire_batch}, S={cfg.acquisition.prompt_batch}, "
            f"{len(df['seed'].unique())} seeds, {cfg.evaluation.test_prompts} test prompts:",
            R.to_markdown(table),
            "Beside every win-rate: its companions from the same test prompts (mean ± SE over seeds):",
            R.metrics_markdown(metrics),
            *(
                [
                    f"Difference{of} from random at {budget} labels in each stratum (code version · CPU), before pooling:",
                    R.strata_markdown(by_stratum, strata_tests),
                    f"Pooled over the {len(present)} strata: difference{of} from random, paired by seed, with 95 % intervals:",
                ]
                if len(present) > 1
                else [
                    f"Every paired seed in one stratum ({present[0] if present else 'none'}): difference{of} from random, paired by seed, "
                    "with 95 % intervals:"
                ]
            ),
            R.comparison_markdown(cmp),
            *(
                [
                    f"The looks declared for this study ({', '.join(map(str, looks))} seeds): plain and look-adjusted intervals{of} at {budget} labels:",
                    R.looks_markdown(look_rows, looks),
                ]
                if looks
                else []
            ),
            f"Is it decided? The 95 % interval{of} at the final budget against the target (±{TARGET_HALF_WIDTH}):",
            R.precision_markdown(prec),
            f"The same question on {'the other metrics' if of else 'a lower-variance metric'} ({'; '.join(scales)}):",
            R.comparison_markdown(lower) if len(lower) else f"no run recorded a {' or '.join(m.label for m in others)}\n",
            f"Paired tests{of} (raw and Holm-adjusted over the table):",
            R.significance_markdown(sig, endpoint),
            f"Labels random needs to match each strategy at {budget} labels:",
            R.efficiency_interval_markdown(eff) if has_random else "no random runs recorded for these seeds: nothing to compare with\n",
            "Confidently wrong acquired pairs (Fig 3 as a number):",
            R.confident_errors_markdown(wrong),
            f"The strategies at the final size, ranked{of}, one Holm family (figures/ranking.png):",
            R.ranking_markdown(rank),
            "Acquisition cost per step, relative to random:",
            R.cost_markdown(cost),
            "Win-rate at matched KL from θ0 (exploratory):",
            R.kl_matched_markdown(matched),
            "## The paper's four findings",
            findings_markdown(found),
        ]
    )
    return {
        "config": cfg.to_dict(),
        "runs": int(df.groupby(["strategy", "seed"]).ngroups),
        "table2": json.loads(table.to_json(orient="split", default_handler=str)),
        "significance": json.loads(sig.to_json(orient="records")),
        "comparison": json.loads(cmp.to_json(orient="records")),
        "strata": present,
        "by_stratum": json.loads(by_stratum.to_json(orient="records")),
        "strata_tests": json.loads(strata_tests.to_json(orient="records")),
        **({"looks": {"declared": looks, "rows": json.loads(look_rows.to_json(orient="records"))}} if looks else {}),
        "companions": json.loads(metrics.to_json(orient="records")),
        "comparison_lower_variance": json.loads(lower.to_json(orient="records")),
        "findings": json.loads(found.to_json(orient="records")),
        "efficiency": json.loads(eff.to_json(orient="records")),
        "confident_errors": json.loads(wrong.to_json(orient="records")),
        "ranking": json.loads(rank.to_json(orient="records")),
        "precision": json.loads(prec.to_json(orient="records")),
        "cost": json.loads(cost.to_json(orient="records")),
        "kl_matched": json.loads(matched.to_json(orient="records")),
        "markdown": md,
        "machine": machine(),
    }


if __name__ == "__main__":
    raise SystemExit(main())
