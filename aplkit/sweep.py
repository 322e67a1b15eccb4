"""Strategy × seed sweeps: one papermill execution of the experiment notebook per run.

A sweep file (YAML)::

    config: params/imdb-cpu.yaml          # required: the base config (path or preset name)
    notebook: notebooks/apl_experiment.ipynb   # optional (this default)
    out: runs/demo                        # optional (default runs/<sweep file stem>)
    strategies: [random, certainty]       # required
    seeds: [0, 1, 2]                      # required: a list, or N for 0..N-1
    overrides: [training.lr=1e-5]         # optional, applied to every run
    variants:                             # optional: extra settings crossed with the runs,
      reset: []                           #   each a list of overrides or a mapping
      online: {overrides: [training.mode=online], strategies: [certainty], seeds: [0]}

Run folders are OUT/STRATEGY/seedN, or OUT/VARIANT/STRATEGY/seedN with variants; each keeps
its executed notebook as ``notebook.ipynb``. Every run's config is loaded and validated before
any kernel starts. A run whose summary.json says complete is skipped without a kernel; any
other run is (re-)executed, which resumes it from its last finished step. A failing run does
not stop the others; the returned summary lists done / skipped / failed (with one-line errors).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aplkit.acquisition import SCORERS
from aplkit.config import ConfigError, load_config, preset_path
from aplkit.records import StepRow
from aplkit.runfolder import CONFIG, RunFolder

#: the experiment notebook ships inside the package (``notebooks/apl_experiment.ipynb`` in a checkout links here)
DEFAULT_NOTEBOOK = Path(__file__).resolve().parent / "notebooks" / "apl_experiment.ipynb"
SWEEP_KEYS = ("config", "notebook", "out", "strategies", "seeds", "overrides", "variants")
VARIANT_KEYS = ("overrides", "strategies", "seeds")


@dataclass
class Run:
    label: str  # "[variant/]strategy/seedN"
    strategy: str
    seed: int
    out: Path
    overrides: list[str] = field(default_factory=list)
    steps: int = 0

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


def _str_list(path: Path, key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, f"{key}: expected a list of strings like [key=value, ...], got {value!r}")
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
                runs.append(Run(label, s, seed, root / label, ovr, cfg.steps))
    return Sweep(p, config, notebook, root, runs)


def _check_folder(path: Path, label: str, folder: Path, new: dict) -> None:
    """A run folder made with another config cannot be resumed: say so before any kernel starts."""
    d = RunFolder(folder).config_change(new)
    if d:
        raise _fail(path, f"run {label}: {folder} was made with a different config ({d}); change out or remove that folder")


def _one_line(e: BaseException) -> str:
    """A failed run in one line: the notebook's exception (papermill) or the launcher's."""
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        return f"{ename}: {str(evalue).splitlines()[0] if evalue else ''}".strip()
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def execute(run: Run, sweep: Sweep, progress: bool = False) -> Path:
    """Execute the experiment notebook for one run; the executed copy lands in the run folder."""
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
    pm.execute_notebook(
        str(sweep.notebook),
        str(dest),
        parameters=params,
        kernel_name="python3",  # jupyter_client starts "python" kernels with sys.executable: this venv
        cwd=str(Path.cwd()),  # relative paths in configs mean what they mean to `aplkit run`
        progress_bar=False,
        log_output=False,
    )
    return dest


def run_sweep(path: str | Path, jobs: int = 1, dry_run: bool = False, out: str | Path | None = None) -> dict[str, Any]:
    """Run every strategy × seed (× variant) of a sweep file; returns {"total", "done", "skipped", "failed", ...}.

    done/skipped: run labels; failed: [{"run", "error"}]. ``out`` replaces the file's ``out``.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {jobs}")
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
    if dry_run:
        print(f"{total} runs: {len(todo)} to run, {len(summary['skipped'])} complete; notebook {sw.notebook}")
        return summary
    print(f"sweep {sw.path}: {total} runs, {len(summary['skipped'])} already complete, {len(todo)} to run with {jobs} job(s) → {sw.out}")
    share = todo and jobs > 1 and "OMP_NUM_THREADS" not in os.environ
    if share:  # kernels inherit it: parallel runs split the cores instead of fighting over them
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // min(jobs, len(todo))))
    t_start = time.perf_counter()
    n = len(todo)

    def go(k: int, r: Run) -> tuple[Run, str | None, float]:
        print(f"[{k}/{n}] start {r.label} ({r.status()})", flush=True)
        t0 = time.perf_counter()
        try:
            execute(r, sw)
            return r, None, time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - one run's failure must not stop the others
            return r, _one_line(e), time.perf_counter() - t0

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(go, k, r) for k, r in enumerate(todo, 1)]
            for f in as_completed(futures):
                r, err, secs = f.result()
                if err is None:
                    wr = (RunFolder(r.out).read_json("summary.json", {}) or {}).get("final_win_rate")
                    summary["done"].append(r.label)
                    print(f"done   {r.label} in {secs:.0f}s (final win-rate {'n/a' if wr is None else f'{wr:.3f}'})", flush=True)
                else:
                    summary["failed"].append({"run": r.label, "error": err})
                    print(f"FAILED {r.label} after {secs:.0f}s: {err} (see {r.out / 'notebook.ipynb'})", flush=True)
    finally:
        if share:
            os.environ.pop("OMP_NUM_THREADS", None)
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


__all__ = ["Run", "Sweep", "execute", "load_sweep", "run_sweep"]
