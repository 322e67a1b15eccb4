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
