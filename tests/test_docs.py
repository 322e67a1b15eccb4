"""The documentation: the project speaks of itself, the README stays a short reference, and every relative link resolves."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: how the work was organised is history for the commit log, not for the code or the docs
NARRATION = re.compile(r"\bsession [0-9]+|\bsessions? (of|beside|before|after) |issue [0-9]{1,3}\b|\(issue [0-9]", re.IGNORECASE)
#: committed study outputs are kept as their code wrote them; the next rebuild rewrites them
RECORDS = "bench/results/"
README_MAX_LINES = 300
LINKED_DOCS = ("README.md", "CHANGELOG.md", "bench/README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def tracked(*patterns: str) -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "--", *patterns], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [p for p in out.splitlines() if p]


def narration(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line that narrates how the work was organised."""
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if NARRATION.search(line)]


def anchors(doc: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def broken_links(doc: Path, root: Path = ROOT) -> list[str]:
    """Relative links of a Markdown file that name no file or folder of the checkout, or no heading of a Markdown file."""
    out = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # a URL
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc.resolve()
        if not (resolved.exists() and resolved.is_relative_to(root.resolve())):
            out.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            out.append(target)
    return out


def test_narration_is_found_and_ordinary_words_are_not():
    s, i = "session", "issue"  # spelt apart, so this file does not match itself
    text = "\n".join(
        [
            f"Found in {s} 14, fixed.",  # 1
            f"a study that spans {s}s of work",  # 2
            f"({i} 13) the grid",  # 3
            f"{i.title()} 10's target",  # 4
            f"the ledger's {s} stats; @pytest.fixture(scope='{s}')",  # 5
            f"an {i} with the tokenizer, {i} 1000 ids",  # 6
        ]
    )
    assert [i for i, _ in narration(text)] == [1, 2, 3, 4]


def test_no_tracked_file_narrates_how_the_work_was_organised():
    """Code, docstrings, tests, notebooks, YAML and docs say what the code does or what was measured."""
    found = []
    for name in tracked("*.py", "*.md", "*.ipynb", "*.yaml"):
        path = ROOT / name
        if name.startswith(RECORDS) or not path.is_file():
            continue
        found += [f"{name}:{i}: {line}" for i, line in narration(path.read_text(encoding="utf-8", errors="replace"))]
    assert not found, "narration of how the work was organised:\n" + "\n".join(found)


def test_readme_is_a_short_reference_that_links_the_results():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    assert "(docs/results.md)" in readme


def test_broken_links_are_found(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# Title\n\n## The pilot: a study's preset\n")
    doc = tmp_path / "docs" / "a.md"
    doc.write_text(
        "## X\n[ok](there.md#the-pilot-a-studys-preset) [up](../docs/there.md) ![img](missing.png) [web](https://example.org) "
        "[here](#x) [gone](#y) [bad](there.md#pilot) [out](../../etc)"
    )
    assert broken_links(doc, tmp_path) == ["missing.png", "#y", "there.md#pilot", "../../etc"]


@pytest.mark.parametrize("name", LINKED_DOCS)
def test_every_relative_link_resolves(name):
    assert (ROOT / name).is_file()
    assert broken_links(ROOT / name) == []
