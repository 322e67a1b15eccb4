"""`aplkit run` with the LLM judge pointed at a real local llama.cpp server; a rerun makes zero calls."""

import json
import os
import subprocess
import sys

import pytest

from aplkit.runfolder import read_jsonl
from tests.llama_server import llama_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.server  # and the run it judges is a CLI subprocess that trains

KEY = "sk-test-" + "9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def test_cli_run_with_local_judge_then_rerun_costs_nothing(llama_server, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "aplkit.cli",
        "run",
        "imdb-cpu-judge",
        "--strategy",
        "certainty",
        "--seed",
        "0",
        "--out",
        str(out),
        "--quiet",
    ]
    for s in (
        f"oracle.base_url={llama_server}",
        "model.spec=tiny-random",
        "data.train_size=200",
        "data.test_size=40",
        "acquisition.budget=8",
        "acquisition.acquire_batch=4",
        "acquisition.prompt_batch=8",
        "acquisition.max_new_tokens=8",
        "training.epochs=1",
        "evaluation.test_prompts=4",
        "evaluation.waypoints=[8]",
        "oracle.max_tokens=48",
    ):
        cmd += ["--set", s]
    env = {**os.environ, "OPENAI_API_KEY": KEY, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    asked = summary["oracle"]["calls"]
    assert asked == 8 + 4  # 8 training pairs + 4 evaluation pairs, each asked once
    rows = list(read_jsonl(out / "acquired.jsonl"))
    assert len(rows) == 8 and all(r["raw"] for r in rows)

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.startswith(f"{out} is complete (8 labels") and len(again.stdout.splitlines()) == 1  # nothing runs
    assert json.loads((out / "summary.json").read_text()) == summary
    # a fresh run folder sharing the first run's ledger regenerates the same questions: all answered from cache
    cmd2 = [a if a != str(out) else str(tmp_path / "rerun") for a in cmd] + ["--set", f"oracle.cache={out / 'labels.sqlite'}"]
    fresh = subprocess.run(cmd2, env=env, capture_output=True, text=True, timeout=900)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "oracle: 0 calls, 12 cache hits" in fresh.stdout
    assert [r["choice"] for r in read_jsonl(tmp_path / "rerun" / "acquired.jsonl")] == [r["choice"] for r in rows]
    # the key never reaches disk
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
