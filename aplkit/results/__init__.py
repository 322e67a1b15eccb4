"""The results side, in layers: run folders → statistics → tables and figures → the report.

| module | holds |
|---|---|
| ``load`` | finding run folders and reading them into DataFrames (``load_runs``, ``load_acquired``, ``load_train``, ``load_consistency``, ``read_run``), run identity, ``select_main``, the paper's strategy order and names |
| ``stats`` | every statistic: win-rate curves and their companions (soft win-rate, reward gap, KL from θ0, LM loss: ``companion_metrics``, one spec each in ``aplkit.metrics``), data efficiency, BT histograms, online vs reset, loss curves, epochs, trained gaps, one acquired batch (``batch_stats``) and a run's step table |
| ``compare`` | each strategy against random, every table through one computation (``paired_table``): paired differences with t and bootstrap intervals, significance (Holm), probability of improvement, power, data efficiency with a bootstrap interval, Fig 3's share of confidently wrong pairs, the ranking at the final size, acquisition cost per step (seconds and model passes), the win-rate difference at matched KL from θ0 (``kl_matched``); two sets of runs of one plan against each other (``paired_against``: a training objective against DPO, paired by strategy, seed and size, Holm-adjusted) |
| ``frontier`` | the frontier: a run's best value reachable up to each KL from θ0 at a budget (its evaluations after each epoch, θ0's), each strategy's against random's on a declared KL grid (``frontier_comparison``, through ``paired_table``), the labels random needs at equal KL (``label_saving``), the figure's means |
| ``tables`` | Table 2, the companion-metrics table and every Markdown / LaTeX / CSV formatter |
| ``plots`` | every figure (matplotlib), ``save`` |
| ``report`` | ``report(runs_dir, out_dir, budget)`` and the blocks it shares with ``aplkit.notebook`` (Fig 2 selection and the task → 'against' lookup, Fig 3 per task, Fig 1/5/6 and frontier builders) |

Each layer imports only the ones above it. The public names of ``load``, ``stats``, ``compare``, ``frontier`` and ``tables`` are
re-exported here; those of ``plots`` and ``report`` too, but only on first use, so that importing the
numbers does not import matplotlib. The report function itself is ``aplkit.results.report.report``
(``aplkit.results.report`` is the module).
"""

from __future__ import annotations

import importlib
from typing import Any

from aplkit.results import compare, frontier, load, stats, tables
from aplkit.results.compare import *  # noqa: F403
from aplkit.results.frontier import *  # noqa: F403
from aplkit.results.load import *  # noqa: F403
from aplkit.results.stats import *  # noqa: F403
from aplkit.results.tables import *  # noqa: F403

_PLOTS_NAMES = (
    "AGAINST",
    "COLORS",
    "CORRECT",
    "INCORRECT",
    "MARKERS",
    "bt_panel_caption",
    "color",
    "label",
    "plot_bt_hist",
    "plot_consistency",
    "plot_epochs",
    "plot_frontier",
    "plot_online_vs_reset",
    "plot_progress",
    "plot_ranking",
    "plot_winrate",
    "save",
    "style",
)
_REPORT_NAMES = (
    "against_by_task",
    "fig1_figure",
    "fig3_per_task",
    "frontier_figure",
    "fig5_figure",
    "fig6_figure",
    "main_acquired",
    "main_runs",
)
_LAZY = {name: "plots" for name in _PLOTS_NAMES} | {name: "report" for name in _REPORT_NAMES}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [*compare.__all__, *frontier.__all__, *load.__all__, *stats.__all__, *tables.__all__, *_LAZY]
