"""Filtering: MLE on the documents whose score R(x) ≥ t only.

L = −Σ_{x: R(x) ≥ t} Σᵢ Σⱼ log π(xⁱ_j | c), R(x) the mean of its segments' rewards (``Document.reward``:
Korbak et al. score a document by the average of its sentences' scores) and t a percentile of the
training documents' scores (``scores``). A document below t is left out whole, as dropping it from the
corpus would: none of it is learnt or read as context (its row keeps only the start token and prompt). The
batch is not refilled with other documents, so filtering trains on fewer tokens per step. In the APL
loop each document is one completion, so R(x) is the completion's own reward.
"""

from __future__ import annotations

from collections.abc import Sequence

from aplkit.objectives.mle import MLE
from aplkit.objectives.segments import Document


class Filtering(MLE):
    name = "filtering"

    def scores(self, docs: Sequence[Document]) -> list[float]:
        return [d.reward for d in docs]

    def keep(self, doc: Document, t: float) -> bool:
        return doc.reward >= t
