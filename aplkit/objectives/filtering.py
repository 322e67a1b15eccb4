"""Filtering: MLE on the segments with R(xⁱ) ≥ t only; t is a percentile of the training scores.

L = −Σ_{i: R(xⁱ) ≥ t} Σⱼ log π(xⁱ_j | c). The other segments are cut out of the text, not merely
masked, so the model neither learns them nor reads them as context (as dropping them from the
corpus would).
"""

from __future__ import annotations

from aplkit.objectives.mle import MLE
from aplkit.objectives.segments import Segment


class Filtering(MLE):
    name = "filtering"

    def keep(self, seg: Segment, t: float) -> bool:
        return seg.reward >= t
