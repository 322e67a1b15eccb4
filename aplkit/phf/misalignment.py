"""The PHF misalignment score of a text: the oracle's probability that it is bad, in [0, 1].

One scorer serves the training segments (reward R = −misalignment), the samples measured at each
checkpoint (mean misalignment, share above ½) and θ0's shared values, so they can never disagree.
It is chosen by ``oracle.kind``:

* ``sentiment``: P(negative) of the offline sentiment back-end (tfidf: the classifier's probability;
  vader: (1 − compound)/2), without the repetition and fluency terms of the APL judge;
* ``classifier``: a sequence-classification model's probability of every class but
  ``oracle.classifier.positive_label`` (the good class; default the last), i.e. 1 − P(good). A
  single-logit reward model gives no probability, so it is refused.

Pairwise judges (llm, human) and reference scorers (rouge, ngram) give no probability of a bad text.
The scorer's ``identity`` (kind, model and its content, good class) is stored in the run folder, so a
resume under another scorer is refused rather than mixing two scorers' segments and samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from aplkit.config import ConfigError

#: oracle kinds that give a probability of a bad text
KINDS = ("sentiment", "classifier")
#: the run-folder file that holds the scorer's identity
SCORER_FILE = "phf_scorer.json"


@dataclass
class MisalignmentScorer:
    identity: str  # everything that changes a score: part of the run's identity and of θ0's shared keys
    fn: Callable[[list[str]], Sequence[float]]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Misalignment in [0, 1] of each text (float64; empty in, empty out)."""
        texts = list(texts)
        return np.asarray(self.fn(texts) if texts else [], dtype=np.float64)


def problems(oracle, prefix: str = "oracle") -> list[str]:
    """What in the ``oracle`` section keeps it from scoring misalignment, found without loading anything."""
    if oracle.kind not in KINDS:
        return [
            f"{prefix}.kind: the PHF experiment needs a probability that a text is bad: choose from {', '.join(KINDS)}, got '{oracle.kind}'"
        ]
    if oracle.flip_prob > 0 or oracle.sample_bt:  # would be silently ignored: PHF reads scores, never a pair's label
        name = "flip_prob" if oracle.flip_prob > 0 else "sample_bt"
        return [f"{prefix}.{name}: simulates noise in a pair's label; the PHF experiment scores text and draws no labels (leave it unset)"]
    if oracle.kind == "sentiment":
        return oracle.sentiment.problems(f"{prefix}.sentiment")
    return oracle.classifier.problems(f"{prefix}.classifier", required=True)


def misalignment_scorer(cfg) -> MisalignmentScorer:
    """The scorer ``cfg.oracle.kind`` names (a ``PHFConfig``); a classifier is checked from its config before its weights load."""
    bad = problems(cfg.oracle)
    if bad:
        raise ConfigError(bad[0])
    if cfg.oracle.kind == "sentiment":
        from aplkit.oracles.sentiment import make_scorer

        d = cfg.data
        backend = make_scorer(cfg.oracle.sentiment.model, 0, (d.train_size, d.test_size, d.split_seed))
        return MisalignmentScorer(f"sentiment-p-negative:{backend.tag}", lambda texts: [(1.0 - s) / 2.0 for s in backend(texts)])
    from aplkit.oracles.classifier import ClassifierOracle

    c = cfg.oracle.classifier
    _check_classes(c.model, c.positive_label)
    oracle = ClassifierOracle(c.model, positive_label=c.positive_label, tau=c.tau)
    return MisalignmentScorer(oracle.p_bad_identity, oracle.p_bad)


def _check_classes(model: str, positive_label: int | None) -> None:
    """One line naming the field when the classifier's config cannot give P(bad): read from its config.json alone."""
    from transformers import AutoConfig

    from aplkit.oracles.base import OracleError

    try:
        n = AutoConfig.from_pretrained(model, local_files_only=True).num_labels
    except (OSError, ValueError) as e:
        raise OracleError(f"oracle.classifier.model: cannot load '{model}': {str(e).strip().splitlines()[0]}") from None
    if n < 2:
        raise ConfigError(
            f"oracle.classifier.model: '{model}' has one output (a reward model): the PHF experiment needs a classifier's probability of the bad class"
        )
    if positive_label is not None and not -n <= positive_label < n:
        raise ConfigError(f"oracle.classifier.positive_label: {positive_label} is no class of '{model}' ({n} classes)")


def check_identity(run, identity: str) -> None:
    """A run folder is scored by one scorer: a resume under another is refused (a folder from before this file adopts it)."""
    old = (run.read_json(SCORER_FILE) or {}).get("misalignment_scorer")
    if old is None:
        run.write_json(SCORER_FILE, {"misalignment_scorer": identity})
    elif old != identity:
        raise ConfigError(f"{run.path} was scored by another misalignment scorer ({old}, now {identity}); use another --out")


__all__ = ["KINDS", "SCORER_FILE", "MisalignmentScorer", "check_identity", "misalignment_scorer", "problems"]
