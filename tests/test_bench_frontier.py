"""``python -m bench frontier``: the plan file, the pinned checkout it runs from, and a tiny study end to end."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
import yaml

from aplkit.config import ConfigError
from bench import frontier as BF
from tests.test_loop import TINY

PLAN = {
    "name": "tiny-frontier",
    "commit": "0123456789abcdef0123456789abcdef01234567",
    "question": "does certainty move the frontier?",
    "config": "imdb-cpu",
    "overrides": [s for s in TINY if not s.startswith(("acquisition.budget", "training.epochs", "evaluation.waypoints"))],
    "strategies": ["random", "certainty"],
    "seeds": "2",
    "budgets": [4, 12],
    "epochs": 2,
    "kl_samples": 1,
    "kl_grid": [0.0, 0.002, 0.004],
    "primary": {"metric": "win_rate", "budget": 12},
    "family": ["task", "acquired", "metric"],
    "look": 2,
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    git(path, "config", "user.name", "t")
    git(path, "config", "user.email", "t@t")
    return path


def commit(root: Path, message: str, **files: str) -> str:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
        git(root, "add", name)
    git(root, "commit", "-qm", message)
    return git(root, "rev-parse", "HEAD")


def write_plan(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**PLAN, **changes}, sort_keys=False))
    return path


def test_a_plan_loads_with_every_declared_field(tmp_path):
    plan = BF.load_plan(write_plan(tmp_path / "p.yaml"))
    assert plan.seed_list == [0, 1] and plan.reading == 2 and plan.primary.budget == 12 and plan.kl_grid == [0.0, 0.002, 0.004]
    sets = plan.settings()
    assert sets[-6:] == [
        "name=tiny-frontier",
        "acquisition.budget=12",
        "training.epochs=2",
        "evaluation.waypoints=[4,12]",
        "evaluation.epoch_points=[4,12]",
        "evaluation.kl_samples=1",
    ]
    cfg = BF.planned_configs(plan)[("certainty", 1)]
    assert cfg.evaluation.epoch_points == [4, 12] and cfg.evaluation.kl_samples == 1 and cfg.name == "tiny-frontier"
    assert list(BF.planned_configs(plan)) == [("random", 0), ("certainty", 0), ("random", 1), ("certainty", 1)]


def test_a_secondary_family_runs_at_its_own_seeds_and_is_read_as_a_family_of_its_own(tmp_path):
    """The study's design: certainty alone at every seed, a secondary family at the first two; random at every seed."""
    plan = BF.load_plan(
        write_plan(
            tmp_path / "p.yaml",
            strategies=["random", "certainty", "bald", "d-optimal"],
            seeds="3",
            seeds_of={"bald": "0-1", "d-optimal": "0-1"},
            families=[["certainty"], ["bald", "d-optimal"]],
            look=3,
        )
    )
    assert plan.seeds_for_strategy("bald") == [0, 1] and plan.seeds_for_strategy("certainty") == [0, 1, 2]
    assert plan.groups() == {"certainty": "certainty", "bald": "bald, d-optimal", "d-optimal": "bald, d-optimal"}
    assert list(BF.planned_configs(plan)) == [
        ("random", 0), ("certainty", 0), ("bald", 0), ("d-optimal", 0),
        ("random", 1), ("certainty", 1), ("bald", 1), ("d-optimal", 1),
        ("random", 2), ("certainty", 2),
    ]  # fmt: skip
    assert BF.load_plan(write_plan(tmp_path / "q.yaml")).groups() == {"certainty": "all"}  # no families: one


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"strategies": ["random", "certainty", "bald"], "families": [["certainty"]]}, "families: each strategy but random in exactly one"),
        ({"families": [["certainty"], []]}, "families: each strategy but random in exactly one non-empty family"),
        ({"seeds_of": {"random": "0-1"}}, "seeds_of.random: a strategy of the plan other than random"),
        ({"seeds_of": {"certainty": "5-6"}}, "seeds_of.certainty: at least 2 of the plan's seeds (2)"),
        ({"seeds_of": {"certainty": "x"}}, "seeds_of.certainty:"),
    ],
)
def test_a_family_or_seed_mistake_stops_in_one_line_naming_the_key(tmp_path, change, says):
    path = write_plan(tmp_path / "p.yaml", **change)
    with pytest.raises(ConfigError) as e:
        BF.load_plan(path)
    assert str(e.value).startswith(f"{path}: ") and says in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"commit": "main"}, "commit: the commit the runs are made from"),
        ({"strategies": ["certainty", "entropy"]}, "strategies: random (the baseline)"),
        ({"budgets": [12, 4]}, "budgets: increasing"),
        ({"epochs": 1}, "epochs: at least 2"),
        ({"kl_samples": 0}, "kl_samples: at least 1"),
        ({"kl_grid": [1.0]}, "kl_grid: at least two increasing"),
        ({"primary": {"metric": "kl", "budget": 12}}, "primary.metric: one of win_rate, soft_win_rate, reward_gap"),
        ({"primary": {"metric": "win_rate", "budget": 8}}, "primary.budget: one of the budgets [4, 12]"),
        ({"family": ["seed"]}, "family: key cells among"),
        ({"look": 3}, "look: the one seed count the study is read at, 2..2"),
        ({"seeds": "1-0"}, "seeds:"),
        ({"budget": [4]}, "unknown config key 'budget'"),
    ],
)
def test_a_plan_with_a_mistake_stops_in_one_line_naming_the_key(tmp_path, change, says):
    path = write_plan(tmp_path / "p.yaml", **change)
    with pytest.raises(ConfigError) as e:
        BF.load_plan(path)
    assert str(e.value).startswith(f"{path}: ") and says in str(e.value) and "\n" not in str(e.value)


def test_the_study_runs_only_from_the_plans_commit(tmp_path):
    root = repo(tmp_path / "checkout")
    first = commit(root, "code", **{"aplkit/x.py": "1\n"})
    records = root / "bench/results/frontier/tiny"
    assert BF.pinned(first, records, root) is None
    assert BF.pinned(first[:12], records, root) is None  # an abbreviated commit
    commit(root, "a record as it lands", **{"bench/results/frontier/tiny/random/seed0.json": "{}\n"})
    assert BF.pinned(first, records, root) is None  # only the study's own records since: still the plan's code
    (root / "aplkit/x.py").write_text("2\n")
    assert "differs from its commit (aplkit/x.py)" in BF.pinned(first, records, root)
    commit(root, "other code", **{"aplkit/x.py": "2\n"})
    why = BF.pinned(first, records, root)
    assert why.startswith(f"this checkout is at {git(root, 'rev-parse', 'HEAD')[:12]}, the plan runs from {first[:12]}")
    assert f"git worktree add ../study {first[:12]}" in why
    assert "not in this repository" in BF.pinned("fedcba9876543210", records, root)


def test_the_plan_file_committed_after_the_code_it_names_is_still_the_plans_code(tmp_path):
    """The plan names the commit of its code, so it is committed after it: that commit, and the records, are all that may follow."""
    root = repo(tmp_path / "checkout")
    code = commit(root, "code", **{"aplkit/x.py": "1\n"})
    plan = root / "bench/plans/tiny.yaml"
    commit(root, "the plan", **{"bench/plans/tiny.yaml": f"commit: {code}\n"})
    records = root / "bench/results/frontier/tiny"
    assert BF.pinned(code, records, root, plan=plan) is None
    assert "the plan runs from" in BF.pinned(code, records, root)  # without naming its plan, the plan's commit is a change
    commit(root, "a record as it lands", **{"bench/results/frontier/tiny/random/seed0.json": "{}\n"})
    assert BF.pinned(code, records, root, plan=plan) is None
    commit(root, "another plan", **{"bench/plans/other.yaml": "commit: x\n"})
    assert "the plan runs from" in BF.pinned(code, records, root, plan=plan)  # another file changed since the code


def test_the_plan_must_be_committed_as_it_is(tmp_path):
    root = repo(tmp_path / "plans")
    plan = write_plan(root / "p.yaml")
    assert "is not committed" in BF.committed(plan)
    commit(root, "the plan", **{"p.yaml": plan.read_text()})
    assert BF.committed(plan) is None
    write_plan(plan, look=0)
    assert "differs from its commit" in BF.committed(plan)


def test_main_refuses_to_run_from_another_commit_and_runs_nothing(tmp_path, monkeypatch):
    """A committed plan whose commit is not this checkout's: one line, before any run folder or record exists."""
    root = repo(tmp_path / "plans")
    plan = write_plan(root / "p.yaml", commit=git(Path(BF.ROOT), "rev-list", "--max-parents=0", "HEAD").splitlines()[0])
    commit(root, "the plan", **{"p.yaml": plan.read_text()})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        BF.main(["--plan", str(plan), "--records", str(tmp_path / "rec")])
    assert str(e.value).startswith("bench frontier: this checkout is at ") and "run it from a checkout at the plan's commit" in str(e.value)
    assert not (tmp_path / "rec").exists() and not (tmp_path / "runs").exists()


def test_stop_by_starts_no_run_its_strategys_records_say_would_end_after_it(tmp_path, monkeypatch, capsys):
    """30 min before --stop-by an hour-long certainty run is not started; random's minute-long runs are."""
    from datetime import datetime, timedelta

    from bench import labels

    plan = write_plan(tmp_path / "p.yaml")
    monkeypatch.setattr(BF, "committed", lambda path: None)  # this checkout is not at the plan's made-up commit
    monkeypatch.setattr(BF, "pinned", lambda commit, records, plan=None: None)
    here = {"cpu": "EPYC", "isa": "avx512f", "cores": 2}
    monkeypatch.setattr(labels, "machine", lambda: here)
    rec = tmp_path / "rec"
    for s, secs in (("random", 60), ("certainty", 3600)):  # an earlier seed's records: only their wall times are read
        path = labels.record_path(rec, s, 9)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"head": {"summary": {"wall_seconds": secs, "complete": True}, "code": [{"machine": here}]}}))
    calls = []

    def fake_run(cfg, run_dir, progress=True, on_step=None):
        calls.append((cfg.strategy, cfg.seed))
        raise RuntimeError("no run needed here")

    monkeypatch.setattr("aplkit.loop.run_experiment", fake_run)
    stop = (datetime.now() + timedelta(minutes=30)).isoformat(timespec="minutes")
    BF.main(["--plan", str(plan), "--records", str(rec), "--out", str(tmp_path / "runs"), "--stop-by", stop])
    assert calls == [("random", 0), ("random", 1)]
    said = capsys.readouterr().out
    assert "certainty seed 0: not started: ≈ 60 min (1 record made on this machine) would end at" in said
    with pytest.raises(SystemExit, match=r"^--stop-by: expected HH:MM or an ISO date-time"):
        BF.main(["--plan", str(plan), "--records", str(rec), "--stop-by", "soon"])


@pytest.mark.slow  # a subprocess or several tiny runs
def test_a_tiny_study_end_to_end_and_its_report_from_the_records(tmp_path, monkeypatch):
    plan = write_plan(tmp_path / "p.yaml")
    monkeypatch.setattr(BF, "committed", lambda path: None)  # this checkout is not at the plan's made-up commit
    monkeypatch.setattr(BF, "pinned", lambda commit, records, plan=None: None)
    rec = tmp_path / "rec"
    args = ["--plan", str(plan), "--records", str(rec), "--out", str(tmp_path / "runs")]
    assert BF.main([*args, "--shard", "0/2"]) == 0  # half the runs: an interim the report refuses to read as the plan's
    with pytest.raises(SystemExit, match=r"of the plan's 2 seeds have every strategy recorded; the plan is read once, at 2"):
        BF.main([*args, "--report-only"])
    assert BF.main([*args, "--shard", "1/2"]) == 0
    from bench.archive import read_record

    r = read_record(rec / "certainty" / "seed1.json")
    assert [(e["step"], e["epoch"]) for e in r["eval_epochs"]] == [(1, 1), (3, 1)] and all(e["kl_t1"] > 0 for e in r["eval"])
    summary = json.loads((rec / "summary.json").read_text())
    assert summary["kl_axis"] == "kl_t1" and summary["reading"] == {"seeds": [0, 1], "look": 2, "interim": False}
    (p,) = summary["primary"]
    assert (p["strategy"], p["acquired"], p["metric"]) == ("certainty", 12, "win_rate") and p["n"] + p["left_out"] == 2
    assert {(c["acquired"], c["metric"]) for c in summary["comparison"]} >= {(4, "win_rate"), (12, "win_rate")}
    assert [c["kl"] for c in summary["per_point"]] == PLAN["kl_grid"]
    assert (rec / "figures" / "frontier.png").stat().st_size > 1000
    md = (rec / "figures" / "frontier.md").read_text()
    assert "The plan's reading at 2 seeds" in md and "x-axis: KL from θ0 (T = 1)" in md
    # rebuilt from the records alone: the same numbers
    (rec / "summary.json").unlink()
    assert BF.main([*args, "--report-only"]) == 0
    again = json.loads((rec / "summary.json").read_text())
    assert again["primary"] == summary["primary"] and again["label_saving"] == summary["label_saving"]
    # the β check: copies of random seed 0's record with every win-rate set to 1.05 (above any frontier of win-rates)
    # and to 0.4 (below θ0's ½, where every frontier starts) read above / below the preset's frontier
    for value, beta in ((1.05, "0.5"), (0.4, "0.1")):
        raw = json.loads((rec / "random" / "seed0.json").read_text())
        for row in (*raw["eval"], *raw["eval_epochs"]):
            row["win_rate"] = value
        (rec / f"beta-{beta}" / "random").mkdir(parents=True)
        (rec / f"beta-{beta}" / "random" / "seed0.json").write_text(json.dumps(raw))
    assert BF.main([*args, "--report-only", "--beta-check"]) == 0
    check = json.loads((rec / "beta-check.json").read_text())
    by_beta = {b: {p["reading"] for p in check["points"] if p["beta"] == b} for b in (0.5, 0.1)}
    assert by_beta == {0.5: {"above"}, 0.1: {"below"}} and {p["acquired"] for p in check["points"]} == {12}
    assert len(check["points"]) == 2 * 2  # two epochs at the primary budget, each run
    assert "β 0.5: 2 above" in (rec / "figures" / "beta.md").read_text() and (rec / "figures" / "beta.png").stat().st_size > 1000
    # a record made under other code: a second stratum, refused unless pooled on request
    path = rec / "certainty" / "seed1.json"
    raw = json.loads(path.read_text())
    raw["head"]["code"] = [{**c, "package_hash": "f" * 40} for c in raw["head"]["code"]]
    path.write_text(json.dumps(raw))
    with pytest.raises(SystemExit, match=r"the paired seeds come from 2 strata"):
        BF.main([*args, "--report-only"])
    assert BF.main([*args, "--report-only", "--pool-strata"]) == 0
    pooled = (rec / "figures" / "frontier.md").read_text()
    assert "in each stratum (code version · CPU), before pooling" in pooled and "ffffffffffff" in pooled


def test_the_pilot_reading_applies_its_rules_by_hand(tmp_path):
    """Rule 1: hi = the smallest reach at 64 labels (random's seed 2 stops at 1.5), grid 0.2..0.8 × hi; rule 2: the SD of
    the paired height difference over that grid, and the seeds it asks for."""
    from aplkit.results import frontier as F
    from tests.test_frontier import run

    line = [(1.0, 0.6), (2.0, 0.7)]  # random's frontier v = 0.5 + 0.1·KL through θ0's (0, ½)
    for k, d in enumerate((0.0, 0.02, 0.04)):
        run(tmp_path, "random", k, {32: [(0.5, 0.55), (1.0, 0.6)], 64: line if k < 2 else [(0.75, 0.575), (1.5, 0.65)]})
        run(tmp_path, "certainty", k, {32: [(0.2, 0.52), (0.4, 0.55)], 64: [(1.0, 0.65 + d), (2.5, 0.8 + d)]})
    plan = BF.FrontierPlan(name="p", commit="0123abc", seeds="0-2", budgets=[32, 64], kl_grid=[0.5, 1.0])
    plan.primary = BF.Endpoint("win_rate", 64)
    got = BF.pilot_reading(F.frontier_points(tmp_path), plan)
    assert got["hi"] == pytest.approx(1.5) and got["grid"] == [0.3, 0.6, 0.9, 1.2]  # the 32-label frontiers are not read
    # random's mean height over [0.3, 1.2] is 0.575; certainty's with both points raised by d: 0.611389 + 0.727778·d
    assert got["certainty"]["differences"] == pytest.approx([0.036389 + 0.727778 * d for d in (0.0, 0.02, 0.04)], abs=1e-6)
    assert got["certainty"]["sd"] == pytest.approx(0.727778 * 0.02, abs=1e-6)
    assert got["certainty"]["seeds"] == 9  # the floor: 2.306 · 0.0146 / 3 is well inside ±0.03
    bias = got["certainty"]["null_bias"]  # descriptive (F.null_bias, checked by enumeration in test_frontier)
    assert math.isfinite(bias["mean"]) and 0 < bias["se"] < 0.01
    # rules 1-4 make the study's plan: the grid, 9 seeds from 400, the secondary three at the first nine, one look
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(BF.study_plan(got, plan, "89abcde")))
    study = BF.load_plan(tmp_path / "study.yaml")
    assert study.kl_grid == [0.3, 0.6, 0.9, 1.2] and study.seed_list == list(range(400, 409)) and study.look == 9
    assert study.strategies == ["random", "certainty", "entropy+certainty", "bald", "d-optimal"] and study.commit == "89abcde"
    assert study.groups() == {
        "certainty": "certainty",
        **dict.fromkeys(["entropy+certainty", "bald", "d-optimal"], "entropy+certainty, bald, d-optimal"),
    }
    assert study.seeds_for_strategy("bald") == list(range(400, 409)) and study.seeds_for_strategy("random") == list(range(400, 409))
    assert (study.budgets, study.epochs, study.kl_samples, study.primary) == ([32, 64], 4, 1, BF.Endpoint("win_rate", 64))
    more = {**got, "certainty": {**got["certainty"], "seeds": 14}}  # rule 2 asking for 14: the secondary stays at nine
    study = BF.FrontierPlan(**{k: v for k, v in BF.study_plan(more, plan, "89abcde").items() if k != "primary"})
    assert study.seed_list == list(range(400, 414)) and study.look == 14 and study.seeds_for_strategy("d-optimal") == list(range(400, 409))


def test_seeds_for_a_half_width_by_hand():
    assert BF.seeds_for(0.05) == 14  # t₁₂ 2.179 · 0.05 / √13 = 0.0302 > 0.03; t₁₃ 2.160 · 0.05 / √14 = 0.0289
    assert BF.seeds_for(1.0) == 30 and BF.seeds_for(0.001) == 9  # the cap and the floor


def test_the_pilot_is_read_only_once_every_planned_run_is_recorded(tmp_path):
    plan = write_plan(tmp_path / "p.yaml")
    with pytest.raises(SystemExit, match=r"^bench frontier: the pilot is read once every planned run is recorded; not yet: random seed 0"):
        BF.main(["--plan", str(plan), "--records", str(tmp_path / "rec"), "--report-only", "--pilot-reading"])


def test_a_seed_is_complete_when_every_run_planned_at_it_is_recorded(tmp_path):
    """With a secondary family at seeds 0–1 the plan is read at 3 seeds once seed 2 has random and certainty; a seed
    missing a secondary run is not complete."""
    import shutil

    from aplkit.results import frontier as F
    from tests.test_frontier import run

    plan = BF.load_plan(
        write_plan(
            tmp_path / "p.yaml", strategies=["random", "certainty", "bald"], seeds="3", seeds_of={"bald": "0-1"}, kl_grid=[0.5, 1.0], look=3
        )
    )
    configs = dict.fromkeys(BF.planned_configs(plan))
    root = tmp_path / "runs"
    for s, k in configs:
        run(root, s, k, {4: [(0.5, 0.55), (1.0, 0.6)], 12: [(1.0, 0.6 + 0.01 * k), (2.0, 0.7)]}, folder=f"{s}/seed{k}")
    got = BF.summarise(plan, root, tmp_path / "fig", configs, pool_strata=False, interim=False)
    assert got["reading"] == {"seeds": [0, 1, 2], "look": 3, "interim": False}
    # beside each primary difference, descriptive: the running max's lean under one shared frontier (F.null_bias)
    pts = F.frontier_points(root)
    for s in ("certainty", "bald"):
        want = F.null_bias(pts, plan.kl_grid, 12, s, kl="kl_t1")
        assert (got["null_bias"][s]["mean"], got["null_bias"][s]["se"]) == pytest.approx(want)
    assert "What the running max alone adds under one shared frontier" in got["markdown"] and "bald " in got["markdown"]
    shutil.rmtree(root / "bald" / "seed1")
    with pytest.raises(BF.BeforeLook, match="2 of the plan's 3 seeds have every strategy recorded"):
        BF.summarise(plan, root, tmp_path / "fig", configs, pool_strata=False, interim=False)
