"""Strategy × seed sweeps: one papermill execution of the experiment notebook per run.

A sweep file (YAML)::

    config: params/imdb-cpu.yaml          # required: the base config (path or preset name)
    notebook: notebooks/apl_experiment.ipynb   # optional (this default)
    out: runs/demo                        # optional (default runs/<sweep file stem>)
    strategies: [random, certainty]       # required
    seeds: [0, 1, 2]                      # required: a list, or N for 0..N-1
    overrides: [training.lr=1e-5]         # optional, applied to every run
    imports: [my_scorers]                 # optional: modules that register your scorers (dotted names or .py paths)
    variants:                             # optional: extra settings crossed with the runs,
      reset: []                           #   each a list of overrides or a mapping
      online: {overrides: [training.mode=online], strategies: [certainty], seeds: [0]}

Run folders are OUT/STRATEGY/seedN, or OUT/VARIANT/STRATEGY/seedN with variants; each keeps
its executed notebook as ``notebook.ipynb`` and a ``sweep.log`` of every attempt (where, when, how it
ended, the traceback of a failure). Every run's config is loaded and validated before any kernel
starts. A run whose summary.json says complete is skipped without a kernel; any other run is
(re-)executed, which resumes it from its last finished step. A failing run does not stop the
others; the returned summary lists done / skipped / failed (with one-line errors). Where the runs
execute — threads on this machine or tasks on a Ray cluster — is the executor's business
(:mod:`aplkit.executors`); every executor calls the grid's cell where the run lands.

Every strategy × seed grid goes through one driver, :func:`run_grid`: a sweep file's runs with the
notebook cell (:func:`run_cell`), and grids described in code — ``run_arena``, the benchmarks' studies —
with the in-process cell (:class:`InProcessCell`: ``run_experiment`` or ``run_phf`` on the run's loaded
config, no kernel). What makes a run skipped (its folder complete, its record already kept) and what
happens as a run ends (a line, its record kept and committed) are the caller's hooks.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from aplkit.acquisition import SCORERS
from aplkit.budget import describe, run_bill
from aplkit.checks import load_config
from aplkit.config import ConfigError, ExperimentConfig, preset_path
from aplkit.errors import RunFolderBusy
from aplkit.executors import Cell, Ended, Executor, LocalExecutor, kernel_manager_with, one_line
from aplkit.plugins import import_modules, resolve
from aplkit.progress import quiet_kernel_manager
from aplkit.records import StepRow
from aplkit.runfolder import CONFIG, RunFolder

#: the experiment notebook ships inside the package (``notebooks/apl_experiment.ipynb`` in a checkout links here)
DEFAULT_NOTEBOOK = Path(__file__).resolve().parent / "notebooks" / "apl_experiment.ipynb"
SWEEP_KEYS = ("config", "notebook", "out", "strategies", "seeds", "overrides", "variants", "imports")
VARIANT_KEYS = ("overrides", "strategies", "seeds")
#: one line per attempt at a run, appended in its folder (the executed notebook holds the run's own output)
CELL_LOG = "sweep.log"


@dataclass
class Run:
    label: str  # "[variant/]strategy/seedN"
    strategy: str  # the grid's first axis: an acquisition strategy, or a PHF objective
    seed: int
    out: Path
    overrides: list[str] = field(default_factory=list)
    steps: int = 0
    device: str = "auto"  # model.device: an executor reserves a GPU for cuda runs
    config: Any = None  # the loaded config (ExperimentConfig or PHFConfig) an in-process cell runs
    env: dict[str, str] = field(default_factory=dict)  # set where the run lands (a local job's GPU) for its kernel

    @classmethod
    def of(cls, label: str, cfg: Any, root: str | Path, overrides: Sequence[str] = ()) -> Run:
        """The run of a loaded config at ``root/label`` (absolute: a Ray worker finds it from anywhere)."""
        strategy = getattr(cfg, "strategy", None) or cfg.objective
        steps = getattr(cfg, "steps", 0)
        return cls(label, strategy, cfg.seed, Path(root).resolve() / label, list(overrides), steps, cfg.model.device, cfg)

    def status(self) -> str:
        """complete | resume (k/T steps done) | new."""
        rf = RunFolder(self.out)
        if rf.complete:
            return "complete"
        done = max((r.step for r in rf.read(StepRow)), default=0)
        return f"resume ({done}/{self.steps} steps done)" if done or (rf / CONFIG).exists() else "new"


@dataclass
class Sweep:
    """A grid's runs; a sweep file's also name the config file and the notebook its kernels execute."""

    out: Path
    runs: list[Run]
    imports: list[str] = field(default_factory=list)  # imported here before validation and where every run executes
    path: Path | None = None  # the sweep file
    config: Path | None = None
    notebook: Path | None = None


def _fail(path: Path, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {msg}")


def _resolve(path: Path, value: str, what: str) -> Path:
    """A file named in a sweep: as given (relative to the working folder), else beside the sweep file."""
    for cand in (Path(value), path.parent / value):
        if cand.exists():
            return cand.resolve()
    if Path(value).name == DEFAULT_NOTEBOOK.name:  # the shipped notebook, from an installed aplkit
        return DEFAULT_NOTEBOOK
    raise _fail(path, f"{what}: file not found: {value}")


def _str_list(path: Path, key: str, value: Any, like: str = "[key=value, ...]") -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, f"{key}: expected a list of strings like {like}, got {value!r}")
    return value


def _seeds(path: Path, key: str, value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
        if len(set(value)) != len(value):
            raise _fail(path, f"{key}: repeated seed in {value}")
        return value
    raise _fail(path, f"{key}: expected a list of seeds >= 0 or a positive count, got {value!r}")


def _strategies(path: Path, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _fail(path, f"{key}: expected a non-empty list of strategies, got {value!r}")
    for s in value:
        if s not in SCORERS:
            raise _fail(path, f"{key}: unknown strategy {s!r} (registered: {', '.join(sorted(SCORERS))})")
    if len(set(value)) != len(value):
        raise _fail(path, f"{key}: repeated strategy in {value}")
    return value


def load_sweep(path: str | Path, out: str | Path | None = None) -> Sweep:
    """Parse and validate a sweep file and every run's config; raises ConfigError (one line)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"sweep file not found: {p}")
    try:
        spec = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise _fail(p, f"not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise _fail(p, "expected a mapping at the top level")
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        raise _fail(p, f"unknown key {unknown[0]!r} (known: {', '.join(SWEEP_KEYS)})")
    for key in ("config", "strategies", "seeds"):
        if key not in spec:
            raise _fail(p, f"missing required key {key!r}")
    if not isinstance(spec["config"], str):
        raise _fail(p, f"config: expected a path or preset name, got {spec['config']!r}")
    try:
        config = preset_path(spec["config"]).resolve()
    except ConfigError:
        raise _fail(p, f"config: file not found: {spec['config']}") from None
    notebook = _resolve(p, spec["notebook"], "notebook") if spec.get("notebook") else DEFAULT_NOTEBOOK
    root = Path(out or spec.get("out") or Path("runs") / p.stem).resolve()
    imports = _str_list(p, "imports", spec.get("imports"), "[my_scorers, path/to/scorers.py]")
    try:
        import_modules(imports, "imports")  # before the strategies are checked: a scorer registered there is valid
    except ConfigError as e:
        raise _fail(p, str(e)) from None
    imports = [resolve(m) for m in imports]  # as the run kernels (on any node) will read them
    strategies = _strategies(p, "strategies", spec["strategies"])
    seeds = _seeds(p, "seeds", spec["seeds"])
    common = _str_list(p, "overrides", spec.get("overrides"))

    variants: list[tuple[str | None, list[str], list[str], list[int]]] = []
    raw = spec.get("variants")
    if raw is None:
        variants.append((None, [], strategies, seeds))
    elif not isinstance(raw, dict) or not raw:
        raise _fail(p, f"variants: expected a mapping name → overrides, got {raw!r}")
    else:
        for name, v in raw.items():
            k = f"variants.{name}"
            if not isinstance(name, str) or not name or "/" in name:
                raise _fail(p, f"{k}: variant names must be non-empty strings without '/'")
            if isinstance(v, dict):
                bad = sorted(set(v) - set(VARIANT_KEYS))
                if bad:
                    raise _fail(p, f"{k}: unknown key {bad[0]!r} (known: {', '.join(VARIANT_KEYS)})")
                vs = _strategies(p, f"{k}.strategies", v["strategies"]) if "strategies" in v else strategies
                vd = _seeds(p, f"{k}.seeds", v["seeds"]) if "seeds" in v else seeds
                variants.append((name, _str_list(p, f"{k}.overrides", v.get("overrides")), vs, vd))
            else:
                variants.append((name, _str_list(p, k, v), strategies, seeds))

    runs = []
    for name, extra, vs, vd in variants:
        for s in vs:
            for seed in vd:
                label = "/".join(x for x in (name, s.replace("+", "_"), f"seed{seed}") if x)
                ovr = common + extra
                try:
                    cfg = load_config(config, ovr, strategy=s, seed=seed)
                except ConfigError as e:
                    raise _fail(p, f"run {label}: {e}") from None
                _check_folder(p, label, root / label, cfg.to_dict())
                runs.append(Run(label, s, seed, root / label, ovr, cfg.steps, cfg.model.device, cfg))
    return Sweep(root, runs, imports, path=p, config=config, notebook=notebook)


def _check_folder(path: Path, label: str, folder: Path, new: dict) -> None:
    """A run folder made with another config cannot be resumed: say so before any kernel starts."""
    d = RunFolder(folder).config_change(new)
    if d:
        raise _fail(path, f"run {label}: {folder} was made with a different config ({d}); change out or remove that folder")


def execute(run: Run, sweep: Sweep, progress: bool = False, cwd: str | Path | None = None) -> Path:
    """Execute the experiment notebook for one run; the executed copy lands in the run folder.

    ``cwd`` is the folder relative paths in configs are read from: the sweep's, also on a Ray worker.
    """
    import papermill as pm

    run.out.mkdir(parents=True, exist_ok=True)
    dest = run.out / "notebook.ipynb"
    params = {
        "config": str(sweep.config),
        "strategy": run.strategy,
        "seed": run.seed,
        "out": str(run.out),
        "overrides": list(run.overrides),
        "progress": progress,
    }
    if sweep.imports:  # only then: a notebook of your own needs no imports parameter
        params["imports"] = list(sweep.imports)
    pm.execute_notebook(
        str(sweep.notebook),
        str(dest),
        parameters=params,
        kernel_name="python3",  # jupyter_client starts "python" kernels with sys.executable: this venv
        # the kernel's stderr less its TCP warning, and a local job's GPU in its environment
        kernel_manager_class=kernel_manager_with(run.env) if run.env else quiet_kernel_manager(),
        cwd=str(cwd or Path.cwd()),  # relative paths in configs mean what they mean to `aplkit run`
        progress_bar=False,
        log_output=False,
    )
    return dest


def _log(run: Run, text: str) -> None:
    with open(run.out / CELL_LOG, "a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")


class StopGrid(Exception):  # noqa: N818 - a request to stop, not an error
    """Raised by a run's hook to stop the run after its last finished step, and the grid with it (a pause): nothing
    is lost and the same call continues."""


def attempt(run: Run, where: str, work: Callable[[], Any]) -> Ended:
    """One attempt at one run, wherever the executor placed it: ``work()``, logged in the run folder's sweep.log.

    Never raises for a failing run: the error is returned and, with its traceback, appended to the log, so one
    run's failure cannot stop the others. A folder another process holds is skipped (that process runs it, as
    when two shards of one grid overlap); ``StopGrid`` ends the attempt as stopped.
    """
    t0 = time.perf_counter()
    try:
        run.out.mkdir(parents=True, exist_ok=True)
        _log(run, f"start {run.label} ({run.status()}) on {socket.gethostname()} pid {os.getpid()}, {where}, python {sys.executable}")
    except OSError as e:
        return Ended(one_line(e), time.perf_counter() - t0)
    try:
        result = work()
    except StopGrid as e:
        secs = time.perf_counter() - t0
        _log(run, f"stopped after {secs:.1f}s: {e}")
        return Ended(seconds=secs, stopped=str(e))
    except Exception as e:  # noqa: BLE001 - one run's failure must not stop the others
        secs = time.perf_counter() - t0
        if isinstance(e, RunFolderBusy) or getattr(e, "ename", None) == RunFolderBusy.__name__:  # in this process, or in a kernel
            why = f"skipped: {getattr(e, 'evalue', None) or e}"
            _log(run, why)
            return Ended(seconds=secs, skipped=why)
        err = one_line(e)
        _log(run, f"FAILED after {secs:.1f}s: {err}\n{''.join(traceback.format_exception(e)).rstrip()}")
        return Ended(err, secs)
    secs = time.perf_counter() - t0
    _log(run, f"done in {secs:.1f}s")
    return Ended(seconds=secs, result=result)


def run_cell(run: Run, sweep: Sweep, cwd: str, where: str) -> Ended:
    """The notebook cell: one attempt at one run as a papermill execution of the sweep's notebook (``attempt``)."""
    if not Path(cwd).is_dir() or not Path(sweep.config).is_file():
        missing = cwd if not Path(cwd).is_dir() else sweep.config
        return Ended(
            f"FileNotFoundError: {missing} is not on {socket.gethostname()}; run folders and configs must be on a filesystem every node shares"
        )
    return attempt(run, where, lambda: execute(run, sweep, cwd=cwd))


@dataclass(frozen=True)
class InProcessCell:
    """The in-process cell: each run in the process its executor placed it in — ``run_experiment`` on the run's
    loaded config, ``run_phf`` for a PHF config — without a kernel; ``Ended.result`` is what the run returned.

    ``before`` is asked as the run would start: a line means do not start it (no time left); it may raise
    ``StopGrid``. ``on_step`` watches each finished acquisition step and may raise ``StopGrid`` too. Seeds are
    process-wide (torch, numpy), so two of its runs never share a process: one local job at a time, or one Ray
    task each.
    """

    progress: bool = False
    before: Callable[[Run], str | None] | None = None
    on_step: Callable[[Any], Any] | None = None
    one_per_process: ClassVar[bool] = True

    def __call__(self, run: Run, sweep: Sweep, cwd: str, where: str) -> Ended:
        try:
            why = self.before(run) if self.before else None
        except StopGrid as e:
            return Ended(stopped=str(e))
        if why:
            return Ended(skipped=why)
        return attempt(run, where, lambda: self.run(run, sweep, cwd))

    def run(self, run: Run, sweep: Sweep, cwd: str) -> Any:
        """The run itself, here: the sweep's imports first, relative paths in its config read from ``cwd``."""
        from aplkit.phf.config import PHFConfig

        if Path.cwd() != Path(cwd):  # a Ray worker: the grid's own folder, as a notebook kernel's is the sweep's
            os.chdir(cwd)
        import_modules(sweep.imports, "imports")
        if isinstance(run.config, PHFConfig):
            from aplkit.phf.experiment import run_phf

            return run_phf(run.config, run.out, progress=self.progress)
        from aplkit.loop import run_experiment

        watch = {"on_step": self.on_step} if self.on_step else {}
        return run_experiment(run.config, run.out, progress=self.progress, **watch)


def _complete(run: Run) -> str | None:
    return "complete" if RunFolder(run.out).complete else None


def print_outcome(run: Run, ended: Ended) -> None:
    """A sweep's line for a run that ended: done (with its final win-rate), failed (and where to look), skipped or stopped."""
    if ended.done:
        wr = (RunFolder(run.out).read_json("summary.json", {}) or {}).get("final_win_rate")
        print(f"done   {run.label} in {ended.seconds:.0f}s (final win-rate {'n/a' if wr is None else f'{wr:.3f}'})", flush=True)
    elif ended.error is not None:
        nb = run.out / "notebook.ipynb"
        see = f"{run.out / CELL_LOG}" + (f" and {nb}" if nb.exists() else "")
        print(f"FAILED {run.label} after {ended.seconds:.0f}s: {ended.error} (see {see})", flush=True)
    else:
        print(f"{run.label}: {ended.skipped or f'stopped {ended.stopped}'}", flush=True)


def run_grid(
    sweep: Sweep,
    cell: Cell,
    executor: Executor | None = None,
    skip: Callable[[Run], str | None] = _complete,
    on_end: Callable[[Run, Ended], Any] = print_outcome,
    dry_run: bool = False,
    title: str = "grid",
) -> dict[str, Any]:
    """The one driver of strategy × seed grids: every run of ``sweep`` that ``skip`` does not rule out, once, through
    ``cell`` (``run_cell``: a notebook kernel; ``InProcessCell``) on ``executor`` (default: one run at a time here).

    ``skip`` says why a run needs no attempt (default: its folder is complete); it is asked of every run before any
    starts. ``on_end`` is called here, in this process, as each attempt ends (in the order they end, whatever the
    executor): it prints, keeps records, commits. A run that stops (``StopGrid``) stops the grid: nothing more starts.
    Returns {"out", "total", "planned" (labels to run), "done", "skipped" (labels, before or as they would start),
    "failed" ([{"run", "error"}]), "stopped" (why, or None), "seconds"}.
    """
    executor = executor or LocalExecutor()
    executor.check()
    if getattr(cell, "one_per_process", False) and executor.shares_process:
        raise ConfigError("--jobs: runs in process share its seeds (torch, numpy): run them one at a time, or one per Ray task")
    total = len(sweep.runs)
    summary: dict[str, Any] = {
        "out": str(sweep.out),
        "total": total,
        "done": [],
        "skipped": [],
        "failed": [],
        "planned": [],
        "stopped": None,
    }
    todo = []
    for r in sweep.runs:
        why = skip(r)
        if why:
            summary["skipped"].append(r.label)
        else:
            todo.append(r)
            summary["planned"].append(r.label)
        if dry_run:
            print(f"{r.label:<40} {f'{why}, skip' if why else r.status()}  → {r.out}")
    executor.check_runs(todo)
    if dry_run:
        what = f"notebook {sweep.notebook}" if cell is run_cell else "in process"
        print(f"{total} runs: {len(todo)} to run, {len(summary['skipped'])} skipped; {what}; {executor.describe()}")
        bills = [run_bill(r.config) for r in todo if isinstance(r.config, ExperimentConfig)]
        if bills:  # what the runs will do and cost, before any is paid for
            summary["bill"] = sum(bills[1:], bills[0])
            print(describe(summary["bill"], label="to run"))
        return summary
    print(f"{title}: {total} runs, {len(summary['skipped'])} skipped, {len(todo)} to run on {executor.describe()} → {sweep.out}")
    t_start = time.perf_counter()
    outcomes = executor.map(todo, sweep, cell)
    try:
        for r, ended in outcomes:
            if ended.done:
                summary["done"].append(r.label)
            elif ended.error is not None:
                summary["failed"].append({"run": r.label, "error": ended.error})
            elif ended.skipped:
                summary["skipped"].append(r.label)
            on_end(r, ended)
            if ended.stopped:
                summary["stopped"] = f"{r.label}: {ended.stopped}"
                break
    finally:
        close = getattr(outcomes, "close", None)
        if close:  # stopped or interrupted: an executor's runs that have not started never start
            close()
    order = {r.label: i for i, r in enumerate(sweep.runs)}
    for key in ("done", "skipped"):
        summary[key].sort(key=order.get)
    summary["failed"].sort(key=lambda f: order[f["run"]])
    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    stopped = f"; stopped at {summary['stopped']}" if summary["stopped"] else ""
    print(
        f"{title} finished in {summary['seconds']:.0f}s: {len(summary['done'])} done, {len(summary['skipped'])} skipped, "
        f"{len(summary['failed'])} failed{stopped}"
    )
    for f in summary["failed"]:
        print(f"  failed {f['run']}: {f['error']}", file=sys.stderr)
    return summary


def run_sweep(
    path: str | Path, jobs: int = 1, dry_run: bool = False, out: str | Path | None = None, executor: Executor | None = None
) -> dict[str, Any]:
    """Run every strategy × seed (× variant) of a sweep file; returns ``run_grid``'s summary.

    done/skipped: run labels; failed: [{"run", "error"}]. ``out`` replaces the file's ``out``.
    ``executor`` places the runs (default: ``LocalExecutor(jobs)``, threads on this machine).
    """
    executor = executor or LocalExecutor(jobs)
    executor.check()  # the executor's own settings, before the sweep file is read
    sw = load_sweep(path, out)
    return run_grid(sw, run_cell, executor, dry_run=dry_run, title=f"sweep {sw.path}")


def run_arena(
    config: str,
    strategies: Sequence[str],
    seeds: Sequence[int],
    runs_dir: str | Path,
    overrides: Sequence[str] = (),
    progress: bool = False,
    imports: Sequence[str] = (),
    executor: Executor | None = None,
) -> list[Path]:
    """Every strategy × seed on one config, seed-major (a partial arena stays balanced), one resumable run folder
    each at ``runs_dir/STRATEGY/seedK``, in process through ``run_grid`` (``executor``: one run at a time here by
    default; Ray gives each run a worker of its own). ``imports`` (modules that register scorers,
    ``aplkit.plugins``) are imported and every config is checked before the first run starts; a complete folder is
    not run again. A failing run does not stop the others; the arena then raises, naming every one."""
    import_modules(imports, "imports")
    runs = [
        Run.of(f"{s.replace('+', '_')}/seed{k}", load_config(config, list(overrides), strategy=s, seed=k), runs_dir, overrides)
        for k in seeds
        for s in strategies
    ]
    sweep = Sweep(Path(runs_dir).resolve(), runs, [resolve(m) for m in imports])
    summary = run_grid(sweep, InProcessCell(progress=progress), executor, title=f"arena {config}")
    if summary["failed"]:
        failed = "; ".join(f"{f['run']}: {f['error']}" for f in summary["failed"])
        raise RuntimeError(f"{len(summary['failed'])} arena run(s) failed ({failed}); each run folder's {CELL_LOG} has the traceback")
    return [r.out for r in runs]


__all__ = [
    "CELL_LOG",
    "InProcessCell",
    "Run",
    "StopGrid",
    "Sweep",
    "attempt",
    "execute",
    "load_sweep",
    "print_outcome",
    "run_arena",
    "run_cell",
    "run_grid",
    "run_sweep",
]
