"""Sweeps: validation before any kernel, papermill runs in parallel, a failing run, no repeated work."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import yaml

from aplkit import cli
from aplkit.config import ConfigError
from aplkit.demo import demo
from aplkit.runfolder import RunFolder
from aplkit.sweep import load_sweep, run_sweep
from tests.test_notebooks import TINY


def _write(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"config": "imdb-cpu", "strategies": ["random"], "seeds": [0], "jobs": 2}, "unknown key 'jobs'"),
        ({"config": "imdb-cpu", "strategies": ["random", "bold"], "seeds": [0]}, "strategies: unknown strategy 'bold'"),
        ({"config": "nope.yaml", "strategies": ["random"], "seeds": [0]}, "config: file not found: nope.yaml"),
        ({"strategies": ["random"], "seeds": [0]}, "missing required key 'config'"),
        ({"config": "imdb-cpu", "strategies": ["random"], "seeds": [0, 0]}, "seeds: repeated seed"),
        ({"config": "imdb-cpu", "strategies": ["random"], "seeds": "all"}, "seeds: expected a list"),
        (
            {"config": "imdb-cpu", "strategies": ["random"], "seeds": [0], "overrides": ["training.lr=-1"]},
            "run random/seed0: training.lr: must be > 0",
        ),
        (
            {"config": "imdb-cpu", "strategies": ["random"], "seeds": [0], "variants": {"on": {"mode": "online"}}},
            "variants.on: unknown key 'mode'",
        ),
    ],
)
def test_bad_sweep_files_fail_in_one_line(tmp_path, spec, message):
    path = _write(tmp_path / "s.yaml", spec)
    with pytest.raises(ConfigError) as e:
        run_sweep(path)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "runs").exists()


def test_layout_variants_and_seed_count(tmp_path):
    spec = {
        "config": "imdb-cpu",
        "out": str(tmp_path / "r"),
        "strategies": ["random", "entropy+certainty"],
        "seeds": 2,
        "variants": {"reset": [], "online": {"overrides": ["training.mode=online"], "strategies": ["random"], "seeds": [5]}},
    }
    sw = load_sweep(_write(tmp_path / "s.yaml", spec))
    labels = [r.label for r in sw.runs]
    assert labels == [
        "reset/random/seed0",
        "reset/random/seed1",
        "reset/entropy_certainty/seed0",
        "reset/entropy_certainty/seed1",
        "online/random/seed5",
    ]
    assert sw.runs[-1].overrides == ["training.mode=online"] and sw.runs[-1].out == tmp_path / "r" / "online/random/seed5"
    assert [r.steps for r in sw.runs] == [4] * 5  # imdb-cpu: B=64 / M=16


def _digest(p: Path) -> tuple[int, str]:
    return p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.notebook
def test_sweep_parallel_failure_and_no_repeated_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    spec = {
        "config": "imdb-cpu",
        "out": str(runs),
        "strategies": ["random", "certainty"],
        "seeds": [0],
        "overrides": TINY,
        # data.task=file with a missing file passes validation and raises DataError inside the kernel
        "variants": {"main": [], "broken": {"overrides": ["data.task=file", "data.path=missing.jsonl"], "strategies": ["random"]}},
    }
    path = _write(tmp_path / "tiny.yaml", spec)
    assert cli.main(["sweep", str(path), "--jobs", "2"]) == 1  # one run failed → non-zero exit
    out = capsys.readouterr().out
    assert "FAILED broken/random/seed0" in out and "DataError" in out and "2 done, 0 skipped, 1 failed" in out
    good = [runs / "main/random/seed0", runs / "main/certainty/seed0"]
    for d in good:
        assert RunFolder(d).complete and len(RunFolder(d).rows("acquired.jsonl")) == 8
        assert "bt_correct" in (d / "notebook.ipynb").read_text()  # the executed notebook is kept in the run folder
    assert "DataError" in (runs / "broken/random/seed0/notebook.ipynb").read_text()
    assert "FAILED after" in (runs / "broken/random/seed0/sweep.log").read_text()  # each attempt is logged in the run folder

    # A half-done run (killed before its summary) and a complete one: the second sweep resumes
    # the first from its checkpoint without new labels and launches no kernel for the second.
    before = {d: _digest(d / "notebook.ipynb") for d in good}
    acquired = (good[1] / "acquired.jsonl").read_bytes()
    total = RunFolder(good[1]).read_json("summary.json")["oracle"]["total"]
    (good[1] / "summary.json").unlink()
    assert run_sweep(path, dry_run=True)["planned"] == ["main/certainty/seed0", "broken/random/seed0"]
    s = run_sweep(path, jobs=2)
    assert s["skipped"] == ["main/random/seed0"] and s["done"] == ["main/certainty/seed0"]
    assert [f["run"] for f in s["failed"]] == ["broken/random/seed0"] and s["failed"][0]["error"].startswith("DataError: ")
    assert _digest(good[0] / "notebook.ipynb") == before[good[0]]  # not re-executed
    assert _digest(good[1] / "notebook.ipynb") != before[good[1]]
    assert (good[1] / "acquired.jsonl").read_bytes() == acquired
    oracle = RunFolder(good[1]).read_json("summary.json")["oracle"]
    assert RunFolder(good[1]).complete and oracle["calls"] == 0 and oracle["total"] == total  # no oracle call this session

    # demo = sweep + report; on the finished runs it launches nothing and writes the figures
    demo_sweep = _write(tmp_path / "demo.yaml", {**spec, "variants": {"main": []}})
    capsys.readouterr()
    assert demo(runs, tmp_path / "figures", jobs=1, sweep=demo_sweep) == 0
    out = capsys.readouterr().out
    assert "0 done, 2 skipped, 0 failed" in out and "Table 2" in out and "| Random |" in out.replace("**", "")
    assert (tmp_path / "figures/fig2_winrate.png").exists() and (tmp_path / "figures/table2.md").exists()
    assert _digest(good[0] / "notebook.ipynb") == before[good[0]]


def test_demo_reports_beside_its_runs_and_leaves_the_committed_figures_alone(tmp_path, monkeypatch, capsys):
    """A demo's numbers are its machine's: its report goes to runs/demo/figures (runs/ is git-ignored), and a checkout's
    git status stays clean; it says which machine made the runs and how the committed figures/ are redrawn."""
    import shutil
    import subprocess

    from aplkit import demo as demo_module
    from aplkit.provenance import machine
    from tests.synthetic_runs import make_run

    root = Path(__file__).resolve().parent.parent
    repo = tmp_path / "checkout"
    (repo / "figures").mkdir(parents=True)
    shutil.copy(root / ".gitignore", repo / ".gitignore")
    for f in (root / "figures").glob("*.md"):
        shutil.copy(f, repo / "figures" / f.name)

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=aplkit", "-c", "user.email=aplkit@localhost", "commit", "-qm", "a checkout")
    monkeypatch.chdir(repo)

    def sweep_without_kernels(path, jobs=1, out=None):
        """What the demo's sweep leaves: two finished run folders, each with its start recorded."""
        for strategy, winrates in (("random", {16: 0.5, 32: 0.55}), ("certainty", {16: 0.5, 32: 0.6})):
            RunFolder(make_run(out, strategy, 0, winrates, folder=f"{strategy}/seed0")).note_start()
        return {"done": ["random/seed0", "certainty/seed0"], "skipped": [], "failed": []}

    monkeypatch.setattr(demo_module, "run_sweep", sweep_without_kernels)
    assert cli.main(["demo"]) == 0
    assert git("status", "--porcelain", "--untracked-files=all") == ""
    said = capsys.readouterr().out
    assert demo_module.report_dir("runs/demo") == Path("runs/demo/figures")
    assert (repo / "runs/demo/figures/table2.md").is_file() and "figures and tables in runs/demo/figures/:" in said
    m = machine()
    assert f"runs made on {m['cpu']} ({m['isa']}, {m['cores']} cores); the committed figures/ are left as they are" in said
    assert "aplkit report runs/demo --out figures" in said


class _FakeRun:
    def __init__(self, label: str, out: Path | None = None, steps: int = 1) -> None:
        self.label, self.out, self.steps = label, out or Path(label), steps

    def status(self) -> str:
        return "new"


def test_local_executor_gives_an_ended_runs_cores_to_the_runs_left(monkeypatch):
    """Two jobs on 4 cores start with 2 threads each; when the short run ends, the long one is told 4."""
    import os
    import threading
    import time

    from aplkit.executors import Ended, LocalExecutor
    from aplkit.models import SHARE_ENV

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    seen: dict[str, list[str]] = {}
    long_started = threading.Event()

    def fake_cell(run, sweep, cwd, where):
        share = Path(os.environ[SHARE_ENV])
        seen[run.label] = [os.environ["OMP_NUM_THREADS"], share.read_text()]
        if run.label == "short":
            assert long_started.wait(10)
            return Ended()
        long_started.set()
        deadline = time.time() + 10
        while share.read_text() == "2" and time.time() < deadline:
            time.sleep(0.01)
        seen[run.label].append(share.read_text())
        return Ended()

    outcomes = list(LocalExecutor(jobs=2).map([_FakeRun("short"), _FakeRun("long")], sweep=None, cell=fake_cell))
    assert sorted(r.label for r, *_ in outcomes) == ["long", "short"]
    assert seen == {"short": ["2", "2"], "long": ["2", "2", "4"]}
    assert SHARE_ENV not in os.environ and "OMP_NUM_THREADS" not in os.environ  # nothing leaks past the sweep


def test_a_run_follows_its_core_share(tmp_path, monkeypatch):
    import torch

    from aplkit.models import SHARE_ENV, follow_core_share

    before = torch.get_num_threads()
    share = tmp_path / "cores.txt"
    monkeypatch.setenv(SHARE_ENV, str(share))
    try:
        share.write_text("1")
        assert follow_core_share() == 1 and torch.get_num_threads() == 1
        share.write_text("2")
        assert follow_core_share() == 2 and torch.get_num_threads() == 2
        share.unlink()  # the sweep ended: keep the threads
        assert follow_core_share() is None and torch.get_num_threads() == 2
        monkeypatch.delenv(SHARE_ENV)
        assert follow_core_share() is None
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- what a sweep shows while its runs go


def test_progress_lines_follow_a_run_folder_as_its_files_advance(tmp_path, monkeypatch):
    """A line when the step or phase changes, never twice; the time left from the finished steps' seconds; a phase
    left by an earlier attempt is not read; nothing once the run has ended."""
    from types import SimpleNamespace

    from aplkit.progress import ProgressWatcher
    from aplkit.records import StepRow

    now = [900.0]
    monkeypatch.setattr("aplkit.runfolder.time", SimpleNamespace(time=lambda: now[0]))  # when the loop's notes say they were written
    run = _FakeRun("certainty/seed0", tmp_path / "run", steps=3)
    rf = RunFolder(run.out).ensure()
    rf.note_phase("train", 2, 850.0)  # an attempt killed before this sweep
    lines: list[str] = []
    watch = ProgressWatcher(write=lines.append, clock=lambda: now[0])
    now[0] = 1000.0
    watch.begin(run)
    watch.poll()
    assert lines == []

    def at(t: float, *note) -> list[str]:
        now[0] = t
        if note:
            rf.note_phase(*note)
        n = len(lines)
        watch.poll()
        watch.poll()
        return lines[n:]

    assert at(1001.0, "setup") == ["  certainty/seed0: setup (models, data, θ0's test-set values)"]
    assert at(1005.0) == []
    assert at(1010.0, "acquire", 1, 1010.0) == ["  certainty/seed0: step 1/3 acquire (0 done, time left known after a step)"]
    assert at(1050.0, "label", 1, 1010.0) == ["  certainty/seed0: step 1/3 label (0 done, time left known after a step)"]
    rf.add(StepRow(step=1, acquired=16, labels=16, seconds=60.0))
    # 60 s a step × 2 steps left − 10 s into step 2 = 110 s
    assert at(1080.0, "acquire", 2, 1070.0) == ["  certainty/seed0: step 2/3 acquire (1 done, about 2 min left)"]
    assert at(1100.0, "evaluate", 2, 1070.0) == ["  certainty/seed0: step 2/3 evaluate (1 done, about 2 min left)"]  # 90 s
    rf.add(StepRow(step=2, acquired=32, labels=16, seconds=120.0))
    assert at(1191.0) == []  # step 2 committed, step 3 not begun: nothing new
    # (60 + 120) / 2 s a step × 1 step left − 5 s into step 3 = 85 s
    assert at(1195.0, "acquire", 3, 1190.0) == ["  certainty/seed0: step 3/3 acquire (2 done, about 1 min left)"]
    assert at(1250.0, "train", 3, 1190.0) == ["  certainty/seed0: step 3/3 train (2 done, under a minute left)"]  # 30 s
    watch.end(run)
    assert at(1300.0, "setup") == []


def test_a_phase_noted_in_the_same_millisecond_as_the_attempt_began_is_shown(tmp_path):
    """phase.json keeps its time to the millisecond; a note rounded down below the attempt's start is still new."""
    from aplkit.progress import read_progress

    rf = RunFolder(tmp_path).ensure()
    began = 1_000_000.0004
    rf.write_json("phase.json", {"phase": "acquire", "step": 1, "since": round(began, 3), "step_since": None})
    assert read_progress(tmp_path, 4, since=began, now=began).phase == "acquire"
    rf.write_json("phase.json", {"phase": "acquire", "step": 1, "since": began - 5.0, "step_since": None})
    assert read_progress(tmp_path, 4, since=began, now=began) is None  # an earlier attempt's note


def test_progress_durations_and_the_watchers_thread(tmp_path):
    from aplkit.progress import ProgressWatcher, duration

    assert [duration(s) for s in (-3, 40, 89, 91, 420, 3569, 3571, 3900)] == [
        *("1 min", "1 min", "1 min", "2 min", "7 min", "59 min", "1 h 00 min", "1 h 05 min")
    ]
    run = _FakeRun("random/seed0", tmp_path / "run", steps=4)
    lines: list[str] = []
    with ProgressWatcher(every=0.01, write=lines.append) as watch:
        watch.begin(run)
        RunFolder(run.out).ensure().note_phase("acquire", 1, None)
        deadline = time.time() + 10
        while not lines and time.time() < deadline:
            time.sleep(0.01)
    assert lines == ["  random/seed0: step 1/4 acquire (0 done, time left known after a step)"]
    assert watch.thread is None  # stopped and joined


@pytest.mark.notebook
def test_kernel_stderr_reaches_the_terminal_less_only_the_tcp_warning(tmp_path, capfd):
    """ipykernel's start-up warning about TCP sockets is dropped; any other line of the kernel's stderr passes."""
    import io

    import nbformat
    import papermill as pm

    from aplkit.progress import forward_stderr, quiet_kernel_manager

    warning = (
        "[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All communication (including code and outputs) "
        "is sent in plain text and is susceptible to eavesdropping."
    )
    out = io.StringIO()
    forward_stderr(io.BytesIO(f"first line\n{warning}\n[IPKernelApp] ERROR | another\n".encode()), out=lambda: out)
    assert out.getvalue() == "first line\n[IPKernelApp] ERROR | another\n"

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1 + 1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "t.ipynb")
    capfd.readouterr()
    for quiet in (False, True):
        extra = {"kernel_manager_class": quiet_kernel_manager()} if quiet else {}
        pm.execute_notebook(tmp_path / "t.ipynb", tmp_path / "o.ipynb", kernel_name="python3", progress_bar=False, **extra)
        err = capfd.readouterr().err
        assert ("without encryption" in err) != quiet, err  # the kernel says it (and the plain manager lets it through)


def test_in_process_runs_never_share_a_process(tmp_path):
    """Seeds are process-wide: an in-process grid on two local jobs (threads of one process) is refused before any run."""
    from aplkit.executors import LocalExecutor
    from aplkit.sweep import run_arena

    with pytest.raises(ConfigError, match="^--jobs: runs in process share its seeds"):
        run_arena("imdb-cpu", ["random"], [0, 1], tmp_path / "runs", TINY, executor=LocalExecutor(jobs=2))
    assert not (tmp_path / "runs").exists()


def _gpu_runs(tmp_path: Path, n: int, device: str = "auto") -> list:
    from aplkit.sweep import Run

    return [Run(f"r{i}", "random", i, tmp_path / f"r{i}", device=device) for i in range(n)]


def test_each_local_job_gets_a_gpu_of_its_own(tmp_path, monkeypatch):
    """Three jobs on a (faked) four-GPU machine: no two runs at once share a GPU; too many jobs are refused in one line."""
    import threading
    import time

    from aplkit import executors
    from aplkit.executors import LocalExecutor

    monkeypatch.setattr(executors, "gpu_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    runs = _gpu_runs(tmp_path, 6)
    ex = LocalExecutor(jobs=3)
    ex.check_runs(runs)
    assert ex.gpus == ["0", "1", "2", "3"] and ex.describe() == "this machine with 3 job(s), one GPU each of 0,1,2,3"
    busy, seen, lock, clash = set(), {}, threading.Lock(), []

    def cell(run, sweep, cwd, where):
        gpu = run.env["CUDA_VISIBLE_DEVICES"]
        with lock:
            clash.extend([gpu] if gpu in busy else [])
            busy.add(gpu)
        time.sleep(0.05)
        with lock:
            busy.discard(gpu)
            seen[run.label] = (gpu, where)
        return None, 0.0

    outcomes = list(ex.map(runs, None, cell))
    assert clash == [] and sorted(seen) == [r.label for r in runs]
    assert all(gpu in ex.gpus and where.endswith(f"on GPU {gpu}") for gpu, where in seen.values())
    assert all(r.env == {} for r, *_ in outcomes)  # the sweep's own runs are not changed

    with pytest.raises(ConfigError) as e:
        LocalExecutor(jobs=8).check_runs(_gpu_runs(tmp_path, 8))
    assert (
        str(e.value)
        == "--jobs 8: this machine has 4 GPU(s) and each job of a run with model.device=auto takes one; use --jobs 4 or fewer (or model.device=cpu)"
    )
    LocalExecutor(jobs=8).check_runs(_gpu_runs(tmp_path, 4))  # only four runs left: four at once
    with pytest.raises(ConfigError, match=r"^--jobs 2: run r0 pins model.device=cuda:1, so every job would share that GPU"):
        LocalExecutor(jobs=2).check_runs(_gpu_runs(tmp_path, 2, "cuda:1"))
    cpu = LocalExecutor(jobs=8)
    cpu.check_runs(_gpu_runs(tmp_path, 8, "cpu"))
    assert cpu.gpus == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # the sweep was given two GPUs of a larger machine
    monkeypatch.setattr(executors, "gpu_count", lambda: 2)
    mine = LocalExecutor(jobs=2)
    mine.check_runs(_gpu_runs(tmp_path, 2, "cuda"))
    assert mine.gpus == ["5", "7"]
    monkeypatch.setattr(executors, "gpu_count", lambda: 0)
    none = LocalExecutor(jobs=8)
    none.check_runs(_gpu_runs(tmp_path, 8))  # auto on a machine without GPUs: the CPU
    assert none.gpus == []


ENV_NOTEBOOK_CELL = """import json, os, pathlib
info = {"visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
if info["visible"] is not None:
    import torch
    info["count"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
pathlib.Path(out).mkdir(parents=True, exist_ok=True)
pathlib.Path(out, "env.json").write_text(json.dumps(info))
"""


def _env_notebook(tmp_path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('config = ""\nstrategy = ""\nseed = 0\nout = ""\noverrides = []\nprogress = False')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(ENV_NOTEBOOK_CELL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "env.ipynb"
    nbformat.write(nb, str(path))
    return path


def _kernel_env(tmp_path: Path, env: dict[str, str]) -> dict:
    import json

    from aplkit.config import preset_path
    from aplkit.sweep import Run, Sweep, execute

    run = Run("r", "random", 0, tmp_path / "run", env=env)
    sw = Sweep(tmp_path, [run], path=tmp_path / "s.yaml", config=preset_path("imdb-cpu"), notebook=_env_notebook(tmp_path))
    execute(run, sw, cwd=tmp_path)
    return json.loads((tmp_path / "run" / "env.json").read_text())


@pytest.mark.notebook
def test_a_local_jobs_gpu_reaches_its_kernel_and_no_other(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert _kernel_env(tmp_path, {"CUDA_VISIBLE_DEVICES": "3"})["visible"] == "3"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # set for that kernel only, not for this process or the next run
    assert _kernel_env(tmp_path / "other", {}) == {"visible": None}


@pytest.mark.cuda
def test_a_kernel_given_one_gpu_sees_one(tmp_path, monkeypatch):
    from aplkit.executors import gpu_count, gpu_ids

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    last = gpu_ids(gpu_count())[-1]
    assert _kernel_env(tmp_path, {"CUDA_VISIBLE_DEVICES": last}) == {"visible": last, "count": 1}
