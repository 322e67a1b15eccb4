"""A human oracle for notebooks: queue the questions, answer them in a panel, re-run the loop.

A Jupyter cell that is running cannot receive widget clicks, so the oracle never waits:
``HumanOracle.judge_iter`` writes every comparison it has no answer for to a queue file in the
run folder and raises ``AwaitingHumanLabels``. ``LabelPanel(run_dir)`` shows the queue one
comparison at a time and writes each answer to the run's ledger under the oracle's identity the
moment it is given. Re-running the loop then finds every answer in the ledger (``label_pairs``
never asks the oracle for those) and goes on. (Waiting inside the cell with ``jupyter-ui-poll``
was tried in JupyterLab 4.6: its 1.1.0 calls ``kernel.do_one_iteration``, which ipykernel 7
no longer has, so no click reached the kernel while the loop waited; see tests/test_browser.py.)
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from aplkit.oracles.base import Oracle, OracleError
from aplkit.oracles.ledger import Ledger, ledger_key
from aplkit.records import Comparison, Verdict
from aplkit.runfolder import QUEUE, RunFolder, project_dir, read_jsonl, write_jsonl

QUEUE_FILE = QUEUE
KEYS = {"a": "A", "b": "B", "t": "tie", "s": "skip"}
#: fixed heights, so a long completion scrolls inside its box and the buttons never move
PROMPT_HEIGHT = "5.5em"
TEXT_HEIGHT = "15em"


class AwaitingHumanLabels(OracleError):
    """Comparisons are waiting in the queue; label them in the panel and run again."""

    def __init__(self, n: int, queue_path: Path):
        self.n = n
        self.queue_path = queue_path
        super().__init__(
            f"{n} comparison(s) await a human label in {queue_path}: open aplkit.oracles.human.LabelPanel('{queue_path.parent}'), "
            "label them, then run again (labels already given are kept)"
        )


def read_queue(path: str | Path) -> list[dict[str, Any]]:
    return list(read_jsonl(path))


def write_queue(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Replace the queue atomically, so the panel and the loop never see a half-written file."""
    write_jsonl(path, rows)


def drop_from_queue(path: str | Path, key: str) -> None:
    """Remove one answered item, re-reading the file so items another writer queued meanwhile stay."""
    write_queue(path, [r for r in read_queue(path) if r["key"] != key])


def find_run_dir(run_dir: str | Path, queue_file: str = QUEUE_FILE) -> Path:
    """The absolute run folder holding ``queue_file``: a relative path is tried from the working
    directory, then from ``aplkit.runfolder.project_dir()`` (a kernel starts in the notebook's own
    folder). Nothing is created; a missing queue is a FileNotFoundError naming the absolute paths."""

    p = Path(run_dir).expanduser()
    tried = [p.resolve()] if p.is_absolute() else list(dict.fromkeys([(Path.cwd() / p).resolve(), (project_dir() / p).resolve()]))
    for d in tried:
        if (d / queue_file).is_file():
            return d
    where = " nor ".join(str(d / queue_file) for d in tried)
    raise FileNotFoundError(
        f"no labelling queue: there is no {where}. Run the loop with oracle.kind=human on that run folder first "
        "(it queues the comparisons), or pass the run folder's absolute path"
    )


class HumanOracle(Oracle):
    """Puts unanswered comparisons in ``queue_path`` (normally ``<run>/human_queue.jsonl``) and stops the loop."""

    kind = "human"

    def __init__(self, name: str = "human", queue_path: str | Path = QUEUE_FILE):
        self.name = name
        self.queue_path = Path(queue_path)

    @property
    def identity(self) -> str:
        return f"human|{self.name}"

    def judge(self, items: Sequence[Comparison]) -> list[Verdict]:
        return [v for _, v in sorted(self.judge_iter(items), key=lambda t: t[0])]

    def judge_iter(self, items: Sequence[Comparison]) -> Iterator[tuple[int, Verdict]]:
        if not items:
            return
        queue = read_queue(self.queue_path)
        known = {r["key"] for r in queue}
        for c in items:
            key = ledger_key(self.identity, c)
            if key not in known:
                known.add(key)
                queue.append({"key": key, "oracle": self.identity, "prompt": c.prompt, "a": c.a, "b": c.b})
        self.queue_path.parent.mkdir(parents=True, exist_ok=True)
        write_queue(self.queue_path, queue)
        raise AwaitingHumanLabels(len(queue), self.queue_path)
        yield  # pragma: no cover - makes this a generator, so nothing runs before the caller iterates


class LabelPanel:
    """An ipywidgets panel over a run's human queue: progress, prompt, A beside B, buttons A / B / tie / skip.

    Keys a, b, t, s work while the pointer is over the panel, no text box needed (ipyevents stops the
    key there, so JupyterLab's command mode never sees it and inserts no cell). Every answer is
    recorded in the run's ledger — the file the loop reads, as the run folder names it from the run's
    ``oracle.cache`` — and then removed from the queue, so closing or reloading the page loses
    nothing: run the cell again to go on.
    Skip leaves an item queued for later.
    """

    def __init__(self, run_dir: str | Path, queue_file: str = QUEUE_FILE):
        run = RunFolder(find_run_dir(run_dir, queue_file))  # raises before anything is created
        self.run_dir = run.path
        self.queue_path = run / queue_file
        self.ledger = Ledger(run.ledger_path())
        # an answer recorded just before a crash may still be queued: the ledger wins
        self.queue = [
            r for r in read_queue(self.queue_path) if self.ledger.lookup(r["oracle"], Comparison(r["prompt"], r["a"], r["b"])) is None
        ]
        self.pos = 0  # index into the queue of the item on show
        self.done = 0
        self.note = ""  # feedback on the last action
        self._w: dict[str, Any] | None = None

    # ------------------------------------------------------------------ logic (headless)
    @property
    def current(self) -> dict[str, Any] | None:
        return self.queue[self.pos] if self.queue else None

    @property
    def remaining(self) -> int:
        return len(self.queue)

    def status(self) -> str:
        if not self.queue:
            return f"Queue empty: {self.done} labelled here. Re-run the loop; it resumes and finds these labels."
        return f"Item {self.pos + 1} of {len(self.queue)} left · {self.done} labelled here"

    def answer(self, choice: str) -> None:
        """Record A, B or tie for the item on show, drop it from the queue, show the next."""
        if choice not in ("A", "B", "tie"):
            raise ValueError(f"choice must be A, B or tie, got {choice!r}")
        item = self.current
        if item is None:
            return
        c = Comparison(item["prompt"], item["a"], item["b"])
        self.ledger.record(item["oracle"], c, Verdict(choice=choice, raw=f"human: {choice}"), purpose="human")
        drop_from_queue(self.queue_path, item["key"])
        del self.queue[self.pos]
        self.done += 1
        if self.pos >= len(self.queue):
            self.pos = 0
        self.note = f"Saved: {'tie' if choice == 'tie' else choice + ' is better'}."
        self._refresh()

    def skip(self) -> None:
        """Show the next item; this one stays queued. Said so when there is no other item to show."""
        if not self.queue:
            self.note = "Nothing to skip: the queue is empty."
        elif len(self.queue) == 1:
            self.note = "Skip: this is the only item left, so it is shown again (it stays queued until answered)."
        else:
            wrapped = self.pos + 1 == len(self.queue)
            self.pos = (self.pos + 1) % len(self.queue)
            self.note = "Skipped; back to the first item still queued." if wrapped else "Skipped; it stays queued for later."
        self._refresh()

    def key(self, k: str) -> None:
        """Keyboard shortcut: a, b, t (tie) or s (skip); anything else is ignored."""
        choice = KEYS.get(k.strip().lower()[-1:] if k.strip() else "")
        if choice == "skip":
            self.skip()
        elif choice is not None:
            self.answer(choice)

    # ------------------------------------------------------------------ widgets
    def _on_key(self, event: dict[str, Any]) -> None:
        if event.get("type") == "keydown" and not (event.get("ctrlKey") or event.get("metaKey") or event.get("altKey")):
            self.key(str(event.get("key", "")))

    @property
    def widget(self) -> Any:
        """The panel (built on first use; needs ipywidgets and ipyevents)."""
        if self._w is None:
            import ipywidgets as w
            from ipyevents import Event

            buttons = {
                "A": w.Button(description="A is better (a)", button_style="info"),
                "B": w.Button(description="B is better (b)", button_style="info"),
                "tie": w.Button(description="Tie (t)"),
                "skip": w.Button(description="Skip (s)"),
            }
            for name, b in buttons.items():
                b.on_click(lambda _b, name=name: self.skip() if name == "skip" else self.answer(name))

            def text_box(height: str) -> Any:
                return w.HTML(layout=w.Layout(height=height, overflow="auto", border="1px solid #ccc", padding="2px 6px", flex="1 1 0"))

            self._w = {
                "status": w.HTML(),
                "progress": w.IntProgress(min=0, layout=w.Layout(width="240px")),
                "prompt": w.HTML(layout=w.Layout(max_height=PROMPT_HEIGHT, overflow="auto")),
                "a": text_box(TEXT_HEIGHT),
                "b": text_box(TEXT_HEIGHT),
                "note": w.HTML(),
                **buttons,
            }
            head = w.HBox([self._w["progress"], self._w["status"]], layout=w.Layout(align_items="center"))
            pair = w.HBox([self._w["a"], self._w["b"]], layout=w.Layout(width="100%", grid_gap="8px"))
            row = w.HBox(list(buttons.values()))
            box = w.VBox([head, self._w["prompt"], pair, row, self._w["note"]], layout=w.Layout(max_width="1100px"))
            box.add_class("aplkit-label-panel")
            events = Event(source=box, watched_events=["keydown"], prevent_default_action=True)
            events.on_dom_event(self._on_key)
            self._w["box"], self._w["events"] = box, events
            self._refresh()
        return self._w["box"]

    def _refresh(self) -> None:
        if self._w is None:
            return
        item = self.current
        hint = " · keys a b t s while the pointer is over this panel" if item is not None else ""
        self._w["status"].value = f"<b>{html.escape(self.status())}</b>{hint}"
        self._w["progress"].max = max(1, self.done + self.remaining)
        self._w["progress"].value = self.done
        for name, label in (("prompt", "Prompt"), ("a", "A"), ("b", "B")):
            text = "" if item is None else html.escape(item[name])
            self._w[name].value = "" if item is None else f"<b>{label}:</b> <span style='white-space: pre-wrap'>{text}</span>"
        for name in ("A", "B", "tie", "skip"):
            self._w[name].disabled = item is None
        self._w["note"].value = html.escape(self.note)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def close(self) -> None:
        self.ledger.close()


__all__ = ["AwaitingHumanLabels", "HumanOracle", "LabelPanel", "drop_from_queue", "find_run_dir", "read_queue"]
