"""The main job (`aplkit demo`, `make demo`): the CPU sweep, then every figure and table.

Rerunning it resumes: complete runs are skipped, half-done ones continue, and the report is
rewritten from whatever has finished.

The report goes beside the runs (``runs/demo/figures``; ``runs/`` is not tracked): its numbers are this
machine's (floating point differs between CPU instruction sets, and sampling amplifies it), so a demo
never rewrites the committed ``figures/``. Those are rebuilt only on purpose, by ``aplkit report``.
"""

from __future__ import annotations

from pathlib import Path

from aplkit.config import PRESETS
from aplkit.sweep import run_sweep

DEMO_SWEEP = PRESETS / "sweep-imdb-cpu.yaml"


def report_dir(runs: str | Path) -> Path:
    """Where the demo writes its report: ``figures`` inside its runs folder."""
    return Path(runs) / "figures"


def demo(runs: str | Path = "runs/demo", figures: str | Path | None = None, jobs: int = 1, sweep: str | Path | None = None) -> int:
    """Run the CPU sweep into ``runs``, write the report into ``figures`` (default ``report_dir(runs)``); 0 when every run finished."""
    from aplkit.results.load import load_code
    from aplkit.results.report import report

    summary = run_sweep(sweep or DEMO_SWEEP, jobs=jobs, out=runs)
    finished = len(summary["done"]) + len(summary["skipped"])
    if not finished:
        print(f"no run finished; nothing to report (see the notebook.ipynb in each run folder under {runs})")
        return 1
    out = Path(figures) if figures is not None else report_dir(runs)
    written = report(runs, out)
    print(f"\nfigures and tables in {out}/:")
    for name in sorted(written):
        print(f"  {written[name]}")
    if "table2.md" in written:
        print(f"\nTable 2 — {written['table2.md']}\n")
        print(written["table2.md"].read_text(encoding="utf-8").rstrip())
    print(f"\nnotes: {out / 'notes.md'}; executed notebooks: {Path(runs)}/*/seed*/notebook.ipynb")
    machines = "; ".join(load_code(runs)["machines"]) or "an unrecorded machine"
    print(f"runs made on {machines}; the committed figures/ are left as they are (to redraw them: aplkit report {runs} --out figures)")
    return 1 if summary["failed"] else 0


__all__ = ["DEMO_SWEEP", "demo", "report_dir"]
