"""Sweeps: validation before any kernel, papermill runs in parallel, a failing run, no repeated work."""

from __future__ import annotations

import hashlib
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


class _FakeRun:
    def __init__(self, label: str) -> None:
        self.label = label

    def status(self) -> str:
        return "new"


def test_local_executor_gives_an_ended_runs_cores_to_the_runs_left(monkeypatch):
    """Two jobs on 4 cores start with 2 threads each; when the short run ends, the long one is told 4."""
    import os
    import threading
    import time

    from aplkit.executors import LocalExecutor
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
            return None, 0.0
        long_started.set()
        deadline = time.time() + 10
        while share.read_text() == "2" and time.time() < deadline:
            time.sleep(0.01)
        seen[run.label].append(share.read_text())
        return None, 0.0

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
    execute(run, Sweep(tmp_path / "s.yaml", preset_path("imdb-cpu"), _env_notebook(tmp_path), tmp_path, [run]), cwd=tmp_path)
    return json.loads((tmp_path / "run" / "env.json").read_text())


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
