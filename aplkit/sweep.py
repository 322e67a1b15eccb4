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
(:mod:`aplkit.executors`); every executor calls :func:`run_cell` where the run lands.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aplkit.acquisition import SCORERS
from aplkit.checks import load_config
from aplkit.config import ConfigError, preset_path
from aplkit.executors import Executor, LocalExecutor, one_line
from aplkit.plugins import import_modules, resolve
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
    strategy: str
    seed: int
    out: Path
    overrides: list[str] = field(default_factory=list)
    steps: int = 0
    device: str = "auto"  # model.device: an executor reserves a GPU for cuda runs

    def status(self) -> str:
        """complete | resume (k/T steps done) | new."""
        rf = RunFolder(self.out)
        if rf.complete:
            return "complete"
        done = max((r.step for r in rf.read(StepRow)), default=0)
        return f"resume ({done}/{self.steps} steps done)" if done or (rf / CONFIG).exists() else "new"


@dataclass
class Sweep:
    path: Path
    config: Path
    notebook: Path
    out: Path
    runs: list[Run]
    imports: list[str] = field(default_factory=list)  # imported here before validation and in every run's kernel


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
                runs.append(Run(label, s, seed, root / label, ovr, cfg.steps, cfg.model.device))
    return Sweep(p, config, notebook, root, runs, imports)


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
        cwd=str(cwd or Path.cwd()),  # relative paths in configs mean what they mean to `aplkit run`
        progress_bar=False,
        log_output=False,
    )
    return dest


def _log(run: Run, text: str) -> None:
    with open(run.out / CELL_LOG, "a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")


def run_cell(run: Run, sweep: Sweep, cwd: str, where: str) -> tuple[str | None, float]:
    """One attempt at one run, wherever the executor placed it: (one-line error or None, seconds).

    Never raises for a failing run: the error is returned and, with its traceback, appended to the
    run folder's sweep.log, so one run's failure cannot stop the others.
    """
    t0 = time.perf_counter()
    if not Path(cwd).is_dir() or not Path(sweep.config).is_file():
        missing = cwd if not Path(cwd).is_dir() else sweep.config
        return (
            f"FileNotFoundError: {missing} is not on {socket.gethostname()}; run folders and configs must be on a filesystem every node shares",
            0.0,
        )
    try:
        run.out.mkdir(parents=True, exist_ok=True)
        _log(run, f"start {run.label} ({run.status()}) on {socket.gethostname()} pid {os.getpid()}, {where}, python {sys.executable}")
    except OSError as e:
        return one_line(e), time.perf_counter() - t0
    try:
        execute(run, sweep, cwd=cwd)
    except Exception as e:  # noqa: BLE001 - one run's failure must not stop the others
        err, secs = one_line(e), time.perf_counter() - t0
        _log(run, f"FAILED after {secs:.1f}s: {err}\n{''.join(traceback.format_exception(e)).rstrip()}")
        return err, secs
    secs = time.perf_counter() - t0
    _log(run, f"done in {secs:.1f}s")
    return None, secs


def run_sweep(
    path: str | Path, jobs: int = 1, dry_run: bool = False, out: str | Path | None = None, executor: Executor | None = None
) -> dict[str, Any]:
    """Run every strategy × seed (× variant) of a sweep file; returns {"total", "done", "skipped", "failed", ...}.

    done/skipped: run labels; failed: [{"run", "error"}]. ``out`` replaces the file's ``out``.
    ``executor`` places the runs (default: ``LocalExecutor(jobs)``, threads on this machine).
    """
    executor = executor or LocalExecutor(jobs)
    executor.check()  # the executor's own settings, before the sweep file is read
    sw = load_sweep(path, out)
    total = len(sw.runs)
    summary: dict[str, Any] = {"out": str(sw.out), "total": total, "done": [], "skipped": [], "failed": [], "planned": []}
    todo = []
    for r in sw.runs:
        st = r.status()
        if st == "complete":
            summary["skipped"].append(r.label)
        else:
            todo.append(r)
            summary["planned"].append(r.label)
        if dry_run:
            print(f"{r.label:<40} {st if st != 'complete' else 'complete, skip'}  → {r.out}")
    executor.check_runs(todo)
    if dry_run:
        print(f"{total} runs: {len(todo)} to run, {len(summary['skipped'])} complete; notebook {sw.notebook}; {executor.describe()}")
        if todo:
            from aplkit.budget import describe, run_bill

            bills = [run_bill(load_config(sw.config, r.overrides, strategy=r.strategy, seed=r.seed)) for r in todo]
            summary["bill"] = sum(bills[1:], bills[0])
            print(describe(summary["bill"], label="to run"))
        return summary
    print(
        f"sweep {sw.path}: {total} runs, {len(summary['skipped'])} already complete, {len(todo)} to run on {executor.describe()} → {sw.out}"
    )
    t_start = time.perf_counter()
    for r, err, secs in executor.map(todo, sw, run_cell):
        if err is None:
            wr = (RunFolder(r.out).read_json("summary.json", {}) or {}).get("final_win_rate")
            summary["done"].append(r.label)
            print(f"done   {r.label} in {secs:.0f}s (final win-rate {'n/a' if wr is None else f'{wr:.3f}'})", flush=True)
        else:
            summary["failed"].append({"run": r.label, "error": err})
            print(f"FAILED {r.label} after {secs:.0f}s: {err} (see {r.out / CELL_LOG} and {r.out / 'notebook.ipynb'})", flush=True)
    order = {r.label: i for i, r in enumerate(sw.runs)}
    summary["done"].sort(key=order.get)
    summary["failed"].sort(key=lambda f: order[f["run"]])
    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    print(
        f"sweep finished in {summary['seconds']:.0f}s: {len(summary['done'])} done, {len(summary['skipped'])} skipped, {len(summary['failed'])} failed"
    )
    for f in summary["failed"]:
        print(f"  failed {f['run']}: {f['error']}", file=sys.stderr)
    return summary


def run_arena(
    config: str,
    strategies: Sequence[str],
    seeds: Sequence[int],
    runs_dir: str | Path,
    overrides: Sequence[str] = (),
    progress: bool = False,
    imports: Sequence[str] = (),
) -> list[Path]:
    """Every strategy × seed on one config, seed-major (a partial arena stays balanced), one resumable run folder
    each at ``runs_dir/STRATEGY/seedK``; ``imports`` (modules that register scorers, ``aplkit.plugins``) are
    imported and every config is checked before the first run starts."""
    from aplkit.loop import run_experiment

    import_modules(imports, "imports")
    cfgs = [(s, k, load_config(config, list(overrides), strategy=s, seed=k)) for k in seeds for s in strategies]
    out = []
    for s, k, cfg in cfgs:
        folder = Path(runs_dir) / s.replace("+", "_") / f"seed{k}"
        run_experiment(cfg, folder, progress=progress)
        out.append(folder)
    return out


__all__ = ["CELL_LOG", "Run", "Sweep", "execute", "load_sweep", "run_arena", "run_cell", "run_sweep"]
