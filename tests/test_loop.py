"""The Algorithm-1 loop end to end on tiny-random: run folder, determinism, kill and resume."""

import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aplkit.checks import load_config
from aplkit.config import ConfigError
from aplkit.loop import Experiment, run_experiment
from aplkit.runfolder import read_jsonl

#: a tiny run's loop, whatever its data: three steps of M = 4, two epochs, two waypoints (also tests.test_pool.POOL's)
TINY_LOOP = [
    "acquisition.budget=12",
    "acquisition.acquire_batch=4",
    "acquisition.prompt_batch=8",
    "acquisition.max_new_tokens=8",
    "training.epochs=2",
    "training.batch_size=4",
    "training.lr=1e-3",
    "evaluation.test_prompts=8",
    "evaluation.waypoints=[4,12]",
]
TINY = [
    "model.spec=tiny-random",
    "data.train_size=200",
    "data.test_size=40",
    *TINY_LOOP,
    "acquisition.entropy_samples=3",
    "acquisition.entropy_pool=2",
    "evaluation.lm_tokens=16",  # the LM loss's 64-token default over a 49k vocabulary was half a tiny run's time
    "oracle.sentiment_model=vader",
]


def _cli(out: Path, strategy: str = "certainty", extra: list[str] | None = None) -> list[str]:
    args = [sys.executable, "-m", "aplkit.cli", "run", "imdb-cpu", "--strategy", strategy, "--seed", "3", "--out", str(out), "--quiet"]
    for s in TINY + (extra or []):
        args += ["--set", s]
    return args


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def _rows(path: Path, drop=("cached",)) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in drop} for r in read_jsonl(path)]


def _ledger_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("select count(*) from labels").fetchone()[0]


@pytest.mark.parametrize("strategy", ["random", "entropy", "certainty", "entropy+certainty"])
def test_all_strategies_run_and_fill_the_run_folder(tiny_runs, strategy):
    run, res = tiny_runs(strategy)
    for name in (
        "config.yaml",
        "split.json",
        "acquired.jsonl",
        "eval.jsonl",
        "train.jsonl",
        "baseline.jsonl",
        "labels.sqlite",
        "summary.json",
    ):
        assert (run / name).exists(), name
    acq = list(read_jsonl(run / "acquired.jsonl"))
    assert [r["step"] for r in acq] == [1] * 4 + [2] * 4 + [3] * 4
    assert all(r["shown_order"] in ("01", "10") and r["choice"] in ("A", "B", "tie") for r in acq)
    assert all(0.0 <= r["bt_prob"] <= 1.0 for r in acq)
    assert all(abs(r["bt_prob"] - 0.5) < 1e-9 for r in acq if r["step"] == 1)  # θ_1 = θ0: implicit rewards are 0
    ev = list(read_jsonl(run / "eval.jsonl"))
    assert [e["acquired"] for e in ev] == [4, 12] and all(0 <= e["win_rate"] <= 1 and e["n"] > 0 for e in ev)
    train = list(read_jsonl(run / "train.jsonl"))
    assert [(t["step"], t["epoch"]) for t in train] == [(s, e) for s in (1, 2, 3) for e in (1, 2)]
    assert res.summary["complete"] and res.summary["labels"] == 12
    split = json.loads((run / "split.json").read_text())
    assert not set(split["train_ids"]) & set(split["test_ids"])
    if strategy == "entropy":
        assert all(r["entropy"] is not None for r in acq)
    # the pair is stored as the sampled ids (what DPO trains on) beside the text the oracle read
    from aplkit.models import load_tokenizer

    tok = load_tokenizer("tiny-random")
    for r in acq:
        for k in ("y0", "y1"):
            ids = r[f"{k}_ids"]
            assert 0 < len(ids) <= 8 and tok.decode(ids, skip_special_tokens=True) == r[k]
            assert tok.eos_token_id not in ids[:-1]  # EOS, when sampled, ends the completion
    # eval rows count the labels that trained beside the labels acquired
    for e in ev:
        upto = [r for r in acq if r["step"] * 4 <= e["acquired"]]
        assert e["trained"] == sum(r["preferred"] is not None for r in upto)


def test_same_seed_same_acquisitions_and_labels(tmp_path, tiny_runs):
    cfg = load_config("imdb-cpu", TINY, strategy="certainty")
    a = tiny_runs("certainty")[0]
    run_experiment(cfg, tmp_path / "b", progress=False)
    assert _rows(a / "acquired.jsonl") == _rows(tmp_path / "b" / "acquired.jsonl")
    assert _rows(a / "eval.jsonl") == _rows(tmp_path / "b" / "eval.jsonl")


def test_rerun_of_a_complete_run_asks_nothing(tmp_path, tiny_runs):
    cfg = load_config("imdb-cpu", TINY, strategy="random")
    shutil.copytree(tiny_runs("random")[0], tmp_path / "r")
    n = _ledger_rows(tmp_path / "r" / "labels.sqlite")
    again = run_experiment(cfg, tmp_path / "r", progress=False)
    assert again.summary["oracle"]["calls"] == 0
    assert _ledger_rows(tmp_path / "r" / "labels.sqlite") == n


def test_cli_run_of_a_complete_folder_says_so_in_one_line_and_loads_nothing(tmp_path, monkeypatch, capsys):
    """``aplkit run`` again on a finished run: one line saying where its results are, exit 0, no model, no data, no write."""
    from aplkit import cli, data, loop, models

    out = tmp_path / "r"
    args = _cli(out, "random")[3:]  # the command line after ``python -m aplkit.cli``
    assert cli.main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    capsys.readouterr()

    def refuse(*a, **k):
        pytest.fail("a model or the data was loaded")

    for module, name in ((models, "load_models"), (loop, "load_models"), (data, "load_pools"), (loop, "load_pools")):
        monkeypatch.setattr(module, name, refuse)
    assert cli.main(args) == 0
    said = capsys.readouterr()
    assert said.err == "" and said.out.splitlines() == [
        f"{out} is complete ({summary['labels']} labels, final win-rate {summary['final_win_rate']:.3f}); "
        f"its results are in {out / 'eval.jsonl'} and summary.json: nothing to run"
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"} == files
    # another config on the same folder is refused, as before, still before anything loads
    assert cli.main([*args, "--set", "training.lr=5e-4"]) == 2
    assert "different config (training.lr" in capsys.readouterr().err


def test_the_run_folder_says_which_phase_runs_now(tmp_path, monkeypatch):
    """phase.json, read by a sweep's progress lines: setup, then each step's acquire, label, train and evaluate in order,
    each with the step's start."""
    from aplkit.runfolder import PHASE, RunFolder

    notes = []
    note_phase = RunFolder.note_phase

    def record(self, phase, step=None, step_since=None):
        note_phase(self, phase, step, step_since)
        notes.append(self.read_json(PHASE))

    monkeypatch.setattr(RunFolder, "note_phase", record)
    cfg = load_config("imdb-cpu", TINY, strategy="random")
    run_experiment(cfg, tmp_path, progress=False)
    assert [(n["phase"], n["step"]) for n in notes] == [("setup", None)] + [
        (phase, t) for t in range(1, cfg.steps + 1) for phase in ("acquire", "label", "train", "evaluate")
    ]
    for t in range(1, cfg.steps + 1):
        mine = [n for n in notes if n["step"] == t]
        assert len({n["step_since"] for n in mine}) == 1 and mine[0]["step_since"] <= mine[0]["since"]
    assert notes[0]["step_since"] is None and RunFolder(tmp_path).read_json(PHASE) == notes[-1]


def test_resume_refuses_a_different_config(tmp_path, tiny_runs):
    cfg = load_config("imdb-cpu", TINY, strategy="random")
    shutil.copytree(tiny_runs("random")[0], tmp_path / "r")
    other = load_config("imdb-cpu", TINY + ["training.lr=5e-4"], strategy="random")
    with pytest.raises(ConfigError, match="training.lr"):
        Experiment(other, tmp_path / "r", progress=False)
    split = tmp_path / "r" / "split.json"
    data = json.loads(split.read_text())
    data["test_ids"] = data["test_ids"][::-1]  # as if the data package changed under the run
    split.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="test_ids"):
        run_experiment(cfg, tmp_path / "r", progress=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The CLI run never killed, made once for both kill points."""
    ref = tmp_path_factory.mktemp("uninterrupted") / "ref"
    subprocess.run(_cli(ref), env=_env(), check=True, capture_output=True, timeout=600)
    return ref


@pytest.mark.slow  # CLI subprocesses that train
@pytest.mark.parametrize("kill_when", ["after_step_1", "mid_step_2"])
def test_kill_and_resume_matches_uninterrupted(tmp_path, kill_when, uninterrupted):
    """SIGKILL the CLI mid-run, run the same command again: same result, no label asked twice."""
    ref, cut = uninterrupted, tmp_path / "cut"
    proc = subprocess.Popen(_cli(cut), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        steps = [r["step"] for r in read_jsonl(cut / "steps.jsonl")]
        acq = [r["step"] for r in read_jsonl(cut / "acquired.jsonl")]
        if kill_when == "after_step_1" and 1 in steps:
            break
        if kill_when == "mid_step_2" and 2 in acq:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _ledger_rows(cut / "labels.sqlite")
    assert before >= 4  # labels paid for before the kill are on disk

    subprocess.run(_cli(cut), env=_env(), check=True, capture_output=True, timeout=600)
    assert _rows(cut / "acquired.jsonl") == _rows(ref / "acquired.jsonl")
    assert _rows(cut / "eval.jsonl") == _rows(ref / "eval.jsonl")
    assert [r["step"] for r in read_jsonl(cut / "steps.jsonl")] == [1, 2, 3]
    # every question was asked exactly once over both processes: the ledgers hold the same rows
    assert _ledger_rows(cut / "labels.sqlite") == _ledger_rows(ref / "labels.sqlite")
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["complete"] and summary["oracle"]["calls"] == _ledger_rows(ref / "labels.sqlite") - before


def test_readme_scorer_runs_end_to_end_through_load_config(tmp_path):
    """The acquisition package's own example: a scorer registered in a notebook is a strategy the config accepts."""
    import numpy as np

    from aplkit.acquisition import SCORERS, Scorer, register_scorer

    @register_scorer
    class Longest(Scorer):
        name = "longest"

        def score(self, ctx, cands):
            return np.array([len(c.y0) + len(c.y1) for c in cands], float)

    try:
        cfg = load_config("imdb-cpu", TINY, strategy="longest")
        res = run_experiment(cfg, tmp_path / "run", progress=False)
        assert res.summary["complete"] and res.summary["labels"] == 12
        acq = list(read_jsonl(tmp_path / "run" / "acquired.jsonl"))
        assert all(r["score"] == len(r["y0"]) + len(r["y1"]) for r in acq)
    finally:
        SCORERS.pop("longest")
    with pytest.raises(ConfigError, match="strategy: unknown 'longest'"):
        load_config("imdb-cpu", TINY, strategy="longest")


def test_first_step_is_common_to_random_and_certainty(tiny_runs):
    """Common random numbers: at θ0 certainty cannot rank, so its step 1 is random's and the two runs agree there."""
    runs = {}
    for s in ("random", "certainty"):
        run = tiny_runs(s)[0]
        runs[s] = (list(read_jsonl(run / "acquired.jsonl")), list(read_jsonl(run / "eval.jsonl")))
    (ra, re_), (ca, ce) = runs["random"], runs["certainty"]
    first = [(r["prompt_id"], r["y0_ids"], r["y1_ids"], r["preferred"]) for r in ra if r["step"] == 1]
    assert first == [(r["prompt_id"], r["y0_ids"], r["y1_ids"], r["preferred"]) for r in ca if r["step"] == 1]
    assert [e["win_rate"] for e in re_ if e["step"] == 1] == [e["win_rate"] for e in ce if e["step"] == 1]
    assert all(r["score"] == 0.0 for r in ca if r["step"] == 1)


def test_code_version_outside_a_checkout_of_aplkit(tmp_path, monkeypatch):
    """aplkit installed in a venv that sits inside some other git repository: that repository's commit is not
    aplkit's code, so nothing is claimed."""
    import aplkit.provenance as P

    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, capture_output=True, text=True, check=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "theirs.txt").write_text("x")
    git("add", "theirs.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "theirs")
    (tmp_path / "venv" / "aplkit").mkdir(parents=True)
    monkeypatch.setattr(P, "PACKAGE", tmp_path / "venv" / "aplkit")
    v = P.code_version()
    assert {k: v[k] for k in ("commit", "tree", "dirty")} == {"commit": None, "tree": None, "dirty": None}
    assert v["package_hash"] == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's empty tree: the files on disk, none here


@pytest.mark.slow  # a run stopped, resumed and opened again
def test_every_start_of_a_run_is_recorded_with_its_code(tmp_path):
    """A resumed run says which code each part ran under (a study spans commits), dirty when the package differs
    from it; a finished run opened again adds nothing."""
    from aplkit.provenance import code_version
    from aplkit.runfolder import CODE, RunFolder

    class Stop(Exception):
        pass

    def stop(res):
        raise Stop  # the run ends after its first step (a kill between steps)

    cfg = load_config("imdb-cpu", TINY, strategy="random")
    with pytest.raises(Stop):
        run_experiment(cfg, tmp_path, progress=False, on_step=stop)
    run_experiment(cfg, tmp_path, progress=False)  # the resume
    run_experiment(cfg, tmp_path, progress=False)  # finished: no work, no row
    rows = RunFolder(tmp_path).rows(CODE)
    assert len(rows) == 2 and rows[0]["started"] <= rows[1]["started"]
    v = code_version()
    git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, cwd=Path(__file__).parent.parent).stdout.strip()  # noqa: E731
    assert v["commit"] is None or (v["commit"] == git("rev-parse", "HEAD") and v["tree"] == git("rev-parse", "HEAD:aplkit"))
    assert v["commit"] is None or v["dirty"] == bool(git("status", "--porcelain", "--untracked-files=no", "--", "aplkit"))


@pytest.mark.parametrize("objective", ["conditional", "rwr"])
def test_loop_runs_with_a_phf_objective(tmp_path, objective):
    """The bridge: Algorithm 1 fine-tunes on its pairs with a PHF objective; conditional samples never show a control token."""
    from aplkit.models import load_tokenizer

    cfg = load_config("imdb-cpu", TINY + [f"training.objective={objective}"], strategy="certainty")
    exp = Experiment(cfg, tmp_path / "run", progress=False)
    try:
        res = exp.run()
    finally:
        exp.close()
    assert res.summary["complete"] and res.summary["labels"] == 12
    tok = exp.models.tokenizer
    if objective == "conditional":  # every prompt the loop encodes ends in <|good|>; θ and θ0 never emit either control token
        good = tok.convert_tokens_to_ids("<|good|>")
        assert tok("a film", add_special_tokens=True)["input_ids"][-1] == good
        assert sorted(exp.models.policy.aplkit_suppress_tokens) == sorted(exp.models.reference.aplkit_suppress_tokens) == [good, good + 1]
    else:
        assert tok("a film", add_special_tokens=True)["input_ids"] == tok("a film", add_special_tokens=False)["input_ids"]
    train = list(read_jsonl(tmp_path / "run" / "train.jsonl"))
    assert [(t["step"], t["epoch"]) for t in train] == [(s, e) for s in (1, 2, 3) for e in (1, 2)]
    assert all(t["loss"] > 0 for t in train)
    acq = list(read_jsonl(tmp_path / "run" / "acquired.jsonl"))
    vocab = len(load_tokenizer("tiny-random"))  # control tokens are appended after the base vocabulary
    assert not any(t >= vocab for r in acq for k in ("y0_ids", "y1_ids") for t in r[k])
    assert any(r["reward0"] != 0.0 for r in acq if r["step"] > 1)  # θ moved away from θ0
    assert all(math.isfinite(r[k]) for r in acq for k in ("reward0", "reward1"))  # a prompt's <|good|> is read, not scored


def _evals(run: Path) -> tuple[list[str], list[dict]]:
    keep = ("win_rate", "kl", "lm_loss", "lm_loss_theta0")
    base = [r["completion"] for r in read_jsonl(run / "baseline.jsonl")]
    return base, [{k: r[k] for k in keep} for r in read_jsonl(run / "eval.jsonl")]


@pytest.mark.slow  # four tiny runs
def test_every_objective_of_a_seed_is_judged_against_one_theta0_whichever_ran_first(tmp_path, monkeypatch, tiny_theta0_shared):
    """θ0's baseline completions and LM loss are θ0's as deployed (no control token), shared by the objectives of a
    seed: DPO's numbers do not depend on whether a conditional run of the same seed filled the store first."""
    runs = {}
    for order in (("dpo", "conditional"), ("conditional", "dpo")):
        monkeypatch.setenv("APLKIT_CACHE", str(tmp_path / "cache" / "-".join(order)))
        for objective in order:
            cfg = load_config("imdb-cpu", TINY + ["acquisition.budget=4", "evaluation.waypoints=[4]", f"training.objective={objective}"])
            out = tmp_path / "-".join(order) / objective
            run_experiment(cfg, out, progress=False)
            runs[order, objective] = _evals(out)
    for objective in ("dpo", "conditional"):
        assert runs[("dpo", "conditional"), objective] == runs[("conditional", "dpo"), objective]
    (base_dpo, ev_dpo), (base_cond, ev_cond) = runs[("dpo", "conditional"), "dpo"], runs[("dpo", "conditional"), "conditional"]
    assert base_cond == base_dpo  # one θ0 reference for both arms
    assert ev_cond[0]["lm_loss_theta0"] == ev_dpo[0]["lm_loss_theta0"]


def test_conditional_policy_at_theta0_scores_held_out_text_as_theta0_does(tmp_path):
    """Before any training the conditional policy is θ0 with two control tokens it never emits: with those masked and
    the held-out texts encoded without ``<|good|>``, its LM loss is θ0's, and its KL from θ0 along its samples is 0."""
    cfg = load_config("imdb-cpu", TINY + ["training.objective=conditional"])
    exp = Experiment(cfg, tmp_path / "run", progress=False)
    try:
        ev, tok = exp.evaluator, exp.models.tokenizer
        controls = {tok.convert_tokens_to_ids(t) for t in ("<|good|>", "<|bad|>")}
        assert ev._lm_ids and not any(t in controls for ids in ev._lm_ids for t in ids)
        assert ev.lm_loss(exp.models.policy) == pytest.approx(ev.lm_loss_theta0(), abs=1e-5)
        samples = ev.sample(exp.models.policy, 5, kl=True)
        assert max(ev.kl_path(samples)) == pytest.approx(0.0, abs=1e-5)
    finally:
        exp.close()


@pytest.mark.slow  # a second process, a run, the folder claimed again from a third
def test_a_second_process_in_a_running_folder_stops_in_one_line_and_a_kill_frees_it(tmp_path):
    """Two writers in one folder would interleave steps and label pairs twice: the second stops before any work,
    naming the holder; the lock dies with its process (SIGKILL too), so the resume after a kill is not blocked."""
    from aplkit.errors import RunFolderBusy

    run = tmp_path / "r"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from aplkit.runfolder import RunFolder; RunFolder({str(run)!r}).ensure().claim(); print('held', flush=True); input()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        cfg = load_config("imdb-cpu", TINY, strategy="random")
        with pytest.raises(RunFolderBusy, match=rf"in use by another process \(pid {holder.pid}\)"):
            run_experiment(cfg, run, progress=False)
        assert not (run / "config.yaml").exists()  # refused before it wrote anything
    finally:
        holder.kill()
        holder.wait()
    res = run_experiment(cfg, run, progress=False)  # the killed holder's lock is gone with it
    assert res.summary["complete"]
    # within one process the folder is re-entrant (a notebook cell run again), and a finished run gives it back
    exp = Experiment(cfg, run, progress=False)
    Experiment(cfg, run, progress=False).close()
    exp.close()
    again = subprocess.run(
        [sys.executable, "-c", f"from aplkit.runfolder import RunFolder; RunFolder({str(run)!r}).claim(); print('ok')"],
        capture_output=True,
        text=True,
    )
    assert again.stdout.strip() == "ok", again.stderr
