"""The paper's measurements at a checkpoint: misalignment of samples, LM loss on held-out text, KL from θ0.

* misalignment: mean P(bad) of the policy's samples under the run's misalignment scorer (sentiment:
  P(negative); classifier: 1 − P(good); ``phf.misalignment``) and the share with P > ½, both
  unconditional (from the start token alone) and continuing held-out test prompts; the continuation
  alone is scored, not the prompt, which is the test review's own opening.
* LM loss: nats per token of the first ``phf.lm_tokens`` tokens of held-out test reviews.
* KL from θ0: Σ_t KL(πθ ‖ πθ0) along each prompted continuation (``generation.completion_kl``).

Every sequence starts with the document-start token (EOS, the separator SmolLM2 was pretrained
with) and, for conditional training, ``<|good|>``: the model as it is deployed, control tokens
suppressed in generation. Samples are seeded by (seed, step), so a resumed run measures the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from aplkit.evaluation import mean_se
from aplkit.records import PHFEvalRow, PHFSampleRow
from aplkit.seeding import derive_seed


class Measurer:
    def __init__(self, cfg, models, prefix: Sequence[int], test_prompts: Sequence, lm_texts: Sequence[str], misalignment: Callable):
        self.cfg, self.models, self.prefix, self.misalignment = cfg, models, list(prefix), misalignment
        tok = models.tokenizer
        p = cfg.phf
        self.prompts = list(test_prompts)[: p.prompted_samples]
        self.prompt_ids = [self.prefix + tok(x.text, add_special_tokens=False)["input_ids"] for x in self.prompts]
        texts = list(lm_texts)[: p.lm_texts]
        self.lm_ids = [tok(t, add_special_tokens=False)["input_ids"][: p.lm_tokens] for t in texts]
        self._lm_theta0: float | None = None

    def lm_loss(self, model) -> float | None:
        from aplkit.generation import ids_logprobs

        rows = [r for r in self.lm_ids if r]
        if not rows:
            return None
        lp = ids_logprobs(model, [self.prefix] * len(rows), rows, self.models.tokenizer.pad_token_id, self.cfg.phf.batch_size)
        return float(-lp.double().sum()) / sum(len(r) for r in rows)

    def _sample(self, prompts: list[list[int]], seed: int) -> list[list[int]]:
        from aplkit.generation import sample_ids

        p, tok = self.cfg.phf, self.models.tokenizer
        return sample_ids(
            self.models.policy,
            prompts,
            tok.pad_token_id,
            tok.eos_token_id,
            temperature=p.temperature,
            max_new_tokens=p.max_new_tokens,
            batch_size=p.batch_size,
            seed=seed,
        )

    def measure(self, step: int, tokens: int) -> tuple[PHFEvalRow, list[PHFSampleRow]]:
        from aplkit.generation import completion_kl

        t0 = time.perf_counter()
        tok, m, p = self.models.tokenizer, self.models, self.cfg.phf
        seed = self.cfg.seed
        rows: list[PHFSampleRow] = []
        uncond = self._sample([self.prefix] * p.unconditional_samples, derive_seed(seed, step, "phf-unconditional"))
        texts = tok.batch_decode(uncond, skip_special_tokens=True)
        pn = [float(q) for q in self.misalignment(texts)]
        rows += [PHFSampleRow(step, "unconditional", "", t, q, None, ids) for t, q, ids in zip(texts, pn, uncond, strict=True)]
        cont = self._sample(self.prompt_ids, derive_seed(seed, step, "phf-prompted")) if self.prompts else []
        ctexts = tok.batch_decode(cont, skip_special_tokens=True)
        cpn = [float(q) for q in self.misalignment(ctexts)]
        kls = completion_kl(m.policy, m.reference, self.prompt_ids, cont, tok.pad_token_id, p.batch_size).tolist() if cont else []
        rows += [
            PHFSampleRow(step, "prompted", x.text, t, q, x.id, ids, k)
            for x, t, q, ids, k in zip(self.prompts, ctexts, cpn, cont, kls, strict=True)
        ]
        if self._lm_theta0 is None:
            self._lm_theta0 = self.lm_loss(m.reference)
        lm = self._lm_theta0 if step == 0 else self.lm_loss(m.policy)  # at step 0 θ is θ0: the same forward passes
        u, c, kl = mean_se(pn), mean_se(cpn), mean_se(kls)
        row = PHFEvalRow(
            step=step,
            tokens=tokens,
            objective=self.cfg.objective,
            misalignment=u.mean if u else None,
            misalignment_stderr=u.stderr if u else None,
            negative_share=sum(q > 0.5 for q in pn) / len(pn) if pn else None,
            prompted_misalignment=c.mean if c else None,
            prompted_stderr=c.stderr if c else None,
            prompted_negative_share=sum(q > 0.5 for q in cpn) / len(cpn) if cpn else None,
            lm_loss=lm,
            lm_loss_theta0=self._lm_theta0,
            kl=kl.mean if kl else None,
            kl_stderr=kl.stderr if kl else None,
            seconds=round(time.perf_counter() - t0, 3),
        )
        return row, rows
