"""bf16 against fp32 (python -m bench dtype): the adoption rule on hand-made intervals, and both arms of a tiny plan."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench import dtype
from tests.test_loop import TINY


def test_rule_adopts_only_when_every_interval_lies_inside_the_margin():
    rows = [
        {"metric": "win_rate", "acquired": 16, "t_low": -0.03, "t_high": 0.04},
        {"metric": "soft_win_rate", "acquired": 16, "t_low": -0.01, "t_high": 0.02},
        {"metric": "kl", "acquired": 16, "t_low": -0.9, "t_high": 0.9},  # not a rule metric
    ]
    assert dtype.verdict(pd.DataFrame(rows), 16) == (True, [])
    rows[0]["t_high"] = 0.051
    adopt, why = dtype.verdict(pd.DataFrame(rows), 16)
    assert not adopt and why == ["win_rate at 16 labels: [-0.030, +0.051] not inside ±0.05"]
    fp = pd.DataFrame({"acquired": [16, 16], "kl": [1.0, 3.0]})
    bf = pd.DataFrame({"acquired": [16, 16], "kl": [2.0, 2.6]})
    assert abs(dtype.kl_ratio(bf, fp, 16) - 0.15) < 1e-12  # 2.3 / 2.0 − 1


@pytest.mark.slow  # a tiny run per arm
def test_both_arms_of_a_tiny_plan_are_recorded_and_paired(tmp_path, monkeypatch):
    import aplkit.provenance as prov

    monkeypatch.setattr(prov, "machine", lambda: {"cpu": "test CPU", "isa": "avx512_bf16", "cores": 2})
    args = ["--seeds", "0-0", "--records-root", str(tmp_path / "rec"), "--out", str(tmp_path / "runs")]
    for s in [*TINY, "acquisition.budget=8", "evaluation.waypoints=[4,8]"]:
        args += ["--set", s]
    assert dtype.main(args) == 0
    doc = json.loads((tmp_path / "rec" / "imdb-cpu-comparison" / "comparison.json").read_text())
    assert doc["pairs"] == 1 and set(doc["seconds"]) == {"float32", "bfloat16"}
    assert {(r["metric"], r["acquired"]) for r in doc["comparison"]} >= {("win_rate", 4), ("win_rate", 8), ("kl", 8)}
    for d in ("float32", "bfloat16"):
        rec = json.loads((tmp_path / "rec" / f"imdb-cpu-{d}" / "random" / "seed0.json").read_text())
        assert rec["head"]["config"]["model"]["dtype"] == d
    assert "Keep fp32" in doc["markdown"] or "Adopt bf16" in doc["markdown"]
    assert "| bf16 − fp32 |" in doc["markdown"] and "each bf16 run with the fp32 run of the same strategy and seed" in doc["markdown"]
    assert "DPO" not in doc["markdown"]  # the arms are two dtypes of one objective
    # a plan of two seeds with one pair in: read once both are, or --interim with no decision
    two = [*args, "--seeds", "0-1", "--report-only"]
    with pytest.raises(SystemExit, match=r"1 of the plan's 2 pairs are recorded in both arms.*--interim"):
        dtype.main(two)
    assert dtype.main([*two, "--interim"]) == 0
    doc = json.loads((tmp_path / "rec" / "imdb-cpu-comparison" / "comparison.json").read_text())
    assert doc["adopt"] is None and "No decision: interim, not the plan's reading" in doc["markdown"]
    assert "Keep fp32" not in doc["markdown"] and "Adopt bf16" not in doc["markdown"]
