"""The package's import graph follows docs/layers.md: no cycle, no import from a higher floor."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "aplkit"


def floors() -> dict[str, int]:
    """Module prefix → floor, from the table in docs/layers.md."""
    out = {}
    for line in (ROOT / "docs" / "layers.md").read_text().splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|[^|]*\|([^|]*)\|", line)
        if m:
            for name in re.findall(r"`([a-z_0-9.]+)`", m.group(2)):
                out[f"aplkit.{name}"] = int(m.group(1))
    return out


def modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every aplkit module ``name`` imports (at any depth, not under ``if TYPE_CHECKING``), and its parent package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(target: str) -> None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                resolve(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for a in node.names:
                resolve(f"{base}.{a.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    parent = name.rpartition(".")[0]
    if parent and parent != "aplkit":
        found.add(parent)  # importing a.b.c runs a.b's __init__ first
    if path.name == "__init__.py":  # a package's __init__ may import its own modules
        found = {m for m in found if not m.startswith(name + ".")}
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: imports(n, p, set(mods)) for n, p in mods.items()}


def floor_of(module: str, table: dict[str, int]) -> int | None:
    while module:
        if module in table:
            return table[module]
        module = module.rpartition(".")[0]
    return None


def test_every_module_has_a_floor():
    table = floors()
    assert len(set(table.values())) >= 8
    missing = sorted(m for m in modules() if m != "aplkit" and floor_of(m, table) is None)
    assert not missing, f"modules on no floor of docs/layers.md: {missing}"


def test_no_import_points_up_a_floor():
    table = floors()
    up = sorted(
        f"{src} (floor {floor_of(src, table)}) imports {dst} (floor {floor_of(dst, table)})"
        for src, dsts in graph().items()
        for dst in dsts
        if src != "aplkit" and dst != "aplkit" and floor_of(dst, table) > floor_of(src, table)
    )
    assert not up, "\n".join(up)


def test_the_import_graph_has_no_cycle():
    g = graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def walk(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(g.get(v, ())):
            if state.get(w) == 1:
                return path[path.index(w) :] + [w]
            if w not in state and (cycle := walk(w)):
                return cycle
        state[v] = 2
        path.pop()
        return None

    for v in sorted(g):
        if v not in state and (cycle := walk(v)):
            raise AssertionError(" → ".join(cycle))


def test_the_checker_finds_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
    """The test above can fail: a tiny package with an upward import and a cycle is caught."""
    pkg = tmp_path / "aplkit"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text("def f():\n    from aplkit.loop import run\n")
    (pkg / "loop.py").write_text("from aplkit.config import f\n")
    (pkg / "sub" / "__init__.py").write_text("from aplkit.sub.a import x\n")
    (pkg / "sub" / "a.py").write_text("x = 1\n")
    import sys

    here = sys.modules[__name__]
    monkeypatch.setattr(here, "PACKAGE", pkg)
    monkeypatch.setattr(here, "ROOT", tmp_path)
    g = graph()
    assert g["aplkit.config"] == {"aplkit.loop"} and g["aplkit.loop"] == {"aplkit.config"}
    assert g["aplkit.sub"] == set() and g["aplkit.sub.a"] == {"aplkit.sub"}  # own module exempt; parent implied
