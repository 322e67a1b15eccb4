"""Win-rate of πθ_t against a baseline on held-out prompts (Algorithm 1, line 13; paper §5.5).

The baseline is θ0's own completions (IMDB) or the human references (TLDR). θ0's test
completions are sampled once per run at the test temperature and stored in the run
folder, so every waypoint is judged against the same baseline text.

The win-rate scores each prompt 0, ½ or 1, so at 64 prompts its standard error is about 0.06.
Beside it every waypoint records companions from the same test prompts and judgements
(``EvalRow``), each a mean over prompts with its standard error s/√n where it has one:

* soft win-rate: the oracle's own P(policy ≻ baseline) (``Label.p_y1``), for oracles that give one;
* reward gap: s(x, policy) − s(x, baseline) for an oracle that scores each text (``Oracle.pointwise``);
* the KL from θ0 along the policy's test completions (``kl``, ``Evaluator.kl_path``): Σ_t of the token-level
  KL along the T = 0.25 completions that were judged, a divergence along them and not the policy's KL;
* with ``evaluation.kl_samples`` > 0, the policy's own KL(πθ ‖ πθ0) at T = 1 (``kl_t1``, ``Evaluator.kl_t1``):
  Σ_t of the exact token-level KL along samples drawn from πθ at T = 1, whose mean is the sequence KL (the
  chain rule: E_y~π Σ_t KL(π(·|x, y<t) ‖ π0(·|x, y<t)) = KL(π(·|x) ‖ π0(·|x))), with less variance than the
  log-ratio log π(y|x) − log π0(y|x) of the same samples (the per-position sums average over the token drawn);
  whatever the temperature the win-rate is judged at, this is the x-axis of a frontier; and
* the LM loss of πθ (and once, of θ0) on held-out text (``mean_token_nll``).

The KLs and the LM loss guard against a win bought with degenerate text: a policy that drifts far from θ0
or forgets how reviews read shows it there before it shows in the win-rate.

A pool-based run (``data.task: preferences``) also measures, at every waypoint, the held-out preference
accuracy of the implicit reward on the pool's test pairs (``HeldOutPreferences``): its stored labels judge
only its own pairs, and a win-rate needs a judge of the policy's generations (``evaluation.oracle``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from aplkit import theta0
from aplkit.config import ROUGE_AGAINST_REFERENCE
from aplkit.records import BaselineRow, EpochEvalPairRow, EpochEvalRow, EvalPairRow, EvalRow, HeldOutRow, Label, PoolPair, Prompt
from aplkit.runfolder import RunFolder
from aplkit.seeding import derive_seed

if TYPE_CHECKING:
    from aplkit.generation import Sample


@dataclass
class WinRate:
    win_rate: float
    stderr: float
    n: int  # valid judgements (ties included, invalid excluded)
    ties: int
    invalid: int


@dataclass
class MeanSE:
    mean: float
    stderr: float  # s/√n (0 for a single value)
    n: int


def mean_se(values: Sequence[float]) -> MeanSE | None:
    """Mean and standard error s/√n (s with ddof 1; 0 for n = 1) of per-prompt values; None when there are none."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return None
    mean = sum(xs) / n
    var = sum((x - mean) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
    return MeanSE(mean, math.sqrt(var / n), n)


def win_rate(labels: Sequence[Label], policy_index: int = 1) -> WinRate:
    """Mean of per-prompt scores (win 1, tie ½, loss 0) and its standard error s/√n.

    ``policy_index`` says which side of each pair the policy's completion was (y1 by convention).
    Invalid verdicts are excluded and counted, never scored.
    """
    scores: list[float] = []
    ties = invalid = 0
    for lab in labels:
        if lab.tie:
            scores.append(0.5)
            ties += 1
        elif lab.preferred is None:
            invalid += 1
        else:
            scores.append(1.0 if lab.preferred == policy_index else 0.0)
    m = mean_se(scores)
    if m is None:
        return WinRate(float("nan"), float("nan"), 0, ties, invalid)
    return WinRate(m.mean, m.stderr, m.n, ties, invalid)


def policy_probability(label: Label, policy_index: int = 1) -> float | None:
    """The oracle's own P(policy ≻ baseline) for one label (``Label.p_y1`` with the policy at ``policy_index``)."""
    p = label.p_y1
    return None if p is None else (p if policy_index == 1 else 1.0 - p)


def soft_win_rate(labels: Sequence[Label], policy_index: int = 1) -> MeanSE | None:
    """Mean over prompts of the oracle's P(policy ≻ baseline), with its SE; None when the oracle gives no probability.

    The same judgements as ``win_rate``, without rounding each to 0, ½ or 1, so its standard error is
    smaller. A verdict without a probability (an invalid answer, a person) is left out.
    """
    return mean_se([p for p in (policy_probability(lab, policy_index) for lab in labels) if p is not None])


def reward_gaps(oracle, prompts: Sequence[str], policy: Sequence[str], baseline: Sequence[str]) -> list[float] | None:
    """Per prompt s(x, policy) − s(x, baseline) under the oracle's own score (``Oracle.pointwise``); None without one."""
    n = len(prompts)
    scores = oracle.pointwise([*prompts, *prompts], [*policy, *baseline])
    if scores is None:
        return None
    return [float(scores[i]) - float(scores[n + i]) for i in range(n)]


def resolve_against(against: str, has_references: bool, oracle_kind: str | None = None) -> str:
    """``auto`` → the human references when the task has them (TLDR), else θ0's completions (IMDB).

    The ROUGE oracle scores a summary by its overlap with that same human reference, so the
    reference would score F1 = 1 and the policy could never win: with ROUGE, ``auto`` is θ0 and an
    explicit ``reference`` is refused (``config.validate`` refuses it before anything loads).
    """
    if against == "auto":
        return "reference" if has_references and oracle_kind != "rouge" else "initial"
    if against == "reference" and not has_references:
        raise ValueError("evaluation.against=reference but the test prompts have no reference completions")
    if against == "reference" and oracle_kind == "rouge":
        raise ValueError(ROUGE_AGAINST_REFERENCE)
    return against


class Evaluator:
    """Algorithm 1, line 13: the policy's test completions judged against a fixed baseline.

    Holds the test prompts, the baseline (θ0's completions, sampled once and stored in the run
    folder, or the human references) and the oracle, and writes one ``EvalRow`` per waypoint and
    one ``EvalPairRow`` per test prompt. ``lm_texts`` are the held-out texts the LM loss reads
    (``PromptPools.held_out_texts()``; default: each test prompt with its reference).

    Build it from θ0 as deployed, before an objective changes the models or the tokenizer
    (conditional training adds control tokens and conditions every prompt on ``<|good|>``), and call
    ``theta0()`` then: θ0's baseline completions and LM loss, and the held-out token ids, are taken from
    the plain θ0, so every objective of a seed is judged against the same θ0 completions and its LM loss
    is read from the same θ0 value.
    """

    def __init__(self, cfg, models, test: Sequence, oracle, ledger, run: RunFolder, lm_texts: Sequence[str] | None = None):
        self.cfg, self.models, self.test, self.oracle, self.ledger, self.run = cfg, models, list(test), oracle, ledger, run
        self.against = resolve_against(cfg.evaluation.against, all(p.reference for p in self.test), cfg.oracle.kind)
        if lm_texts is None:
            from aplkit.data import held_out_text

            lm_texts = [held_out_text(p.text, p.reference) for p in self.test]
        self.lm_texts = list(lm_texts)[: cfg.evaluation.lm_texts]
        e = cfg.evaluation
        tok = models.tokenizer
        # encoded now, with θ0's tokenizer: a conditioning post-processor added later must not append a control token
        self._lm_ids = [list(t[: e.lm_tokens]) for t in tok(self.lm_texts, add_special_tokens=True)["input_ids"]] if self.lm_texts else []
        self._lm_theta0: float | None = None
        self._prompt_ids: list[list[int]] | None = None

    def baseline(self) -> list[str]:
        """θ0's test completions (made once, stored) or the human references."""
        if self.against == "reference":
            return [p.reference or "" for p in self.test]
        rows = self.run.read(BaselineRow)
        if len(rows) == len(self.test):
            return [r.completion for r in rows]
        seed = derive_seed(self.cfg.seed, "baseline")
        ys = theta0.shared(
            self.cfg.model.spec,
            self._theta0_parts("baseline", [p.text for p in self.test], seed=seed),
            lambda: [s.text for s in self.sample(self.models.reference, seed)],
        )
        self.run.replace(BaselineRow, [BaselineRow(p.id, p.text, y) for p, y in zip(self.test, ys, strict=True)])
        return ys

    def sample(self, model, seed: int, kl: bool = False) -> list[Sample]:
        """One completion per test prompt at the test temperature (paper §5.3: T = 0.25), as the sampled ids and their text.

        ``kl``: each sample also carries its KL from θ0 (``Sample.kl``), computed while sampling.
        """
        return [o[0] for o in self._sample(model, seed, self.cfg.evaluation.temperature, 1, kl)]

    def _sample(self, model, seed: int, temperature: float, n: int, kl: bool) -> list[list[Sample]]:
        from aplkit.generation import sample, sampler_scores_are_the_models

        e, a = self.cfg.evaluation, self.cfg.acquisition
        return sample(
            model,
            self.models.tokenizer,
            [p.text for p in self.test],
            n=n,
            temperature=temperature,
            max_new_tokens=e.max_new_tokens or a.max_new_tokens,
            batch_size=e.batch_size,
            seed=seed,
            kl_reference=self.models.reference if kl and sampler_scores_are_the_models(model) else None,  # no policy pass for ``kl``
        )

    def kl_along(self, samples: Sequence[Sample], prompts: Sequence[int] | None = None) -> list[float]:
        """Per sample y of test prompt x (``prompts[i]`` the index of sample i's prompt; default sample i is prompt i's),
        Σ_t KL(πθ(·|x, y<t) ‖ πθ0(·|x, y<t)) along y.

        y is the sampled ids (EOS included when the policy stopped); the distributions compared are the full next-token
        distributions at T = 1: the policy's as generation computed them, the reference's from one forward pass
        (``generation.kl_along_sampled``; ``completion_kl`` when the sampler did not record them). 0 at θ = θ0, up
        to rounding (≈ 1e-7). What it estimates depends on how y was drawn: along T = 1 samples its mean is the
        policy's KL (``kl_t1``), along the T = 0.25 evaluation completions it is not (``kl_path``).
        """
        from aplkit.generation import completion_kl, prompt_ids

        if all(s.kl is not None for s in samples):  # the sampler computed it (``sample(kl_reference=...)``)
            return [s.kl for s in samples]
        if self._prompt_ids is None:
            self._prompt_ids = prompt_ids(self.models.tokenizer, [p.text for p in self.test])
        m = self.models
        which = range(len(samples)) if prompts is None else prompts
        kl = completion_kl(
            m.policy,
            m.reference,
            [self._prompt_ids[i] for i in which],
            [s.ids for s in samples],
            m.tokenizer.pad_token_id,
            self.cfg.evaluation.batch_size,
        )
        return kl.tolist()

    def kl_path(self, samples: Sequence[Sample]) -> list[float]:
        """Per test prompt, Σ_t KL(πθ ‖ πθ0) along the policy's own evaluation completion (``kl_along``), drawn by the
        evaluation sampler at ``evaluation.temperature`` (0.25 by default): the divergence along the policy's test
        completions, not a Monte-Carlo estimate of the KL of the T = 1 sequence distributions (``kl_t1`` is)."""
        return self.kl_along(samples)

    def kl_t1(self, seed: int) -> list[float] | None:
        """Per test prompt x, the mean over ``evaluation.kl_samples`` samples y ~ πθ(·|x) at T = 1 of Σ_t
        KL(πθ(·|x, y<t) ‖ πθ0(·|x, y<t)) along y: an unbiased estimate of KL(πθ(·|x) ‖ πθ0(·|x)); None when off.

        At T = 1 the sampler draws from the model's own distribution, the one whose KL it records (``_Tempered``'s
        raw scores), so the estimate is of the policy itself. The global random state is left as it was, so turning
        it on changes no other number of the run.
        """
        import torch

        k = self.cfg.evaluation.kl_samples
        if k <= 0:
            return None
        with torch.random.fork_rng():
            rows = self._sample(self.models.policy, seed, 1.0, k, kl=True)
        flat = [s for row in rows for s in row]
        kls = self.kl_along(flat, [i for i, row in enumerate(rows) for _ in row])
        return [sum(kls[i * k : (i + 1) * k]) / k for i in range(len(rows))]

    def lm_loss(self, model) -> float | None:
        """Mean per-token NLL of ``model`` on the first ``evaluation.lm_tokens`` tokens of each held-out text; None when off."""
        from aplkit.generation import mean_token_nll

        e = self.cfg.evaluation
        if not self.lm_texts or e.lm_tokens < 2:
            return None
        return mean_token_nll(model, self._lm_ids, self.models.tokenizer.pad_token_id, e.batch_size)

    def lm_loss_theta0(self) -> float | None:
        """``lm_loss`` of θ0, computed once per run (θ0 never changes)."""
        if self._lm_theta0 is None:
            e = self.cfg.evaluation
            parts = self._theta0_parts("lm_loss", self.lm_texts, lm_tokens=e.lm_tokens)
            self._lm_theta0 = theta0.shared(self.cfg.model.spec, parts, lambda: self.lm_loss(self.models.reference))
        return self._lm_theta0

    def prepare_theta0(self) -> None:
        """θ0's baseline completions and LM loss, made (or read) now; the global random state is left as it was.

        Called before the objective is built (``Experiment``), so both come from θ0 as deployed whatever
        the objective later adds, and the draws of anything built after are those of a run that made
        neither here.
        """
        import torch

        with torch.random.fork_rng():
            self.baseline()
            self.lm_loss_theta0()

    def _theta0_parts(self, what: str, texts: Sequence[str], **extra) -> dict:
        """Everything a θ0 value on the test set depends on besides the model (``aplkit.theta0``): the encoded
        ids, the vocabulary and the suppressed tokens too, so a θ0 that an objective changed never shares."""
        from aplkit.generation import prompt_ids, suppressed_tokens

        e, m = self.cfg.evaluation, self.cfg.model
        tok, ref = self.models.tokenizer, self.models.reference
        ids = self._lm_ids if what == "lm_loss" else prompt_ids(tok, texts)
        return {
            "what": what,
            "texts": hashlib.sha256("\x00".join(texts).encode()).hexdigest(),
            "ids": hashlib.sha256(repr(ids).encode()).hexdigest(),
            "vocab": len(tok),
            "rows": ref.get_input_embeddings().weight.shape[0],
            "suppress": suppressed_tokens(ref) or [],
            "revision": m.revision,
            "dtype": m.dtype,
            "device": m.device,
            "temperature": e.temperature,
            "max_new_tokens": e.max_new_tokens or self.cfg.acquisition.max_new_tokens,
            "batch_size": e.batch_size,
            **extra,
        }

    def evaluate(self, step: int, acquired: int, trained: int | None = None, epoch: int | None = None) -> EvalRow:
        """Win-rate of the current policy (y1) against the baseline (y0) on the test prompts, and its companions.

        ``acquired`` is t·M labels paid for; ``trained`` the pairs X_P held (ties and invalid answers excluded).
        ``epoch``: an evaluation after that epoch of the step's training, before its last (``evaluation.epoch_points``),
        written as ``EpochEvalRow`` and ``EpochEvalPairRow`` beside the waypoints' rows. Every epoch of a step is
        sampled with the step's evaluation seed (common random numbers along the step's frontier), so the last
        epoch's evaluation is the waypoint's own. Unless ``evaluation.epoch_companions``, such an evaluation leaves
        out what the frontier does not read — the LM loss, and the KL along the test completions where the KL at
        T = 1 is measured — and every other number is what a full evaluation gives (none of them draws a random number).
        """
        from aplkit.oracles.labelling import label_pairs

        path_kl, lm = self.cfg.evaluation.epoch_point_measures() if epoch is not None else (True, True)
        base = self.baseline()
        samples = self.sample(self.models.policy, derive_seed(self.cfg.seed, step, "eval"), kl=path_kl)
        ys = [s.text for s in samples]
        prompts = [p.text for p in self.test]
        pairs = list(zip(prompts, base, ys, strict=True))
        labels = label_pairs(self.oracle, self.ledger, pairs, derive_seed(self.cfg.seed, "eval-order"), purpose="eval")
        gaps = reward_gaps(self.oracle, prompts, ys, base)
        kls = self.kl_path(samples) if path_kl else None
        kl_t1s = self.kl_t1(derive_seed(self.cfg.seed, step, "kl-t1"))
        per_gap = gaps if gaps is not None else [None] * len(self.test)
        per_kl = kls if kls is not None else [None] * len(self.test)
        per_t1 = kl_t1s if kl_t1s is not None else [None] * len(self.test)
        pair_row = EvalPairRow if epoch is None else EpochEvalPairRow
        extra = {} if epoch is None else {"epoch": epoch}
        for p, b, y, lab, g, k, k1 in zip(self.test, base, ys, labels, per_gap, per_kl, per_t1, strict=True):
            self.run.add(pair_row(step, p.id, p.text, b, y, lab.preferred, lab.tie, policy_probability(lab), g, k, k1, **extra))
        wr = win_rate(labels, policy_index=1)
        soft = soft_win_rate(labels, policy_index=1)
        gap = mean_se(gaps) if gaps is not None else None
        kl = mean_se(kls) if kls is not None else None
        kl_t1 = mean_se(kl_t1s) if kl_t1s is not None else None
        row = (EvalRow if epoch is None else EpochEvalRow)(
            step,
            acquired,
            wr.win_rate,
            wr.stderr,
            wr.n,
            wr.ties,
            wr.invalid,
            self.against,
            trained,
            soft_win_rate=soft.mean if soft else None,
            soft_stderr=soft.stderr if soft else None,
            reward_gap=gap.mean if gap else None,
            reward_gap_stderr=gap.stderr if gap else None,
            kl=kl.mean if kl else None,
            kl_stderr=kl.stderr if kl else None,
            lm_loss=self.lm_loss(self.models.policy) if lm else None,
            lm_loss_theta0=self.lm_loss_theta0(),
            kl_t1=kl_t1.mean if kl_t1 else None,
            kl_t1_stderr=kl_t1.stderr if kl_t1 else None,
            **extra,
        )
        self.run.add(row)
        return row


class HeldOutPreferences:
    """The held-out preference accuracy of a pool-based run: does r̂ = β(log πθ − log πθ0) rank the chosen response
    of each held-out pair above the rejected one (the standard metric of learning from a fixed preference data set)?

    Pairs the data set calls a tie are left out. θ0's log-probs of the held-out responses are taken once
    (``prepare_theta0``, from θ0 as deployed, before an objective changes its tokenizer); each waypoint then costs
    one policy pass per response. At θ0 every margin is 0 and the accuracy exactly ½.
    """

    def __init__(self, models, test: Sequence[Prompt], pairs: Mapping[str, PoolPair], beta: float, batch_size: int = 32):
        from aplkit.data import DataError, response_ids
        from aplkit.generation import prompt_ids

        self.models, self.beta, self.batch_size = models, beta, batch_size
        labelled = [(p, pairs[p.id]) for p in test if p.id in pairs and pairs[p.id].preferred is not None]
        if not labelled:
            raise DataError("data: the pool's held-out pairs are all ties; the held-out preference accuracy needs labelled ones")
        tok = models.tokenizer
        chosen, rejected = [], []
        for _, pair in labelled:
            y0 = list(pair.y0_ids) if pair.y0_ids is not None else list(response_ids(tok, [pair.y0])[0])
            y1 = list(pair.y1_ids) if pair.y1_ids is not None else list(response_ids(tok, [pair.y1])[0])
            chosen.append(y1 if pair.preferred == 1 else y0)
            rejected.append(y0 if pair.preferred == 1 else y1)
        self.n = len(labelled)
        self._p_ids = prompt_ids(tok, [p.text for p, _ in labelled]) * 2
        self._c_ids = chosen + rejected
        self._theta0: np.ndarray | None = None

    def _logprobs(self, model) -> np.ndarray:
        from aplkit.generation import ids_logprobs

        return ids_logprobs(model, self._p_ids, self._c_ids, self.models.tokenizer.pad_token_id, self.batch_size).double().numpy()

    def prepare_theta0(self) -> None:
        if self._theta0 is None:
            self._theta0 = self._logprobs(self.models.reference)

    def margins(self) -> np.ndarray:
        """r̂(x, y_w) − r̂(x, y_l) of every held-out pair under the current policy."""
        self.prepare_theta0()
        r = self.beta * (self._logprobs(self.models.policy) - self._theta0)
        return r[: self.n] - r[self.n :]

    def evaluate(self, step: int, acquired: int, trained: int | None = None) -> HeldOutRow:
        m = self.margins()
        acc = mean_se(np.where(m > 0, 1.0, np.where(m == 0, 0.5, 0.0)).tolist())
        gap = mean_se(m.tolist())
        assert acc is not None and gap is not None  # __init__ refuses a split without a labelled pair
        return HeldOutRow(step, acquired, acc.mean, acc.stderr, acc.n, gap.mean, gap.stderr, trained)
