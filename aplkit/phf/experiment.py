"""One PHF objective × seed: train θ0 on scored IMDB sentences for a token budget, measuring at checkpoints.

    reviews ← train split in the seed's order, cut to sentences, scored (R = −misalignment = −P(bad))
    t       ← training.phf.threshold_percentile of the training rewards (filtering: of the reviews' mean rewards)
    θ       ← θ0 (+ control tokens for conditional, + LoRA adapters, + AWR's value head); a scratch
              model's θ0 is the seed's initialisation, so pretraining, not fine-tuning
    measure θ0
    for each batch of phf.batch_docs reviews (until phf.token_budget tokens):
        one optimiser step of the objective
        at phf.checkpoints evenly spaced steps: measure, then checkpoint

Resume: the checkpoint holds the trainable weights, the optimiser and the value head after the
last measured step; rerunning the same command drops the rows written after it and carries on,
and because batches and samples are seeded by (seed, step) it ends where an uninterrupted run does.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from aplkit.phf.config import PHFConfig, default_out
from aplkit.records import PHFEvalRow, PHFSampleRow, PHFSegmentRow, PHFTrainRow
from aplkit.runfolder import SUMMARY, RunFolder


class PHFExperiment:
    def __init__(self, cfg: PHFConfig, out: str | Path | None = None, *, models=None, progress: bool = True):
        from aplkit.data import load_pools
        from aplkit.models import load_models
        from aplkit.objectives.dpo import apply_lora
        from aplkit.objectives.segments import threshold
        from aplkit.objectives.trainer import SegmentTrainer, make_loss
        from aplkit.phf.measure import Measurer
        from aplkit.phf.misalignment import check_identity, misalignment_scorer
        from aplkit.phf.segments import training_reviews

        self.cfg, self.progress = cfg, progress
        self.misalignment = misalignment_scorer(cfg)  # before the run folder or the policy: a bad classifier fails first
        self.run_dir = RunFolder.open(Path(out or cfg.out or default_out(cfg)), cfg.to_dict(), defaults=PHFConfig().to_dict())
        with self.run_dir.given_back_on_error():
            check_identity(self.run_dir, self.misalignment.identity)
            m = self.models = models or load_models(cfg.model.spec, cfg.model.device, cfg.model.dtype, cfg.model.revision, seed=cfg.seed)
            tok = m.tokenizer
            d = cfg.data
            self.pools = load_pools(d, tok)  # before any control token joins the tokenizer: the split's fingerprint is θ0's
            self.reviews = training_reviews(cfg, tok, self.misalignment)
            m.reset_policy()
            loss = make_loss(cfg.objective, cfg.training.phf, tok, [m.policy, m.reference])
            self.threshold = threshold(loss.scores([r.document() for r in self.reviews]), cfg.training.phf.threshold_percentile)
            for p in m.reference.parameters():
                p.requires_grad_(False)
            m.policy = apply_lora(m.policy, cfg.training, getattr(loss, "suppress", None))  # control tokens stay trainable
            # deployed, conditional training is prompted with EOS <|good|>; in training EOS is followed by the first
            # segment's own control token, so that prompt asks for a good first sentence, as in Korbak et al.
            self.prefix = [tok.eos_token_id] + ([loss.good_id] if cfg.objective == "conditional" else [])
            if cfg.objective == "conditional":
                for net in (m.policy, m.reference):  # θ and θ0 as deployed: scores mask the control tokens, as sampling does
                    net.aplkit_suppress_tokens = loss.suppress
            self.trainer = SegmentTrainer(m.policy, loss, cfg.training, tok.pad_token_id, [tok.eos_token_id])
            bad = [tok.eos_token_id, loss.bad_id] if cfg.objective == "conditional" else None
            self.measurer = Measurer(cfg, m, self.prefix, self.pools.test, self.pools.held_out_texts(), self.misalignment, bad)
            b = cfg.phf.batch_docs
            self.batches = [self.reviews[s : s + b] for s in range(0, len(self.reviews), b)]
            n = len(self.batches)
            self.checkpoints = sorted({max(1, math.ceil(n * k / cfg.phf.checkpoints)) for k in range(1, cfg.phf.checkpoints + 1)})

    @property
    def steps(self) -> int:
        return len(self.batches)

    def tokens_at(self, step: int) -> int:
        return sum(r.tokens for batch in self.batches[:step] for r in batch)

    def resume(self) -> int:
        """The last measured step (0: none but maybe θ0); later rows dropped, θ and the optimiser restored."""
        run = self.run_dir
        state = run.load_checkpoint()
        done = int(state["step"]) if state else 0
        run.check_split(self.pools.split)
        for cls in (PHFTrainRow, PHFEvalRow, PHFSampleRow):
            run.truncate_after_step(cls, done)
        if not any(r.step == done for r in run.read(PHFEvalRow)):  # its samples may be half written
            run.replace(PHFSampleRow, [r for r in run.read(PHFSampleRow) if r.step < done])
        if state:
            self.trainer.load_state(state["trainer"])
        if not (run / "phf_segments.jsonl").exists():
            t = self.threshold
            run.replace(
                PHFSegmentRow,
                [
                    PHFSegmentRow(i, j, r.review_id, s, len(ids), q, -q >= t)
                    for i, r in enumerate(self.reviews)
                    for j, (s, ids, q) in enumerate(zip(r.sentences, r.ids, r.p_negative, strict=True))
                ],
            )
        return done

    def measure(self, step: int) -> PHFEvalRow:
        row, samples = self.measurer.measure(step, self.tokens_at(step))
        for s in samples:
            self.run_dir.add(s)
        self.run_dir.add(row)
        return row

    def run(self) -> dict:
        from tqdm.auto import tqdm

        wall0 = time.perf_counter()
        done = self.resume()
        if done < self.steps:
            self.run_dir.note_start()
        if not any(r.step == done for r in self.run_dir.read(PHFEvalRow)):
            self.measure(done)  # θ0 on a fresh run
        bar = tqdm(range(done + 1, self.steps + 1), desc=f"{self.cfg.objective} seed {self.cfg.seed}", disable=not self.progress)
        for s in bar:
            t0 = time.perf_counter()
            st = self.trainer.step([r.document() for r in self.batches[s - 1]], self.threshold)
            extra = {k: st.get(k) for k in ("nll", "weight", "value_loss")}
            self.run_dir.add(
                PHFTrainRow(s, self.tokens_at(s), st["tokens"], st["loss"], **extra, seconds=round(time.perf_counter() - t0, 3))
            )
            bar.set_postfix(loss=f"{st['loss']:.3f}")
            if s in self.checkpoints:
                self.measure(s)
                self.run_dir.save_checkpoint({"step": s, "trainer": self.trainer.state()})
        prev = self.run_dir.read_json(SUMMARY, {}) or {}
        evals = self.run_dir.read(PHFEvalRow)
        summary = {
            "complete": True,
            "objective": self.cfg.objective,
            "steps": self.steps,
            "tokens": self.tokens_at(self.steps),
            "threshold": self.threshold,
            "final": evals[-1].__dict__ if evals else None,
            "wall_seconds": round(float(prev.get("wall_seconds") or 0.0) + time.perf_counter() - wall0, 2),
        }
        self.run_dir.write_json(SUMMARY, summary)
        return summary


def run_phf(cfg: PHFConfig, out: str | Path | None = None, **kwargs) -> dict:
    """Build and run one PHF objective × seed; returns summary.json's content."""
    exp = PHFExperiment(cfg, out, **kwargs)
    try:
        return exp.run()
    finally:
        exp.run_dir.release()
