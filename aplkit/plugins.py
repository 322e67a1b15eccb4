"""A researcher's own modules (scorers, objectives, oracles), imported before any config is checked.

A module registers its classes when it is imported (``@register_scorer``), and config validation
reads the registries, so the import must come first. Every entry point does it through
``import_modules``: ``aplkit run --import``, a sweep file's ``imports:`` (also handed to each run's
notebook kernel), ``run_arena(imports=...)`` and the arena notebook's ``imports``, and
``python -m bench labels --import``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from aplkit.errors import ConfigError

#: module names this function gave to files, so importing the same name again from another file replaces it
_FROM_FILES: dict[str, str] = {}


def is_path(spec: str) -> bool:
    """A ``.py`` file or anything with a path separator is a file; anything else a dotted module name."""
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def resolve(spec: str) -> str:
    """The spec as another process should see it: a file's absolute path, a module name unchanged."""
    return str(Path(spec).resolve()) if is_path(spec) else spec


def import_modules(specs: Sequence[str], field: str = "--import") -> list[ModuleType]:
    """Import each spec (a dotted module name importable from the working folder, or a path to a .py file), in order.

    Raises ``ConfigError`` in one line naming ``field`` for a spec that cannot be imported, with the
    error the import raised (a typo in the module, a missing dependency), before any model loads.
    """
    if isinstance(specs, str):
        specs = [specs]
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:  # as `python -m` does: the console script `aplkit` does not
        sys.path.insert(0, cwd)
    out = []
    for spec in specs:
        try:
            out.append(_import_file(Path(spec)) if is_path(spec) else importlib.import_module(spec))
        except ConfigError as e:
            raise ConfigError(f"{field} {spec}: {e}") from None
        except Exception as e:  # noqa: BLE001 - whatever the module raised, said in one line
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ConfigError(f"{field} {spec}: {type(e).__name__}{': ' + first if first else ''}") from None
    return out


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ConfigError("file not found" + ("" if path.is_absolute() else f" (relative to {Path.cwd()})"))
    path = path.resolve()
    name = path.stem
    if not name.isidentifier():
        raise ConfigError(f"{path.name}: the file name must be a Python identifier (it becomes the module's name)")
    have = sys.modules.get(name)
    if have is not None:
        if getattr(have, "__file__", None) and Path(have.__file__).resolve() == path:
            return have
        if _FROM_FILES.get(name) is None:
            raise ConfigError(
                f"module name '{name}' is already taken by {getattr(have, '__file__', None) or 'a built-in module'}; rename the file"
            )
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _FROM_FILES[name] = str(path)
    return module


__all__ = ["import_modules", "is_path", "resolve"]
