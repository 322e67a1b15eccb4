"""The main job (`aplkit demo`, `make demo`): the CPU sweep, then every figure and table.

Rerunning it resumes: complete runs are skipped, half-done ones continue, and the report is
rewritten from whatever has finished.
"""

from __future__ import annotations

from pathlib import Path

from aplkit.config import PRESETS
from aplkit.sweep import run_sweep

DEMO_SWEEP = PRESETS / "sweep-imdb-cpu.yaml"


def demo(runs: str | Path = "runs/demo", figures: str | Path = "figures", jobs: int = 1, sweep: str | Path | None = None) -> int:
    """Run the CPU sweep into ``runs``, write the report into ``figures``; 0 when every run finished."""
    from aplkit.results.report import report

    summary = run_sweep(sweep or DEMO_SWEEP, jobs=jobs, out=runs)
    finished = len(summary["done"]) + len(summary["skipped"])
    if not finished:
        print(f"no run finished; nothing to report (see the notebook.ipynb in each run folder under {runs})")
        return 1
    written = report(runs, figures)
    out = Path(figures)
    print(f"\nfigures and tables in {out}/:")
    for name in sorted(written):
        print(f"  {written[name]}")
    if "table2.md" in written:
        print(f"\nTable 2 — {written['table2.md']}\n")
        print(written["table2.md"].read_text(encoding="utf-8").rstrip())
    print(f"\nnotes: {out / 'notes.md'}; executed notebooks: {Path(runs)}/*/seed*/notebook.ipynb")
    return 1 if summary["failed"] else 0


__all__ = ["DEMO_SWEEP", "demo"]
