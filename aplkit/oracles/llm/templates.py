"""Judge prompt templates: the paper's Appendix A prompts as editable files with ``[system]`` and ``[user]`` sections.

The shipped files live in ``aplkit/oracles/templates/*.txt`` (package data); a template is
hashed into the judge's identity, so editing one never reuses answers to the old prompt.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from aplkit.oracles.base import OracleError
from aplkit.records import Comparison

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
TASK_TEMPLATES = {"imdb": "sentiment", "tldr": "summary"}
TEMPLATE_FIELD = "oracle.llm.template"  # the setting that names a template, for error messages


@dataclass(frozen=True)
class Template:
    """A judge prompt: system and user parts with {prompt}, {a}, {b} placeholders."""

    name: str
    system: str
    user: str
    text: str  # the whole file, hashed into the judge's identity

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]

    def messages(self, c: Comparison) -> list[dict[str, str]]:
        def fill(s: str) -> str:
            # one pass, so a completion that contains "{b}" is not substituted again
            return re.sub(r"\{(prompt|a|b)\}", lambda m: {"prompt": c.prompt, "a": c.a, "b": c.b}[m.group(1)], s)

        out = [{"role": "system", "content": fill(self.system)}] if self.system else []
        return out + [{"role": "user", "content": fill(self.user)}]


def parse_template(text: str, name: str = "<template>") -> Template:
    """Split a template file into its ``[system]`` and ``[user]`` sections (text before the first is a comment)."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        head = line.strip().lower()
        if head in ("[system]", "[user]"):
            current = head[1:-1]
            if current in sections:
                raise OracleError(f"template {name}: section [{current}] appears twice")
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    if "user" not in sections:
        raise OracleError(f"template {name}: no [user] section (see aplkit/oracles/templates/sentiment.txt for the format)")
    user = "\n".join(sections["user"]).strip()
    for ph in ("{a}", "{b}"):
        if ph not in user:
            raise OracleError(f"template {name}: the [user] section has no {ph} placeholder")
    return Template(name=name, system="\n".join(sections.get("system", [])).strip(), user=user, text=text)


def load_template(template: str, task: str | None = None) -> Template:
    """``auto`` (by task), a shipped name (``sentiment``, ``summary``) or a path to a template file."""
    if template == "auto":
        if task not in TASK_TEMPLATES:
            raise OracleError(
                f"{TEMPLATE_FIELD}: no default template for task '{task}'; set {TEMPLATE_FIELD} to sentiment, summary or a file"
            )
        template = TASK_TEMPLATES[task]
    shipped = TEMPLATE_DIR / f"{template}.txt"
    path = shipped if shipped.is_file() and "/" not in template else Path(template).expanduser()
    if not path.is_file():
        raise OracleError(
            f"{TEMPLATE_FIELD}: '{template}' is neither a shipped template ({', '.join(sorted(TASK_TEMPLATES.values()))}) nor a file"
        )
    return parse_template(path.read_text(encoding="utf-8"), name=template)


__all__ = ["TASK_TEMPLATES", "TEMPLATE_DIR", "Template", "load_template", "parse_template"]
