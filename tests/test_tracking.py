"""The loop's callback seam and the trackers behind it: what TensorBoard, W&B (offline) and Trackio hold
after a short tiny-random run is read back with each library's own reader and compared with the run folder."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aplkit.callbacks import Callback
from aplkit.checks import load_config
from aplkit.config import ConfigError, ExperimentConfig
from aplkit.loop import run_experiment
from aplkit.runfolder import read_jsonl
from aplkit.tracking import metrics
from tests.test_loop import TINY, _env

SECRET = "sk-test-0123456789abcdef"  # planted in the environment: must not reach any tracker


class Recorder(Callback):
    def __init__(self, log: list, tag: str):
        self.log, self.tag = log, tag

    def on_run_start(self, cfg, run_dir, done):
        self.log.append((self.tag, "start", done))

    def on_step(self, result):
        self.log.append((self.tag, "step", result.step))

    def on_run_end(self, result):
        self.log.append((self.tag, "end", len(result.eval_rows)))

    def close(self):
        self.log.append((self.tag, "close", None))


def test_callbacks_are_called_in_order_for_every_step_and_on_resume(tmp_path):
    cfg = load_config("imdb-cpu", TINY, strategy="random")
    log, plain = [], []
    run_experiment(
        cfg, tmp_path / "r", progress=False, callbacks=[Recorder(log, "a"), Recorder(log, "b")], on_step=lambda r: plain.append(r.step)
    )
    hooks = [("start", 0), *[("step", t) for t in (1, 2, 3)], ("end", 2), ("close", None)]
    assert log == [(tag, h, v) for h, v in hooks for tag in ("a", "b")]
    assert plain == [1, 2, 3]  # on_step= still works, after the callbacks
    # a complete run resumed: start says 3 steps are done, no step runs, end and close still come
    log.clear()
    run_experiment(cfg, tmp_path / "r", progress=False, callbacks=[Recorder(log, "a")])
    assert log == [("a", "start", 3), ("a", "end", 2), ("a", "close", None)]


def test_a_failing_callback_stops_the_run_after_the_committed_step_and_is_closed(tmp_path):
    cfg = load_config("imdb-cpu", TINY, strategy="random")
    log = []

    class Boom(Recorder):
        def on_step(self, result):
            super().on_step(result)
            raise RuntimeError("tracker down")

    with pytest.raises(RuntimeError, match="tracker down"):
        run_experiment(cfg, tmp_path / "r", progress=False, callbacks=[Boom(log, "x")])
    assert log == [("x", "start", 0), ("x", "step", 1), ("x", "close", None)]
    assert [r["step"] for r in read_jsonl(tmp_path / "r" / "steps.jsonl")] == [1]  # step 1 was committed: resumable


def test_tracking_config_parses_from_set_and_rejects_unknown_names():
    assert ExperimentConfig().tracking == []
    assert load_config("imdb-cpu", ["tracking=[tensorboard]"]).tracking == ["tensorboard"]
    assert load_config("imdb-cpu", ["tracking=[tensorboard, wandb]"]).tracking == ["tensorboard", "wandb"]
    with pytest.raises(ConfigError, match=r"^tracking\[0\]: unknown 'mlflow'"):
        load_config("imdb-cpu", ["tracking=[mlflow]"])
    with pytest.raises(ConfigError, match=r"^tracking: tensorboard named more than once"):
        load_config("imdb-cpu", ["tracking=[tensorboard,tensorboard]"])


@pytest.mark.parametrize("name", ["tensorboard", "wandb", "trackio"])
def test_missing_tracker_package_is_one_line_naming_the_extra(monkeypatch, name):
    monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    msg = f"tracking: {name} needs the '{name}' package, which is not installed; pip install 'aplkit[{name}]'"
    with pytest.raises(ConfigError) as e:
        load_config("imdb-cpu", [f"tracking=[{name}]"])
    assert str(e.value) == msg
    from aplkit.tracking import require

    with pytest.raises(ConfigError, match=r"pip install 'aplkit\["):
        require(name)


def test_cli_reports_a_missing_tracker_in_one_line_before_loading(tmp_path):
    code = "import sys; sys.modules['wandb'] = None; from aplkit.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, "run", "imdb-cpu", "--out", str(tmp_path / "r"), "--set", "tracking=[wandb]"]
    p = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "aplkit: error: tracking: wandb needs the 'wandb' package, which is not installed; pip install 'aplkit[wandb]'"
    ]
    assert not (tmp_path / "r").exists()


def test_hparams_are_the_flat_config_without_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    cfg = load_config("imdb-cpu", ["oracle.kind=llm", "oracle.llm.model=m", f"oracle.llm.base_url=http://127.0.0.1:1/v1?key={SECRET}"])
    hp = metrics.hparams(cfg)
    assert hp["acquisition.budget"] == cfg.acquisition.budget and hp["oracle.llm.api_key_env"] == "OPENAI_API_KEY"
    assert hp["oracle.llm.base_url"] == metrics.REDACTED
    assert not any(SECRET in str(v) for v in hp.values())


def test_final_figures_of_a_pool_run_without_a_judge_leave_out_fig_2(tmp_path):
    """Its waypoints are held-out rows only: no win-rate to draw, and the run's end does not fail on it."""
    from tests.synthetic_runs import make_run

    run = make_run(tmp_path, "certainty", 0, {}, task="preferences", oracle="dataset", heldout={16: (0.5, 0.0), 32: (0.7, 0.3)})
    with_judge = make_run(tmp_path / "judged", "certainty", 0, {16: 0.5, 32: 0.6}, heldout={16: (0.5, 0.0), 32: (0.7, 0.3)})
    import matplotlib.pyplot as plt

    assert "fig2_winrate" not in metrics.final_figures(run) and "fig2_winrate" in metrics.final_figures(with_judge)
    plt.close("all")


# --------------------------------------------------------------------------- one run, three trackers


def _wandb_records(path: Path):
    """The records of a W&B transaction log (``run-ID.wandb``): a LevelDB-style log of protobuf ``Record``s."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """One tiny-random run with all three trackers (the dev extra installs them; Trackio's database in a temporary TRACKIO_DIR)."""
    root = tmp_path_factory.mktemp("tracked")
    mp = pytest.MonkeyPatch()
    mp.setenv("TRACKIO_DIR", str(root / "trackio"))  # read when trackio is imported: import it afresh
    mp.setenv("OPENAI_API_KEY", SECRET)
    mp.delenv("WANDB_MODE", raising=False)
    for mod in [m for m in sys.modules if m == "trackio" or m.startswith("trackio.")]:
        mp.delitem(sys.modules, mod)
    try:
        cfg = load_config("imdb-cpu", [*TINY, "tracking=[tensorboard,wandb,trackio]"], strategy="certainty", seed=1)
        res = run_experiment(cfg, root / "run", progress=False)
        from trackio.sqlite_storage import SQLiteStorage

        trackio_logs = SQLiteStorage.get_logs(cfg.name, "certainty-seed1")
    finally:
        mp.undo()
    return root / "run", res, trackio_logs


def _eval(run: Path) -> list[dict]:
    return list(read_jsonl(run / "eval.jsonl"))


@pytest.mark.slow  # reads tracked_run: the experiment trackers
def test_tensorboard_scalars_equal_the_run_folder(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, res, _ = tracked_run
    ea = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    ev = _eval(run)
    assert len(ev) == 2
    for key in ("win_rate", "stderr", "n", "soft_win_rate", "reward_gap", "kl", "lm_loss"):
        got = [(e.step, e.value) for e in ea.Scalars(f"eval/{key}")]
        assert got == [(r["acquired"], pytest.approx(r[key], rel=1e-6)) for r in ev], key
    train = list(read_jsonl(run / "train.jsonl"))
    assert [(e.step, e.value) for e in ea.Scalars("train/loss")] == [
        (i + 1, pytest.approx(r["loss"], rel=1e-6)) for i, r in enumerate(train)
    ]
    steps = list(read_jsonl(run / "steps.jsonl"))
    assert [e.value for e in ea.Scalars("seconds/train")] == [pytest.approx(s["train_s"]) for s in steps]
    acq = list(read_jsonl(run / "acquired.jsonl"))
    for t, e in zip((1, 2, 3), ea.Scalars("acquire/max_score"), strict=True):
        assert e.step == 4 * t and e.value == pytest.approx(max(r["score"] for r in acq if r["step"] == t), rel=1e-6)
    calls = [e.value for e in ea.Scalars("oracle/calls")]
    assert calls == sorted(calls) and calls[-1] == res.summary["oracle"]["calls"] > 0
    assert set(ea.Tags()["images"]) == {"figures/fig2_winrate", "figures/fig3_bt_hist"}
    img = ea.Images("figures/fig2_winrate")[0]
    assert img.step == 12 and img.width > 200 and img.height > 200
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(ea.PluginTagToContent("hparams"))
    assert b"acquisition.budget" in ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]


@pytest.mark.slow  # reads tracked_run: the experiment trackers
def test_wandb_offline_run_holds_the_same_history(tracked_run):
    run, _, _ = tracked_run
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1  # offline unless WANDB_MODE says otherwise: nothing was sent
    (log,) = offline[0].glob("run-*.wandb")
    history, config = [], {}
    for rec in _wandb_records(log):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "run":
            config.update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
    got = [(h["labels"], h["eval/win_rate"], h["eval/stderr"]) for h in history if "eval/win_rate" in h]
    assert got == [(r["acquired"], pytest.approx(r["win_rate"]), pytest.approx(r["stderr"])) for r in _eval(run)]
    losses = [(h["train/epoch"], h["train/loss"]) for h in history if "train/loss" in h]
    assert losses == [(i + 1, pytest.approx(r["loss"])) for i, r in enumerate(read_jsonl(run / "train.jsonl"))]
    assert any("figures/fig2_winrate/path" in h or "figures/fig2_winrate" in h for h in history)
    assert list(offline[0].glob("files/media/images/figures/fig2_winrate*.png"))
    assert config["acquisition.budget"] == 12 and config["strategy"] == "certainty"


@pytest.mark.slow  # reads tracked_run: the experiment trackers
def test_trackio_run_holds_the_same_win_rates(tracked_run):
    run, _, logs = tracked_run
    got = [(r["labels"], r["eval/win_rate"]) for r in logs if "eval/win_rate" in r]
    assert got == [(r["acquired"], pytest.approx(r["win_rate"])) for r in _eval(run)]
    assert any("figures/fig3_bt_hist" in r for r in logs)


@pytest.mark.slow  # reads tracked_run: the experiment trackers
def test_no_tracker_holds_an_environment_secret(tracked_run):
    run, _, _ = tracked_run
    leaks = [p for p in run.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == []


@pytest.mark.slow  # reads tracked_run: the experiment trackers
def test_resuming_with_tracking_added_continues_the_same_run(tracked_run, tmp_path):
    """tracking is not part of the experiment: a finished run resumes with another tracking list."""
    run = shutil.copytree(tracked_run[0], tmp_path / "run")
    run_id = (run / "wandb" / "aplkit-run-id").read_text()
    cfg = load_config("imdb-cpu", [*TINY, "tracking=[wandb]"], strategy="certainty", seed=1)
    again = run_experiment(cfg, run, progress=False)
    assert again.summary["oracle"]["calls"] == 0 and not again.steps
    assert sorted(p.name.endswith(run_id) for p in (run / "wandb").glob("offline-run-*")) == [True, True]
