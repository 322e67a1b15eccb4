"""The oracle interface: judges behind one small base class (as TRL's judges are).

An oracle only ever sees ``Comparison`` records in display order and answers in
display terms. Randomising the order, caching, paying and mapping the answer back
to the pair's own order are the ledger's job (``aplkit.oracles.ledger``), so every
oracle gets them for free and none can get them wrong.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

from aplkit.records import Comparison, Verdict, sigmoid


class OracleError(RuntimeError):
    """The oracle cannot produce labels (server down, quota, bad credentials); nothing already labelled is lost."""


class Oracle(ABC):
    """Prefers one of two completions for a prompt."""

    #: Short kind name used in configs and the registry.
    kind: str = "oracle"

    @property
    @abstractmethod
    def identity(self) -> str:
        """Everything that changes the answer (kind, model, template, temperature); keys the label cache."""

    def cache_identities(self) -> list[str]:
        """Identities whose stored answers this oracle accepts as its own answer now, in lookup order.

        Default: only ``identity``. An oracle whose question depends on what the server accepts
        (the LLM judge with ``structured: auto``) lists every variant it could send, so an answer
        already paid for under any of them is never asked again.
        """
        return [self.identity]

    def record_identity(self, c: Comparison) -> str:
        """The identity the verdict just yielded for ``c`` is stored under: what was really sent (default: ``identity``)."""
        return self.identity

    @abstractmethod
    def judge(self, items: Sequence[Comparison]) -> list[Verdict]:
        """One verdict per comparison, same order. Invalid answers come back with ``choice=None``."""

    def pointwise(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float] | None:
        """The score s(x, y) this oracle compares, one per (prompt, completion), or None when it has none.

        A scoring oracle (sentiment, classifier, ROUGE) returns the very score its ``judge`` compares,
        so the evaluation can report the mean score gap beside the win-rate; a pairwise judge (an
        LLM, a person) keeps this default.
        """
        return None

    def judge_iter(self, items: Sequence[Comparison]) -> Iterator[tuple[int, Verdict]]:
        """Yield ``(index, verdict)`` as each answer arrives (any order) so the ledger can store it at once.

        Concurrent oracles (the API judge) override this; the default wraps ``judge``.
        """
        yield from enumerate(self.judge(items))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients, servers or widgets."""


def scored_verdict(score_a: float, score_b: float, tau: float) -> Verdict:
    """Verdict of a scoring oracle: the higher score wins, P(A) = σ((s_A − s_B)/τ), tie only on equal scores.

    The scores travel with it (to the ledger, the run folder and ``Preference``) so the pair's
    rewards can be the oracle's own (``training.phf.pair_rewards: oracle``).
    """
    a, b = float(score_a), float(score_b)
    choice = "A" if a > b else "B" if b > a else "tie"
    return Verdict(choice=choice, raw=f"s_A={a:.6f} s_B={b:.6f}", p_a=sigmoid((a - b) / tau), score_a=a, score_b=b)
