import gc
import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):  # make test runs two workers (-n 2): one core each, not two threads each on two
    os.environ.setdefault("OMP_NUM_THREADS", "1")

pytest_plugins = ["tests.tiers", "pytester"]  # the fast and slow tiers, the guards that keep a test in its tier; pytester tests them


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """What is alive when a test starts (models, data, every earlier test's leftovers) is frozen out of the garbage
    collector until it ends, so a full collection scans only what the test made: statsmodels' Holm correction
    (``aplkit.results.stats.holm``) calls ``gc.collect()`` every time, half a second in a whole session's heap."""
    gc.freeze()
    try:
        return (yield)
    finally:
        gc.unfreeze()


def _empty_hf_home(monkeypatch, tmp_path, offline: str):
    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("HF_HOME", str(home))
    for var in ("HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE"):
        monkeypatch.delenv(var, raising=False)
    return home


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` run where torch sees a GPU and are skipped elsewhere."""
    needs = [item for item in items if "cuda" in item.keywords]
    if not needs:
        return
    import torch

    if not torch.cuda.is_available():
        for item in needs:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture
def hub_online(monkeypatch, tmp_path):
    """Online (HF_HUB_OFFLINE=0) with a fresh, empty Hugging Face cache (HF_HOME); returns HF_HOME. Nothing here downloads."""
    return _empty_hf_home(monkeypatch, tmp_path, "0")


@pytest.fixture
def hub_offline(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1 with a fresh, empty Hugging Face cache (HF_HOME); returns HF_HOME."""
    return _empty_hf_home(monkeypatch, tmp_path, "1")


@pytest.fixture(scope="session")
def tokenizer():
    from aplkit.models import load_tokenizer

    return load_tokenizer("tiny-random")


@pytest.fixture(scope="session")
def tiny():
    """A seeded 2-layer random Llama with the SmolLM2 tokenizer: mechanics, not quality."""
    import torch

    from aplkit.models import load_models

    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)  # under -n 2 each worker has one core
    return load_models("tiny-random", device="cpu", dtype="float32", seed=0)


@pytest.fixture()
def scorer_module(tmp_path):
    """``write(stem, name, text)``: a researcher's scorer module in tmp_path; its registration and module are forgotten afterwards."""
    import sys

    from aplkit.acquisition import SCORERS

    made = []

    def write(stem: str, name: str, text: str):
        path = tmp_path / f"{stem}.py"
        path.write_text(text)
        made.append((stem, name))
        return path

    yield write
    for stem, name in made:
        SCORERS.pop(name, None)
        sys.modules.pop(stem, None)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """``tiny_runs(strategy)`` → (folder, result): a finished run of ``tests.test_loop.TINY`` at seed 0, made once a
    session and read by several tests; copy the folder before resuming or changing it."""
    from aplkit.checks import load_config
    from aplkit.loop import run_experiment
    from tests.test_loop import TINY

    made = {}

    def get(strategy: str):
        if strategy not in made:
            folder = tmp_path_factory.mktemp("tiny-run") / strategy.replace("+", "_")
            made[strategy] = folder, run_experiment(load_config("imdb-cpu", TINY, strategy=strategy), folder, progress=False)
        return made[strategy]

    return get


@pytest.fixture
def tiny_theta0_shared(monkeypatch, tmp_path):
    """θ0's values are shared across runs for the embedded model only; share tiny-random's too, in a fresh store
    (APLKIT_CACHE=tmp_path/cache). The spec stays tiny-random: nothing loads the embedded model."""
    from aplkit import theta0
    from aplkit.models import EMBEDDED

    monkeypatch.setenv("APLKIT_CACHE", str(tmp_path / "cache"))
    real = theta0.shared
    monkeypatch.setattr(theta0, "shared", lambda spec, parts, compute: real(EMBEDDED, {**parts, "run_spec": spec}, compute))
