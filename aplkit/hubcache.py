"""What the Hugging Face libraries can load with no network, answered without any network or torch.

aplkit never downloads a model while it runs: a hub id (``model.spec``, ``oracle.classifier.model``)
must already be in the local hub cache, whether ``HF_HUB_OFFLINE`` is set or not, and is loaded with
``local_files_only``. Config validation asks here and refuses a missing one in one line naming the
field, with the command that fetches it once (``hf download ID``) — rather than after torch has
loaded, in the libraries' message about internet connections, or after their network timeouts.

Hub data sets follow the libraries' own rule: with ``HF_HUB_OFFLINE`` (or ``HF_DATASETS_OFFLINE``)
set, ``datasets.load_dataset`` can only read its local cache, and one missing there is refused here
in one line; without offline mode a hub data set is taken as it looks.

The environment is read at call time, by the rules the libraries apply when they are imported
(``huggingface_hub.constants``, ``datasets.config``), so a process and its config check agree.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub.constants.ENV_VARS_TRUE_VALUES


def _is_true(value: str | None) -> bool:
    return value is not None and value.upper() in _TRUE


def offline_variable(datasets: bool = False) -> str | None:
    """The variable that puts the hub (or, with ``datasets``, the datasets library) offline; None when online.

    huggingface_hub reads ``HF_HUB_OFFLINE`` or else ``TRANSFORMERS_OFFLINE``; datasets reads
    ``HF_DATASETS_OFFLINE`` when it is set and the hub's setting otherwise.
    """
    if datasets and os.environ.get("HF_DATASETS_OFFLINE") is not None:
        return "HF_DATASETS_OFFLINE" if _is_true(os.environ["HF_DATASETS_OFFLINE"]) else None
    name = "HF_HUB_OFFLINE" if os.environ.get("HF_HUB_OFFLINE") else "TRANSFORMERS_OFFLINE"
    return name if _is_true(os.environ.get(name)) else None


def _hf_home() -> str:
    default = os.path.join(os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface")
    return os.path.expandvars(os.path.expanduser(os.getenv("HF_HOME", default)))


def hub_cache_dir() -> Path:
    """``HF_HUB_CACHE``, else the legacy ``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``."""
    legacy = os.getenv("HUGGINGFACE_HUB_CACHE", os.path.join(_hf_home(), "hub"))
    return Path(os.path.expandvars(os.path.expanduser(os.getenv("HF_HUB_CACHE", legacy))))


def datasets_cache_dir() -> Path:
    """``HF_DATASETS_CACHE``, else ``$HF_HOME/datasets``."""
    return Path(os.path.expanduser(os.getenv("HF_DATASETS_CACHE", os.path.join(_hf_home(), "datasets"))))


def model_in_cache(repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> bool:
    """True if the hub cache holds ``config.json`` of ``repo_id`` at ``revision`` (default: main)."""
    from huggingface_hub import try_to_load_from_cache  # reads the cache folders only

    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=str(cache_dir or hub_cache_dir()), revision=revision)
    return isinstance(found, str)


def missing_model(repo_id: str, revision: str | None, field: str) -> str | None:
    """Why hub id ``repo_id`` cannot be loaded here (None: its files are in the local hub cache), in one line.

    ``field`` names the setting to point at a local folder instead. Reads the cache folders only, so
    the answer is the same, and as fast, with or without a network.
    """
    try:
        if model_in_cache(repo_id, revision):
            return None
    except ValueError:  # huggingface_hub's HFValidationError: no repo id at all
        return f"'{repo_id}' is neither a local model folder nor a hub id like org/name"
    rev = f" --revision {revision}" if revision else ""
    return (
        f"'{repo_id}' is not in the local Hugging Face cache ({hub_cache_dir()}) and aplkit never downloads a model while it runs: "
        f"fetch it once with `hf download {repo_id}{rev}`, or set {field} to a local model folder"
    )


def _snake(name: str) -> str:
    """datasets.naming.camelcase_to_snakecase, without importing datasets."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def dataset_in_cache(hub_id: str, cache_dir: str | Path | None = None) -> bool:
    """True if ``load_dataset(hub_id)`` can be served offline: a prepared copy in the datasets cache.

    This is the folder datasets' ``CachedDatasetModuleFactory`` falls back to when the hub cannot be
    reached: ``<cache>/<namespace>___<name>/<config>/<version>/<hash>/``.
    """
    parts = hub_id.split("/")
    parts[-1] = _snake(parts[-1])
    root = Path(cache_dir or datasets_cache_dir()) / "___".join(parts)
    return any(Path(p).is_dir() for p in glob.glob(str(root / "*" / "*" / "*")))


def not_cached(what: str, name: str, variable: str, fix: str) -> str:
    return f"'{name}' is not in the local {what} cache and {variable} is set (download it on a machine with network, or {fix})"


# The hub data sets aplkit reads when data.path is not set (aplkit.data).
IMDB_HUB_ID = "imdb"
TLDR_HUB_ID = "CarperAI/openai_summarize_tldr"
