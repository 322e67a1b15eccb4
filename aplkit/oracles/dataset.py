"""The ``dataset`` oracle: a preference data set's stored labels, asked as any judge is asked.

Pool-based acquisition (``data.task: preferences``) draws its candidates from the data set's own pairs, whose
preferences are already known; this oracle gives them back. It costs nothing, but its answers still go through
``label_pairs`` and the ledger, so the display order, resume, the counts of calls and cache hits and the
simulated noise (``oracle.flip_prob``) behave as with a paid judge. It can judge only the pairs of its data
set: a pool run reports a win-rate only with a judge of its own (``evaluation.oracle``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from aplkit.oracles.base import Oracle, OracleError
from aplkit.records import Comparison, PoolPair, Prompt, Verdict


class DatasetOracle(Oracle):
    """Answers a comparison of a stored pair with the data set's label: the chosen response wins, a stored tie is a tie."""

    kind = "dataset"

    def __init__(self, pairs: Sequence[tuple[str, PoolPair]]):
        """``pairs``: (prompt text, stored pair) of every pair the oracle may be asked about (train and test)."""
        self._answers: dict[tuple[str, str, str], str] = {}
        h = hashlib.blake2b(digest_size=8)
        for prompt, pair in sorted(pairs, key=lambda xp: (xp[0], xp[1].y0, xp[1].y1)):
            won = pair.chosen_rejected
            a_first = "tie" if won is None else "A" if won[0] == pair.y0 else "B"
            swapped = {"A": "B", "B": "A", "tie": "tie"}[a_first]
            self._answers.setdefault((prompt, pair.y0, pair.y1), a_first)  # a pair stored twice keeps its first label
            self._answers.setdefault((prompt, pair.y1, pair.y0), swapped)
            h.update(repr((prompt, pair.y0, pair.y1, pair.preferred)).encode())
        self._fingerprint = h.hexdigest()

    @classmethod
    def from_pools(cls, prompts: Sequence[Prompt], pairs: Mapping[str, PoolPair]) -> DatasetOracle:
        return cls([(p.text, pairs[p.id]) for p in prompts if p.id in pairs])

    @property
    def identity(self) -> str:
        """The stored labels' content: another data set (or an edited file) is another judge in the ledger."""
        return f"dataset:{self._fingerprint}"

    def judge(self, items: Sequence[Comparison]) -> list[Verdict]:
        out = []
        for c in items:
            choice = self._answers.get((c.prompt, c.a, c.b))
            if choice is None:
                raise OracleError(
                    "oracle.kind=dataset answers only the stored pairs of its data set; to judge the policy's generations"
                    " set evaluation.oracle (sentiment, classifier, llm, ...)"
                )
            out.append(Verdict(choice=choice, raw=f"stored label: {choice}"))  # type: ignore[arg-type]
        return out


__all__ = ["DatasetOracle"]
