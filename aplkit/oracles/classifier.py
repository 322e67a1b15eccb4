"""Classifier / reward-model oracle: any ``AutoModelForSequenceClassification`` scores both full texts.

The DPO paper judged IMDB with a sentiment classifier; elsewhere a trained reward model plays this
role. The score of ``prompt + completion`` is:

* a classifier (``num_labels >= 2``): the log-probability of class ``positive_label`` (default: the
  last column), i.e. that column of ``log_softmax(logits)``. A raw logit is not monotone in
  P(positive) — a text can have the larger positive logit and still the lower P(positive) when its
  other logits are larger too — so the raw column is never compared on its own. With two classes
  log P(positive) = log σ(z_pos − z_neg), which orders texts exactly as the logit difference does.
* a single-logit reward model (``num_labels == 1``): its raw output, the reward itself.

The higher score is preferred and ``p_a = σ((s_A − s_B)/τ)``. For a reward model with τ = 1 that is
the Bradley–Terry probability it was trained to output; for a classifier with τ = 1 it is
P_A / (P_A + P_B), the two texts' P(positive) renormalised over the pair.

Batches are right-padded with an explicit pad token (decoder models pool the last non-pad
token, encoders the first), and truncated from the left so the completion is never cut off.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from aplkit.config import ClassifierConfig  # noqa: F401  the ``oracle.classifier`` section, re-exported here
from aplkit.oracles.base import Oracle, OracleError, scored_verdict
from aplkit.records import Comparison, Verdict


def fingerprint(path: Path) -> str:
    """Cheap content hash of a local model dir (config + size and first/last MiB of each weight file)."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.suffix in (".json", ".safetensors", ".bin", ".model", ".txt") and f.is_file():
            size = f.stat().st_size
            h.update(f"{f.name}:{size}".encode())
            with f.open("rb") as fh:
                h.update(fh.read(1 << 20))
                if size > 2 << 20:
                    fh.seek(-(1 << 20), 2)
                    h.update(fh.read())
    return h.hexdigest()[:16]


class ClassifierOracle(Oracle):
    """Prefers the completion whose full text gets the higher log P(positive) (classifier) or reward (one logit)."""

    kind = "classifier"

    def __init__(
        self,
        model: str,
        positive_label: int | None = None,
        tau: float = 1.0,
        batch_size: int = 16,
        max_length: int = 512,
        device: str = "auto",
        revision: str | None = None,
    ) -> None:
        """``model``: hub id or local dir. ``tau`` scales logit gaps into p_a (1.0: Bradley–Terry)."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from aplkit.models import CACHE_ONLY, _quiet_transformers, pick_device

        if tau <= 0:
            raise OracleError(f"classifier oracle: tau must be > 0, got {tau}")
        _quiet_transformers()
        try:
            tok = AutoTokenizer.from_pretrained(model, revision=revision, local_files_only=True)  # never downloads (aplkit.hubcache)
            net = AutoModelForSequenceClassification.from_pretrained(model, revision=revision, dtype=torch.float32, **CACHE_ONLY)
        except (OSError, ValueError) as e:
            raise OracleError(f"classifier oracle: cannot load '{model}': {str(e).strip().splitlines()[0]}") from None
        if tok.pad_token is None:
            if tok.eos_token is None:
                raise OracleError(f"classifier oracle: '{model}' has a tokenizer with neither a pad nor an eos token")
            tok.pad_token = tok.eos_token
        tok.padding_side = "right"
        tok.truncation_side = "left"
        net.config.pad_token_id = tok.pad_token_id
        n = net.config.num_labels
        col = n - 1 if positive_label is None else positive_label
        if not -n <= col < n:
            raise OracleError(f"classifier oracle: positive_label={positive_label} but '{model}' has {n} output column(s)")
        self.model_name = model
        self.revision = revision
        self.column = col % n
        self.num_labels = n
        self.tau = float(tau)
        self.batch_size = batch_size
        self.max_length = max_length
        self.tokenizer = tok
        self.device = pick_device(device)
        self.net = net.to(self.device).eval()
        local = Path(model).expanduser()
        self._version = fingerprint(local) if local.is_dir() else (getattr(net.config, "_commit_hash", None) or revision or "latest")

    @classmethod
    def from_config(cls, cfg: ClassifierConfig) -> ClassifierOracle:
        if not cfg.model:
            raise OracleError("oracle.classifier.model: required when oracle.kind=classifier")
        return cls(cfg.model, positive_label=cfg.positive_label, tau=cfg.tau)

    @property
    def identity(self) -> str:
        # A classifier's score=logp keeps answers cached under the old raw-logit rule from being reused; a
        # single-logit reward model scores as it always did, so its identity (and its cached answers) stay.
        score = ":score=logp" if self.num_labels > 1 else ""
        return f"classifier:{self.model_name}@{self._version}:col={self.column}{score}:tau={self.tau:g}:max_len={self.max_length}"

    def _logits(self, texts: Sequence[str]):
        """The model's logits of each full text, one batch at a time (right-padded, truncated from the left)."""
        import torch

        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                list(texts[i : i + self.batch_size]), return_tensors="pt", padding=True, truncation=True, max_length=self.max_length
            )
            with torch.no_grad():
                yield self.net(**enc.to(self.device)).logits.float()

    def score(self, texts: Sequence[str]) -> list[float]:
        """Score of each full text, in batches: log P(positive) (log_softmax column), or the raw reward for one logit."""
        import torch

        out: list[float] = []
        for logits in self._logits(texts):
            if logits.shape[-1] > 1:
                logits = torch.log_softmax(logits, dim=-1)
            out += logits[:, self.column].tolist()
        return out

    def p_bad(self, texts: Sequence[str]) -> list[float]:
        """P(bad) of each text: the probability of every class but ``positive_label``, 1 − P(good), in [0, 1].

        Summed over the other columns rather than taken as 1 − P(good), so a small P(bad) keeps its digits.
        A single-logit reward model gives a reward, not a probability, so it has none.
        """
        import torch

        if self.num_labels < 2:
            raise OracleError(f"classifier oracle: '{self.model_name}' has one output (a reward, not a class probability)")
        out: list[float] = []
        for logits in self._logits(texts):
            probs = torch.softmax(logits.double(), dim=-1)
            keep = torch.ones(self.num_labels, dtype=torch.bool)
            keep[self.column] = False
            out += probs[:, keep].sum(-1).tolist()
        return out

    @property
    def p_bad_identity(self) -> str:
        """Everything that changes ``p_bad``: model and its content, the good column, truncation (not τ)."""
        return f"classifier-p-bad:{self.model_name}@{self._version}:good={self.column}:max_len={self.max_length}"

    def pointwise(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """``score`` of each full text prompt + completion: the s(x, y) that ``judge`` compares."""
        return self.score([p + c for p, c in zip(prompts, completions, strict=True)])

    def judge(self, items: Sequence[Comparison]) -> list[Verdict]:
        items = list(items)
        scores = self.score([c.prompt + c.a for c in items] + [c.prompt + c.b for c in items])
        n = len(items)
        return [scored_verdict(scores[i], scores[n + i], self.tau) for i in range(n)]

    def close(self) -> None:
        self.net = None
