"""The physical-limit table reads a run's seconds and its FLOPs from the same model as the dry run."""

from __future__ import annotations

import pytest

from bench.limits import markdown, table


def test_limit_table_of_a_tiny_run(tmp_path):
    from aplkit.budget import run_bill
    from aplkit.checks import load_config
    from aplkit.loop import run_experiment
    from aplkit.runfolder import read_jsonl
    from tests.test_loop import TINY

    cfg = load_config("imdb-cpu", TINY, strategy="random")
    run_experiment(cfg, tmp_path / "run", progress=False)
    rates = {"float32": 1e10, "bfloat16": 2e10}
    rows = {r["phase"]: r for r in table([tmp_path / "run"], rates)}
    steps = list(read_jsonl(tmp_path / "run" / "steps.jsonl"))
    bill = run_bill(cfg)
    for phase, key in (("acquire", "acquire_s"), ("train", "train_s"), ("evaluate", "evaluate_s")):
        r = rows[phase]
        assert r["flops"] == pytest.approx(bill.phases[phase].flops)
        assert r["at_peak"] == pytest.approx(bill.phases[phase].flops / 1e10)
        assert r["seconds"] == pytest.approx(sum(s[key] for s in steps))
        assert r["ratio"] == pytest.approx(r["seconds"] / r["at_peak"])
    assert "| random | train | float32 | 1 |" in markdown(list(rows.values()), rates)
