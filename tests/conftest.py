import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tokenizer():
    from aplkit.models import load_tokenizer

    return load_tokenizer("tiny-random")


@pytest.fixture(scope="session")
def tiny():
    """A seeded 2-layer random Llama with the SmolLM2 tokenizer: mechanics, not quality."""
    import torch

    from aplkit.models import load_models

    torch.set_num_threads(2)
    return load_models("tiny-random", device="cpu", dtype="float32", seed=0)
