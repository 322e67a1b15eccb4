"""python -m bench phases: one step's phases split into their parts by cProfile."""

from __future__ import annotations

import cProfile
import pstats
import time

import pytest

from bench import phases
from tests.test_loop import TINY


def _waits(seconds: float) -> None:
    time.sleep(seconds)


def _calls_twice() -> None:
    _waits(0.05)
    _waits(0.03)


def test_part_seconds_sums_every_call_of_the_named_function_in_the_named_file():
    prof = cProfile.Profile()
    prof.enable()
    _calls_twice()
    prof.disable()
    stats = pstats.Stats(prof)
    here = phases.part_seconds(stats, "tests/test_phases.py", "_waits")
    assert 0.08 <= here < 0.5
    assert phases.part_seconds(stats, "aplkit/generation.py", "_waits") == 0.0  # same name, another file: not counted
    assert phases.part_seconds(stats, "tests/test_phases.py", "_calls_twice") >= here  # inclusive of its callees


@pytest.mark.slow  # two tiny steps
def test_a_certainty_step_after_theta0_shows_its_scoring_pass_and_the_evaluations_parts(tmp_path):
    res = phases.profile_step(
        "imdb-cpu", "certainty", "float32", 2, [s for s in TINY if not s.startswith(("acquisition.budget", "evaluation.waypoints"))]
    )
    assert res["step"] == 2 and res["pairs_trained"] == 8
    ph = res["phases"]
    assert set(ph) == {"acquire", "label", "train", "evaluate"}
    acq, ev = ph["acquire"]["parts"], ph["evaluate"]["parts"]
    assert acq["generation (decode)"] > 0 and acq["θ0 / policy scoring pass"] > 0  # step 2: θ ≠ θ0, so r̂ needs θ0's log-probs
    assert ev["generation (decode)"] > 0 and ev["θ0 pass for the KL"] > 0 and ev["LM loss"] > 0 and ev["judge"] > 0
    assert ev["KL at T = 1"] == 0.0  # evaluation.kl_samples is 0 in the preset
    for r in ph.values():  # inclusive parts of one phase never exceed it (the KL pass runs inside decoding's caller, not in it)
        assert all(0 <= s <= r["seconds"] + 1e-3 for s in r["parts"].values())
    assert any("evaluate" in line for line in phases.lines(res))
    assert res["train_flop_per_s"] == res["train_model_flops"] / ph["train"]["seconds"] > 0


def test_train_tokens_count_both_sequences_of_each_pair_without_padding(tokenizer):
    from aplkit.records import Preference

    a = Preference("A fine film", " truly great", " awful", chosen_ids=[11, 12, 13], rejected_ids=[14])
    b = Preference("Bad", " yes", " no")  # text only: tokenised as the trainer does
    x_a = len(tokenizer("A fine film", add_special_tokens=True)["input_ids"])
    x_b = len(tokenizer("Bad", add_special_tokens=True)["input_ids"])
    y_b = len(tokenizer(" yes", add_special_tokens=False)["input_ids"]) + len(tokenizer(" no", add_special_tokens=False)["input_ids"])
    got = phases.train_tokens(tokenizer, [a, b], [b])
    assert got == {"all": (x_a + 3) + (x_a + 1) + 2 * x_b + y_b, "new": 2 * x_b + y_b}
