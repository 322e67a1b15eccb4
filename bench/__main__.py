"""``python -m bench SUBCOMMAND ...``: compute | memory | cores | labels | apl-objectives | pilot | frontier | objectives | phf | phf-pilot | limits | phases | dtype | gpu-check."""

from __future__ import annotations

import os
import sys

USAGE = """usage: python -m bench {compute,memory,cores,labels,apl-objectives,pilot,frontier,objectives,phf,phf-pilot,limits,phases,dtype,gpu-check} [options]

  compute [--quick] [--out PATH] [--skip judge,memory,...]
          JSON to bench/results/compute.json; with --quick to runs/bench/compute-quick.json
          DPO vs TRL DPOTrainer, scorers vs one-at-a-time, batched vs per-prompt generation,
          MFU against a matmul probe, LLM judge vs the local llama.cpp server, peak memory
  memory  [--quick]   peak resident memory of a short CPU-preset run and of the DPO step alone
  cores   [--repeats N]   both cores: two 1-thread processes side by side vs one 2-thread process (idle machine)
  labels  ...         label efficiency (bench/labels.py)
  apl-objectives [--objectives conditional] [--shard I/N] [--report-only]
          the APL loop with another training objective, paired with the labels study's DPO runs (bench/apl_objectives.py)
  pilot   [--shard I/N] [--report-only]   the pilot that chooses the study's preset (bench/pilot.py)
  frontier --plan PLAN [--shard I/N] [--commit] [--report-only] [--pool-strata] [--interim]
          a committed plan's strategies × seeds, evaluated after each epoch, read on a KL grid (bench/frontier.py);
          runs only from a checkout at the plan's commit
  objectives [--quick] [--model SPEC | --config PHF-PRESET]   PHF objectives' tokens/s vs MLE, AWR value-head peak memory
  phf     [--objectives a,b] [--seeds K] [--shard I/N] [--commit] [--report-only]
          the PHF grid: objectives × seeds of aplkit phf, rows in bench/results/phf, figures/phf_* (bench/phf.py)
  phf-pilot [--sizes imdb-s,imdb-m] [--report-only]
          the from-scratch PHF setting's MLE sizing pilot: bench/results/phf-scratch-pilot (bench/phf_pilot.py)
  dtype   [--dtypes float32|bfloat16] [--seeds A-B] [--commit] [--report-only]
          bf16 against fp32 compute: per-phase seconds and the paired results, by a rule fixed before the runs (bench/dtype.py)
  limits  RECORD_OR_RUN ...   each phase's FLOPs at a one-thread matmul peak beside its measured seconds (bench/limits.py)
  phases  [--strategy S] [--dtype float32|bfloat16] [--step N]   one real step's phases split into their parts by cProfile (bench/phases.py)
  gpu-check [--device cuda|cpu] [--strategy S] [--test-prompts N]
          one step of params/imdb-gpu.yaml with random weights of the embedded model's shape, no download: seconds per
          phase, tokens/s, peak GPU memory to bench/results/gpu-check-<device>.json (--device cpu: a miniature, in seconds)
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "compute":
        from bench.compute import main as run

        return run(rest)
    if cmd == "memory":
        from bench.memory import main as run

        return run(rest)
    if cmd == "cores":
        from bench.cores import main as run

        return run(rest)
    if cmd == "objectives":
        from bench.objectives import main as run

        return run(rest)
    if cmd == "labels":
        from bench.labels import main as run

        return run(rest)
    if cmd == "apl-objectives":
        from bench.apl_objectives import main as run

        return run(rest)
    if cmd == "phf":
        from bench.phf import main as run

        return run(rest)
    if cmd == "dtype":
        from bench.dtype import main as run

        return run(rest)
    if cmd == "limits":
        from bench.limits import main as run

        return run(rest)
    if cmd == "phases":
        from bench.phases import main as run

        return run(rest)
    if cmd == "phf-pilot":
        from bench.phf_pilot import main as run

        return run(rest)
    if cmd == "pilot":
        from bench.pilot import main as run

        return run(rest)
    if cmd == "frontier":
        from bench.frontier import main as run

        return run(rest)
    if cmd == "gpu-check":
        from bench.gpu_check import main as run

        return run(rest)
    print(
        f"bench: unknown subcommand '{cmd}' (compute, memory, cores, labels, apl-objectives, pilot, frontier, objectives, phf, phf-pilot, limits, dtype or gpu-check)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
