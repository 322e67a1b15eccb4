"""Conditional training: MLE on the text with ``<|good|>`` before each segment with R ≥ t and ``<|bad|>`` before the rest.

L = −Σᵢ [log π(cⁱ | ·) + Σⱼ log π(xⁱ_j | c, cⁱ)], cⁱ the control token. At inference the model is
prompted with ``<|good|>`` and the control tokens are never emitted (``suppress``). The two tokens
are added to the tokenizer and to every model that reads the ids (θ and θ0, so KL and implicit
rewards compare like with like); their input and output embeddings start at the mean of the existing
ones, a token the model reads as "average text" rather than a random direction. A tokenizer that
reserves them (``aplkit.scratch``) keeps its ids and its models their rows.
"""

from __future__ import annotations

import torch

from aplkit.objectives.mle import MLE
from aplkit.objectives.segments import Segment
from aplkit.scratch import BAD, GOOD


def add_control_tokens(tokenizer, *models) -> tuple[int, int]:
    """Add ``<|good|>``/``<|bad|>`` (once) and give each model their rows, at the mean embedding; their ids."""
    if GOOD not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [GOOD, BAD]}, replace_extra_special_tokens=False)
    good, bad = tokenizer.convert_tokens_to_ids(GOOD), tokenizer.convert_tokens_to_ids(BAD)
    for model in models:
        old = model.get_input_embeddings().weight.shape[0]
        if old > max(good, bad):
            continue
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            for emb in (model.get_input_embeddings(), model.get_output_embeddings()):
                if emb is None:
                    continue
                w = emb.weight
                w[old:] = w[:old].mean(0, keepdim=True)
                bias = getattr(emb, "bias", None)
                if bias is not None:
                    bias[old:] = bias[:old].mean()
    return good, bad


class Conditional(MLE):
    name = "conditional"

    def __init__(self, good_id: int, bad_id: int, **kw):
        super().__init__(**kw)
        self.good_id, self.bad_id = good_id, bad_id

    def control(self, seg: Segment, t: float) -> int:
        return self.good_id if seg.reward >= t else self.bad_id

    @property
    def suppress(self) -> list[int]:
        """Token ids whose logits generation sets to −∞."""
        return [self.good_id, self.bad_id]
