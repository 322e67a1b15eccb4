"""Sweeps on a real local Ray cluster (127.0.0.1, 2 CPUs): the local executor's guarantees, one task per run.

One cluster serves the module (starting Ray takes 10-20 s on 2 cores); the option checks need none.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import ray

from aplkit import cli
from aplkit.executors import RayExecutor
from aplkit.runfolder import RunFolder
from aplkit.sweep import CELL_LOG, run_sweep
from tests.fixtures_data import words
from tests.test_notebooks import TINY
from tests.test_sweep import _digest, _write


@pytest.fixture(scope="module")
def cluster():
    """A cluster started the way ``--address local`` starts one, capped at 2 CPUs; stopped after the module."""
    assert not ray.is_initialized()
    assert RayExecutor(address="local", num_cpus=2)._connect(ray)  # this process started it
    yield ray
    ray.shutdown()


def _spec(runs: Path, **extra) -> dict:
    return {
        "config": "imdb-cpu",
        "out": str(runs),
        "strategies": ["random"],
        "seeds": [0],
        "overrides": [*TINY, "acquisition.budget=4", "evaluation.waypoints=[4]"],  # one step: Ray is under test, not the loop
        # a relative data.path that does not exist yet passes validation and raises DataError in the kernel;
        # it is read from the sweep's working folder, which is not the Ray workers' own
        "variants": {"main": [], "file": {"overrides": ["data.task=file", "data.path=prompts.jsonl"]}},
        **extra,
    }


def _attempts(folder: Path) -> list[str]:
    """The first line of each attempt in a run's sweep.log."""
    return [line for line in (folder / CELL_LOG).read_text().splitlines() if re.match(r"\d{4}-\d\d-\d\d [\d:]{8} ", line)]


@pytest.mark.ray
@pytest.mark.notebook  # in the Ray workers
def test_ray_sweep_failure_and_rerun_without_repeated_work(cluster, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    path = _write(tmp_path / "tiny.yaml", _spec(runs))
    main, file = runs / "main/random/seed0", runs / "file/random/seed0"

    assert cli.main(["sweep", str(path), "--executor", "ray", "--cpus-per-task", "1"]) == 1  # one run failed → non-zero exit
    out = capsys.readouterr().out
    assert "to run on Ray at local (1 CPU(s) and 1 GPU for cuda or auto runs if it has GPUs per task)" in out
    assert "FAILED file/random/seed0" in out and "DataError" in out and "1 done, 0 skipped, 1 failed" in out
    assert RunFolder(main).complete and len(RunFolder(main).rows("acquired.jsonl")) == 4
    assert "bt_correct" in (main / "notebook.ipynb").read_text()  # the executed notebook is kept in the run folder
    [start] = _attempts(main)[:1]
    pid = int(re.search(r" pid (\d+), ray task ", start).group(1))
    assert pid != os.getpid() and f"python {sys.executable}" in start  # a Ray worker of this environment ran it
    assert [a.split(" ", 3)[2] for a in _attempts(main)] == ["start", "done"]
    log = (file / CELL_LOG).read_text()
    assert [a.split(" ", 3)[2] for a in _attempts(file)] == ["start", "FAILED"]
    assert "DataError: data.path: file not found: prompts.jsonl" in log and "Traceback" in log  # the per-run log has the cause

    # The data appear in the sweep's folder; the rerun skips the complete run (no new attempt, notebook untouched)
    # and retries the failed one, which now finds prompts.jsonl relative to the sweep's folder, not the worker's.
    before, main_log = _digest(main / "notebook.ipynb"), (main / CELL_LOG).read_text()
    rows = [{"prompt": words(12, i)} for i in range(300)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_sweep(path, dry_run=True, executor=RayExecutor())["planned"] == ["file/random/seed0"]
    s = run_sweep(path, executor=RayExecutor(cpus_per_task=1))
    assert s["skipped"] == ["main/random/seed0"] and s["done"] == ["file/random/seed0"] and s["failed"] == []
    assert _digest(main / "notebook.ipynb") == before and (main / CELL_LOG).read_text() == main_log
    assert [a.split(" ", 3)[2] for a in _attempts(file)] == ["start", "FAILED", "start", "done"]
    assert RunFolder(file).complete and len(RunFolder(file).rows("acquired.jsonl")) == 4

    # a third invocation has nothing to do and submits nothing
    capsys.readouterr()
    s = run_sweep(path, executor=RayExecutor())
    assert s["skipped"] == ["main/random/seed0", "file/random/seed0"] and s["done"] == [] and "queued" not in capsys.readouterr().out


@pytest.mark.ray
@pytest.mark.parametrize(
    "opts, device, message",
    [
        (["--cpus-per-task", "3"], "cpu", "--cpus-per-task 3: the largest node of the Ray cluster at local has 2 CPUs"),
        ([], "cuda", "--gpus-per-task 1: the largest node of the Ray cluster at local has 0 GPUs"),
    ],
)
def test_a_task_that_fits_no_node_is_refused_before_any_run(cluster, tmp_path, monkeypatch, capsys, opts, device, message):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path / "s.yaml", _spec(tmp_path / "runs", overrides=[*TINY, f"model.device={device}"]))
    assert cli.main(["sweep", str(path), "--executor", "ray", *opts]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "runs").exists()  # nothing queued, no run folder


@pytest.mark.parametrize(
    "args, device, message",
    [
        (["--executor", "ray", "--jobs", "2"], "cpu", "--jobs: applies to --executor local"),
        (["--cpus-per-task", "2"], "cpu", "--cpus-per-task: applies to --executor ray only"),
        (["--executor", "ray", "--cpus-per-task", "0"], "cpu", "--cpus-per-task: must be > 0, got 0"),
        (["--executor", "ray", "--gpus-per-task", "-1"], "cpu", "--gpus-per-task: must be >= 0"),
        (["--executor", "ray", "--gpus-per-task", "0"], "cuda", "model.device=cuda needs a GPU but --gpus-per-task is 0"),
        (["--executor", "ray"], "cuda:1", "model.device=cuda:1: a Ray task sees only the 1 GPU(s) it reserves"),
    ],
)
def test_bad_executor_options_fail_in_one_line(tmp_path, monkeypatch, capsys, args, device, message):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path / "s.yaml", _spec(tmp_path / "runs", overrides=[*TINY, f"model.device={device}"]))
    assert cli.main(["sweep", str(path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "runs").exists()


def test_missing_ray_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the package
    path = _write(tmp_path / "s.yaml", _spec(tmp_path / "runs"))
    assert cli.main(["sweep", str(path), "--executor", "ray"]) == 2
    assert capsys.readouterr().err.strip() == (
        "aplkit: error: --executor ray: the ray package is not installed; install the extra: pip install 'aplkit[ray]'"
    )
    assert cli.main(["sweep", str(path), "--dry-run"]) == 0  # the local executor does not need it


def test_task_environment(monkeypatch):
    """The task's environment: this checkout importable, threads = CPUs reserved, no GPU unless reserved, no usage stats."""
    from aplkit.sweep import Run

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-to-travel")
    ex = RayExecutor(cpus_per_task=3)
    cpu, gpu = Run("a", "random", 0, Path("a"), device="cpu"), Run("b", "random", 0, Path("b"), device="cuda")
    env = ex.env(cpu)
    root = str(Path(__file__).resolve().parent.parent)
    assert env["PYTHONPATH"] == f"{root}{os.pathsep}/elsewhere" and env["OMP_NUM_THREADS"] == "3"
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["RAY_USAGE_STATS_ENABLED"] == "0" and env["HF_HUB_OFFLINE"] == "1"
    assert "OPENAI_API_KEY" not in env and "CUDA_VISIBLE_DEVICES" not in ex.env(gpu)  # Ray sets it for a GPU task
    assert (ex.gpus(cpu), ex.gpus(gpu), RayExecutor(gpus_per_task=2).gpus(cpu)) == (0, 1, 2)
    auto = Run("c", "random", 0, Path("c"), device="auto")  # auto: a GPU when the cluster has one, as on one machine
    assert ex.gpus(auto) == 0 and "CUDA_VISIBLE_DEVICES" in ex.env(auto)
    ex.cluster_gpus = 4
    assert (ex.gpus(auto), ex.gpus(cpu)) == (1, 0) and "CUDA_VISIBLE_DEVICES" not in ex.env(auto)
    assert "APLKIT_RATE_NODES" not in env  # one node: the judge's rate limit is all its own
    ex.cluster_nodes = 3
    assert ex.env(cpu)["APLKIT_RATE_NODES"] == "3"  # each node's file takes a third of the limit


@pytest.mark.ray
def test_an_in_process_grid_runs_each_run_in_a_ray_worker(cluster, tmp_path, monkeypatch):
    """The in-process cell on Ray: run_arena's run lands in a worker process, reads a relative data.path from the
    grid's folder (not the worker's), finishes, and a second call finds it complete and submits nothing."""
    from aplkit.sweep import run_arena

    monkeypatch.chdir(tmp_path)
    rows = [{"prompt": words(12, i)} for i in range(300)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sets = [*TINY, "acquisition.budget=4", "evaluation.waypoints=[4]", "data.task=file", "data.path=prompts.jsonl"]
    [folder] = run_arena("imdb-cpu", ["random"], [0], "arena", sets, executor=RayExecutor(cpus_per_task=1))
    assert folder == tmp_path / "arena" / "random" / "seed0" and RunFolder(folder).complete
    [start] = _attempts(folder)[:1]
    assert int(re.search(r" pid (\d+), ray task ", start).group(1)) != os.getpid()
    log = (folder / CELL_LOG).read_text()
    run_arena("imdb-cpu", ["random"], [0], "arena", sets, executor=RayExecutor(cpus_per_task=1))
    assert (folder / CELL_LOG).read_text() == log  # complete: no new attempt
