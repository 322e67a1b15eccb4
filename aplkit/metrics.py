"""The evaluation's metrics, one spec each: what tables, trackers, comparisons and compact records read about them.

The win-rate against θ0 is the headline; its companions come from the same test prompts. A metric's ``field``
and ``se`` (its standard error over the test prompts; the win-rate's is binomial) are ``EvalRow`` columns,
``per_prompt`` the ``EvalPairRow`` column holding it per test prompt (what a compact record keeps), ``theta0`` the
column with θ0's own value where a table shows the change from it, ``at_theta0`` the metric's value at θ = θ0
(where a frontier starts, ``aplkit.results.frontier``). A *preference* metric measures how much the oracle prefers
the policy (the question a study asks); the others measure what the policy gave up for it. An ``opt_in`` metric is
measured only when a setting turns it on, so tables show it only where a run recorded it.

A pool-based run (``data.task: preferences``) also records, per waypoint, how well the implicit reward
r̂ = β(log πθ − log πθ0) ranks the held-out pairs of its data set (``HeldOutRow``, ``row`` "heldout"): the standard
endpoint of learning from a fixed preference data set, joined into the eval frame under ``HELDOUT_COLUMNS``' names.
It is not a *preference* metric: no judge reads the policy's own text, so it has no per-prompt verdict, no value
after an earlier epoch (no frontier) and no field on ``EvalRow``; nor is it a cost the policy paid. Its margin is
registered too, as the reward gap is beside the win-rate: the same pairs on a continuous, lower-variance scale.
A metric on the win-rate's 0–1 scale (``probability``) can be a study's primary endpoint (``ENDPOINTS``): its
decision target and power effect are read in the win-rate's units.
Adding a metric is one entry here, its fields on the records, and the code that measures it
(``aplkit.evaluation``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    field: str
    label: str  # as a table names it
    short: str  # in running text
    fmt: str  # format spec of a value in a table
    se: str | None = None
    higher_is_better: bool | None = True  # None: a quantity compared, not judged (drift from θ0 is a cost at equal
    # win-rate, not a quality of its own), so a verdict reads higher / lower
    preference: bool = True
    probability: bool = False  # on the win-rate's 0–1 scale, where +0.05 means the same thing (a power target)
    per_prompt: str | None = None
    theta0: str | None = None
    own_se: str = "prompts"  # what one run's SE is over, named where a single seed's error bar is shown
    doc: str = ""  # a table's footnote line
    at_theta0: float | None = None  # its value when the policy is θ0 (the win-rate of θ0 against itself: ½)
    opt_in: bool = False  # measured only when a setting asks for it: shown only where some run recorded it
    row: str = "eval"  # the run-folder rows it is read from: eval (EvalRow) or heldout (HeldOutRow, ``HELDOUT_COLUMNS``)

    @property
    def title(self) -> str:
        return self.label[:1].upper() + self.label[1:]

    @property
    def question(self) -> bool:
        """Whether it asks a study's question (is the policy better?): a preference metric, or a held-out one."""
        return self.preference or self.row == "heldout"


#: ``HeldOutRow``'s columns as the eval frame names them: prefixed, as its stderr, n and trained would collide
#: with the win-rate's (its trained is the same count, so the frame keeps one)
HELDOUT_COLUMNS = {
    "accuracy": "heldout_accuracy",
    "stderr": "heldout_stderr",
    "n": "heldout_n",
    "margin": "heldout_margin",
    "margin_stderr": "heldout_margin_stderr",
}


METRICS = (
    Metric("win_rate", "win-rate", "win-rate", ".2f", se="stderr", probability=True, own_se="binomial", at_theta0=0.5),
    Metric(
        "soft_win_rate",
        "soft win-rate",
        "soft win-rate",
        ".2f",
        se="soft_stderr",
        probability=True,
        per_prompt="p_policy",
        doc="mean over test prompts of the oracle's own P(policy ≻ baseline).",
        at_theta0=0.5,
    ),
    Metric(
        "reward_gap",
        "reward gap",
        "reward gap",
        "+.3f",
        se="reward_gap_stderr",
        per_prompt="reward_gap",
        doc="mean over test prompts of s(x, policy) − s(x, baseline) under the oracle's own score (scoring oracles only).",
        at_theta0=0.0,
    ),
    # the record's ``kl`` (every run has it): measured along the T = 0.25 test completions, so not the policy's KL
    Metric(
        "kl",
        "KL along test completions",
        "path KL",
        ".3f",
        se="kl_stderr",
        higher_is_better=None,
        preference=False,
        per_prompt="kl",
        doc="mean over test prompts of Σ_t KL(πθ ‖ πθ0) of the full next-token distributions (T = 1) along the "
        "policy's evaluation completion, sampled at the evaluation temperature (0.25), in nats: a divergence along "
        "those completions, not the KL of the policy (KL from θ0 at T = 1).",
        at_theta0=0.0,
    ),
    Metric(
        "kl_t1",
        "KL from θ0 (T = 1)",
        "KL",
        ".3f",
        se="kl_t1_stderr",
        higher_is_better=None,
        preference=False,
        per_prompt="kl_t1",
        doc="KL(πθ ‖ πθ0) of the policy's sequence distribution at temperature 1, in nats: the mean over test prompts "
        "of Σ_t KL(πθ(·|x, y<t) ‖ πθ0(·|x, y<t)) along evaluation.kl_samples samples y ~ πθ at T = 1 per prompt "
        "(unbiased; SE over prompts).",
        at_theta0=0.0,
        opt_in=True,
    ),
    Metric(
        "lm_loss",
        "LM loss",
        "LM loss",
        ".3f",
        higher_is_better=False,
        preference=False,
        theta0="lm_loss_theta0",
        doc="mean NLL per token (nats) of πθ on held-out text (IMDB: the test reviews); in brackets the change from θ0's "
        "(lm_loss_theta0 in the CSV). A rising KL or LM loss with a rising win-rate flags a win bought with degenerate text.",
    ),
    Metric(
        "heldout_accuracy",
        "held-out accuracy",
        "held-out accuracy",
        ".2f",
        se="heldout_stderr",
        preference=False,
        probability=True,
        own_se="pairs",
        doc="pool-based runs: the share of the data set's held-out pairs whose implicit reward r̂ = β(log πθ − log πθ0) "
        "ranks the chosen response above the rejected one (ties ½); ½ at θ0, where every r̂ is 0.",
        at_theta0=0.5,
        opt_in=True,
        row="heldout",
    ),
    Metric(
        "heldout_margin",
        "held-out margin",
        "held-out margin",
        "+.3f",
        se="heldout_margin_stderr",
        preference=False,
        own_se="pairs",
        doc="pool-based runs: the mean over the held-out pairs of r̂(x, y_w) − r̂(x, y_l) (β-scaled nats); 0 at θ0.",
        at_theta0=0.0,
        opt_in=True,
        row="heldout",
    ),
)
HEADLINE = METRICS[0]
#: the x-axis of a frontier: the policy's own KL from θ0 where runs measured it, else the along-path one
KL_FIELDS = ("kl_t1", "kl")
#: the win-rate's companions, beside it in every table
COMPANION_METRICS = METRICS[1:]
BY_FIELD = {m.field: m for m in METRICS}
#: eval.jsonl's columns of the companions (values, their SEs, θ0's values): NaN where a run did not record them
COMPANION_FIELDS = tuple(c for m in COMPANION_METRICS if m.row == "eval" for c in (m.field, m.se, m.theta0) if c)
#: the metrics a study may name as its primary endpoint (``bench labels --endpoint``): on the win-rate's scale
ENDPOINTS = tuple(m.field for m in METRICS if m.probability and m.question)
#: what a compact record keeps per test prompt besides its verdict
PER_PROMPT_FIELDS = tuple(m.per_prompt for m in METRICS if m.per_prompt)


def metric(field: str) -> Metric:
    """The spec of ``field``; a column not registered here reads as a higher-is-better number in its own units."""
    return BY_FIELD.get(field) or Metric(field, field, field, ".3f")


def shown(frame) -> tuple[Metric, ...]:
    """The metrics a table of ``frame`` (a DataFrame of eval rows, or a table made from them) shows: every one,
    except an ``opt_in`` metric no row recorded."""
    return tuple(m for m in METRICS if not m.opt_in or (m.field in frame.columns and bool(frame[m.field].notna().any())))


__all__ = [
    "BY_FIELD",
    "COMPANION_FIELDS",
    "COMPANION_METRICS",
    "ENDPOINTS",
    "HEADLINE",
    "HELDOUT_COLUMNS",
    "KL_FIELDS",
    "METRICS",
    "Metric",
    "PER_PROMPT_FIELDS",
    "metric",
    "shown",
]
