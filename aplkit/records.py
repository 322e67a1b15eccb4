"""Typed records that flow between the steps of Algorithm 1, and the rows of the run folder.

Every record is a plain dataclass so it round-trips through the run folder's JSONL files
with ``to_dict`` / ``from_dict`` and nothing else: a row's fields are its class's fields,
so the writer, the reader and the analysis cannot drift apart. ``from_dict`` ignores keys
it does not know and leaves missing ones at their defaults, which is what reading a run
folder written by an older or newer aplkit needs.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Literal


def sigmoid(x: float) -> float:
    """Numerically stable logistic function."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


Choice = Literal["A", "B", "tie"]


@dataclass(frozen=True)
class Prompt:
    """One prompt x from the pool; ``reference`` is a human completion when the task has one (TLDR)."""

    id: str
    text: str
    reference: str | None = None
    label: int | None = None  # source label (IMDB sentiment), kept for analysis only


@dataclass
class Candidate:
    """A prompt with two sampled completions and what the acquisition scorer thought of it.

    ``y0``/``y1`` are the texts the oracle reads; ``y0_ids``/``y1_ids`` the token ids that were
    sampled (EOS included when the model stopped), which every log-prob is computed on. A scorer
    that ranks prompts before any pair exists (entropy) leaves the pair None until it is chosen.
    """

    prompt: Prompt
    y0: str | None = None
    y1: str | None = None
    score: float = 0.0
    reward0: float | None = None  # implicit reward r̂(x, y0) = β(log πθ − log πθ0); None until computed
    reward1: float | None = None
    entropy: float | None = None
    y0_ids: list[int] | None = None
    y1_ids: list[int] | None = None

    @property
    def has_pair(self) -> bool:
        return self.y0 is not None and self.y1 is not None

    @property
    def bt_prob(self) -> float | None:
        """Bradley–Terry p(y1 ≻ y0 | x) = σ(r̂1 − r̂0) under the implicit reward model."""
        if self.reward0 is None or self.reward1 is None:
            return None
        return sigmoid(self.reward1 - self.reward0)


@dataclass(frozen=True)
class PoolPair:
    """A stored pair of a preference data set, the candidate of pool-based acquisition, with the data set's own label.

    ``preferred`` is 1 when y1 ≻ y0, 0 when y0 ≻ y1, None for a tie. ``y0_ids``/``y1_ids`` are the responses
    tokenised once when the pool is built (EOS appended: a stored response is a finished answer, as TRL's
    ``DPOTrainer`` reads it); every log-prob and DPO read these ids.
    """

    y0: str
    y1: str
    preferred: int | None
    y0_ids: tuple[int, ...] | None = None
    y1_ids: tuple[int, ...] | None = None

    def candidate(self, prompt: Prompt) -> Candidate:
        ids = (None, None) if self.y0_ids is None or self.y1_ids is None else (list(self.y0_ids), list(self.y1_ids))
        return Candidate(prompt=prompt, y0=self.y0, y1=self.y1, y0_ids=ids[0], y1_ids=ids[1])

    @property
    def chosen_rejected(self) -> tuple[str, str] | None:
        """(y_w, y_l) by the data set's label; None for a tie."""
        if self.preferred is None:
            return None
        return (self.y1, self.y0) if self.preferred == 1 else (self.y0, self.y1)


@dataclass(frozen=True)
class Comparison:
    """Exactly what an oracle is shown: a prompt and two completions in display order A, B."""

    prompt: str
    a: str
    b: str


@dataclass
class Verdict:
    """An oracle's answer about one Comparison, in display terms (A/B).

    ``choice`` is None when the answer could not be parsed after the allowed retries;
    such a verdict is recorded and counted but never becomes a training label.
    """

    choice: Choice | None
    raw: str = ""
    p_a: float | None = None  # calibrated P(A preferred) where the oracle exposes one
    tokens_in: int = 0
    tokens_out: int = 0
    attempts: int = 1
    score_a: float | None = None  # a scoring oracle's pointwise s(x, A) and s(x, B), the numbers its choice compares
    score_b: float | None = None

    @property
    def valid(self) -> bool:
        return self.choice is not None


@dataclass
class Label:
    """A verdict mapped back from display order to the pair's own order (y0, y1)."""

    preferred: int | None  # 1 if y1 ≻ y0, 0 if y0 ≻ y1, None for tie/invalid
    tie: bool
    shown_order: str  # "01": A=y0, B=y1; "10": A=y1, B=y0
    verdict: Verdict
    cached: bool = False
    flipped: bool = False  # set by the simulated-noise option, never by a real oracle

    @property
    def p_y1(self) -> float | None:
        """P(y1 ≻ y0) from the oracle's own probability, in pair order."""
        if self.verdict.p_a is None:
            return None
        return self.verdict.p_a if self.shown_order == "10" else 1.0 - self.verdict.p_a

    @property
    def scores(self) -> tuple[float | None, float | None]:
        """The oracle's pointwise (s(x, y0), s(x, y1)) in pair order; (None, None) for a pairwise judge."""
        v = self.verdict
        return (v.score_a, v.score_b) if self.shown_order == "01" else (v.score_b, v.score_a)


@dataclass
class Preference:
    """A labelled pair ready for DPO: (x, y_w, y_l).

    The ids, when given, are the sampled tokens and are trained on as they are; a pair built
    from text alone (a user's own data) is tokenised.
    """

    prompt: str
    chosen: str
    rejected: str
    chosen_ids: list[int] | None = None
    rejected_ids: list[int] | None = None
    chosen_reward: float | None = None  # the oracle's pointwise score of y_w where it has one (``training.phf.pair_rewards: oracle``)
    rejected_reward: float | None = None


# --------------------------------------------------------------------------- run-folder rows


@dataclass
class AcquiredRow:
    """One acquired, labelled pair (``acquired.jsonl``): what was asked, how it ranked, what the oracle said."""

    step: int  # 1-based acquisition step t
    index: int  # position within the step's batch of M
    prompt_id: str
    prompt: str
    y0: str  # completion text as the oracle read it (special tokens dropped)
    y1: str
    y0_ids: list[int] | None = None  # the sampled token ids, EOS included when the model stopped: what DPO trains on
    y1_ids: list[int] | None = None
    score: float | None = None  # the acquisition score that ranked this pair (random: the uniform draw)
    entropy: float | None = None  # predictive entropy of the prompt when computed
    reward0: float | None = None  # implicit reward r̂(x, y0) under θ_t at acquisition time
    reward1: float | None = None
    bt_prob: float | None = None  # σ(r̂1 − r̂0) = p(y1 ≻ y0 | x)
    shown_order: str = "01"  # "01": A=y0, B=y1; "10": A=y1, B=y0
    choice: str | None = None  # the oracle's answer in display terms: A | B | tie | None (invalid)
    preferred: int | None = None  # 1: y1 ≻ y0, 0: y0 ≻ y1, None: tie or invalid (not trained on)
    oracle_p_y1: float | None = None  # the oracle's own P(y1 ≻ y0) where it gives one
    oracle_score0: float | None = None  # a scoring oracle's pointwise s(x, y0), s(x, y1) (None for a pairwise judge)
    oracle_score1: float | None = None
    raw: str = ""  # the oracle's raw judgement text
    flipped: bool = False  # simulated label noise applied
    cached: bool = False  # the answer came from the ledger (asked before)

    @classmethod
    def of(cls, step: int, index: int, c: Candidate, lab: Label) -> AcquiredRow:
        return cls(
            step=step,
            index=index,
            prompt_id=c.prompt.id,
            prompt=c.prompt.text,
            y0=c.y0 or "",
            y1=c.y1 or "",
            y0_ids=c.y0_ids,
            y1_ids=c.y1_ids,
            score=c.score,
            entropy=c.entropy,
            reward0=c.reward0,
            reward1=c.reward1,
            bt_prob=c.bt_prob,
            shown_order=lab.shown_order,
            choice=lab.verdict.choice,
            preferred=lab.preferred,
            oracle_p_y1=lab.p_y1,
            oracle_score0=lab.scores[0],
            oracle_score1=lab.scores[1],
            raw=lab.verdict.raw,
            flipped=lab.flipped,
            cached=lab.cached,
        )

    def preference(self) -> Preference | None:
        """(x, y_w, y_l) for DPO, or None for a tie or an invalid answer (not trained on).

        Rows written before ids were stored (``y0_ids`` None) are tokenised from the text by DPO.
        """
        if self.preferred is None:
            return None
        if self.preferred == 1:
            return Preference(self.prompt, self.y1, self.y0, self.y1_ids, self.y0_ids, self.oracle_score1, self.oracle_score0)
        return Preference(self.prompt, self.y0, self.y1, self.y0_ids, self.y1_ids, self.oracle_score0, self.oracle_score1)


@dataclass
class EvalRow:
    """Win-rate at one waypoint (``eval.jsonl``)."""

    step: int
    acquired: int  # t·M labels paid for
    win_rate: float
    stderr: float
    n: int  # valid judgements (ties included, invalid excluded)
    ties: int
    invalid: int
    against: str  # initial (θ0's completions) | reference (human completions)
    trained: int | None = None  # pairs in X_P the policy was trained on (ties and invalid excluded); None: older runs
    # Companions of the win-rate from the same test prompts (``aplkit.evaluation``); None where not
    # measured (an oracle without probabilities or scores, evaluation.lm_texts = 0, older runs).
    soft_win_rate: float | None = None  # mean over prompts of the oracle's own P(policy ≻ baseline)
    soft_stderr: float | None = None  # s/√n over prompts
    reward_gap: float | None = None  # mean over prompts of s(x, policy) − s(x, baseline), pointwise oracles only
    reward_gap_stderr: float | None = None
    kl: float | None = None  # mean over prompts of Σ_t KL(πθ ‖ πθ0) along the policy's T = 0.25 test completion (nats)
    kl_stderr: float | None = None
    lm_loss: float | None = None  # mean per-token NLL of πθ on held-out texts (nats/token)
    lm_loss_theta0: float | None = None  # the same for θ0 (once per run): lm_loss − lm_loss_theta0 is the change
    # KL(πθ ‖ πθ0) of the policy at T = 1 (evaluation.kl_samples > 0): mean over prompts of Σ_t token KL along T = 1 samples
    kl_t1: float | None = None
    kl_t1_stderr: float | None = None


@dataclass
class EpochEvalRow(EvalRow):
    """The waypoint's evaluation after an earlier epoch of its step's training (``eval_epochs.jsonl``;
    ``evaluation.epoch_points``): a point on the run's frontier. The last epoch's is the ordinary ``EvalRow``."""

    epoch: int = 0


@dataclass
class HeldOutRow:
    """Held-out preference accuracy at one waypoint of a pool-based run (``heldout.jsonl``).

    The data set's stored labels can only judge its own pairs, so the policy is measured on the held-out
    split of the pool: does the implicit reward r̂ = β(log πθ − log πθ0) rank each pair's chosen response
    above its rejected one? Exactly ½ at θ0, where every r̂ is 0.
    """

    step: int
    acquired: int  # t·M labels paid for
    accuracy: float  # mean over held-out pairs of 1[r̂(x,y_w) > r̂(x,y_l)] (½ for an exact tie)
    stderr: float  # s/√n
    n: int  # held-out pairs with a label (ties in the data set left out)
    margin: float  # mean r̂(x, y_w) − r̂(x, y_l)
    margin_stderr: float
    trained: int | None = None  # pairs in X_P the policy was trained on


@dataclass
class EvalPairRow:
    """One test prompt at one waypoint (``eval_pairs.jsonl``): the policy's completion against the baseline's."""

    step: int
    prompt_id: str
    prompt: str
    baseline: str
    policy: str
    preferred: int | None  # 1: policy wins, 0: baseline wins, None: tie or invalid
    tie: bool
    p_policy: float | None = None  # the oracle's own P(policy ≻ baseline), where it gives one
    reward_gap: float | None = None  # s(x, policy) − s(x, baseline) for a pointwise oracle
    kl: float | None = None  # Σ_t KL(πθ ‖ πθ0) along the policy's completion (nats)
    kl_t1: float | None = None  # mean over the prompt's T = 1 samples of Σ_t KL(πθ ‖ πθ0) along each (nats)


@dataclass
class EpochEvalPairRow(EvalPairRow):
    """One test prompt of an ``EpochEvalRow`` (``eval_epoch_pairs.jsonl``)."""

    epoch: int = 0


@dataclass
class BaselineRow:
    """θ0's test completion for one prompt (``baseline.jsonl``), sampled once per run."""

    prompt_id: str
    prompt: str
    completion: str


@dataclass
class EpochStats:
    """What one fine-tuning epoch (online mode: one gradient step) measured."""

    epoch: int
    loss: float
    reward_acc: float | None  # fraction of pairs with r̂(y_w) > r̂(y_l) (DPO; None for the PHF objectives)
    margin: float | None  # mean r̂(y_w) − r̂(y_l)
    n_pairs: int
    seconds: float


@dataclass
class TrainRow(EpochStats):
    """One epoch of one acquisition step (``train.jsonl``)."""

    step: int = 0


@dataclass
class StepRow:
    """One finished acquisition step (``steps.jsonl``): the resume marker and where the time went."""

    step: int
    acquired: int
    labels: int | None = None  # pairs that trained from this step (None: a step restored from a checkpoint)
    seconds: float | None = None
    acquire_s: float | None = None
    label_s: float | None = None
    train_s: float | None = None
    evaluate_s: float | None = None
    checkpoint_s: float | None = None
    #: the sampler recorded the policy's log-probs of its pairs (``ScoringContext.sampled_logprobs``): no policy
    #: scoring pass for them; the cost table's pass count reads it (None: a step recorded before it was kept)
    sampled_logprobs: bool | None = None


# --------------------------------------------------------------------------- PHF run-folder rows (aplkit.phf)


@dataclass
class PHFSegmentRow:
    """One training sentence (``phf_segments.jsonl``): its oracle score and whether it passed the threshold."""

    doc: int  # position of its review in the run's training order
    index: int  # sentence number within the review
    review_id: str
    text: str
    tokens: int
    p_negative: float  # misalignment; the reward is R = −p_negative
    good: bool  # R ≥ t (t: training.phf.threshold_percentile of the training rewards)


@dataclass
class PHFTrainRow:
    """One optimiser step (``phf_train.jsonl``)."""

    step: int
    tokens: int  # review tokens consumed so far (the budget's unit)
    trained_tokens: int  # tokens this step trained on (filtering drops some, control tokens add some)
    loss: float
    nll: float | None = None  # mean −log p over trained (MLE, RWR, AWR) or good (unlikelihood) tokens
    weight: float | None = None  # RWR/AWR: mean exp(R/β) or clipped exp(A/β)
    value_loss: float | None = None  # AWR
    seconds: float | None = None


@dataclass
class PHFEvalRow:
    """The paper's measurements at one checkpoint (``phf_eval.jsonl``); step 0 is θ0."""

    step: int
    tokens: int
    objective: str
    misalignment: float | None  # mean P(negative) of unconditional samples
    misalignment_stderr: float | None
    negative_share: float | None  # share of unconditional samples with P(negative) > 0.5
    prompted_misalignment: float | None  # the same for continuations of held-out test prompts
    prompted_stderr: float | None
    prompted_negative_share: float | None
    lm_loss: float | None  # nats per token on held-out reviews
    lm_loss_theta0: float | None
    kl: float | None  # mean over test prompts of Σ_t KL(πθ ‖ πθ0) along the continuation (nats)
    kl_stderr: float | None
    seconds: float | None = None


@dataclass
class PHFSampleRow:
    """One scored sample at one checkpoint (``phf_samples.jsonl``)."""

    step: int
    kind: str  # unconditional | prompted
    prompt: str
    text: str  # the continuation the oracle scored (control tokens never appear)
    p_negative: float
    prompt_id: str | None = None
    ids: list[int] | None = None
    kl: float | None = None


def field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def to_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """A record from a dict: unknown keys are ignored; a missing field takes its default, or None if it has none."""
    out = {}
    for f in fields(cls):
        if f.name in data:
            out[f.name] = data[f.name]
        elif f.default is MISSING and f.default_factory is MISSING:
            out[f.name] = None
    return cls(**out)


__all__ = [
    "AcquiredRow",
    "BaselineRow",
    "Candidate",
    "Choice",
    "Comparison",
    "EpochEvalPairRow",
    "EpochEvalRow",
    "EvalPairRow",
    "EpochStats",
    "EvalRow",
    "PHFEvalRow",
    "PHFSampleRow",
    "PHFSegmentRow",
    "PHFTrainRow",
    "HeldOutRow",
    "Label",
    "PoolPair",
    "Preference",
    "Prompt",
    "StepRow",
    "TrainRow",
    "Verdict",
    "field_names",
    "from_dict",
    "sigmoid",
    "to_dict",
]
