"""Reading a judge's answer: the final A or B in free text or JSON, and P(A) from the logprobs of the token that carries it."""

from __future__ import annotations

import json
import math
import re
from typing import Any

_PREFERRED = re.compile(
    r"prefer(?:red|ence)?(?:\s+(?:answer|review|summary|completion|choice|response))?\**\s*[:=\-–]?\s*[\s\"'“”‘’*<(\[]*([AB])(?![\w])(?!\W{0,3}\s+or\s)",
    re.IGNORECASE,
)
_LINE = re.compile(r"^[\s\"'“”*#>(\[`]*([AB])[\s\"'“”*.)\]`]*$", re.MULTILINE)
_MARKED = re.compile(r"\*\*([AB])\*\*|[\"“]([AB])[\"”]")
_ECHO = re.compile(r"<?\s*[\"'“”]?\s*A\s*[\"'“”]?\s+or\s+[\"'“”]?\s*B\s*[\"'“”]?\s*>?", re.IGNORECASE)


def parse_choice(text: str) -> tuple[str | None, int]:
    """The final A/B in a judgement and its character offset (-1 if none).

    Tries, in order: a JSON object's "preferred", the last "Preferred: X", the last line
    that is only A or B, the last **A** / "A". An echoed format line (``<"A" or "B">``)
    is not an answer.
    """
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            obj = json.loads(text[start : end + 1])
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("preferred"), str):
            val = obj["preferred"].strip().strip("\"'*").strip().upper()
            if val in ("A", "B"):
                m = re.search(r"\"preferred\"\s*:\s*\"\s*\**([AaBb])", text)
                return val, (m.start(1) if m else -1)
    text = _ECHO.sub(lambda m: " " * len(m.group()), text)  # blank the echoed format, keep offsets
    for rx in (_PREFERRED, _LINE):
        hits = list(rx.finditer(text))
        if hits:
            m = hits[-1]
            return m.group(1).upper(), m.start(1)
    hits = list(_MARKED.finditer(text))
    if hits:
        m = hits[-1]
        g = 1 if m.group(1) else 2
        return m.group(g), m.start(g)
    return None, -1


def _norm_token(tok: str) -> str:
    return tok.strip().strip("\"'“”*`:.()[]<>").strip()


def choice_probability(logprobs: Any, text: str, pos: int, choice: str) -> float | None:
    """P(A) renormalised over A and B from the top logprobs of the token that carries the choice."""
    content = getattr(logprobs, "content", None) or []
    target = None
    if pos >= 0:
        offset = 0
        for tok in content:
            if offset <= pos < offset + len(tok.token):
                target = tok
                break
            offset += len(tok.token)
        if target is not None and _norm_token(target.token) != choice:
            target = None  # token text does not line up with the content (byte-level tokens): search instead
    if target is None:
        target = next((t for t in reversed(content) if _norm_token(t.token) == choice), None)
    if target is None:
        return None
    mass = {"A": 0.0, "B": 0.0}
    seen = set()
    for t in list(target.top_logprobs or []) + [target]:
        key = _norm_token(t.token)
        if key in mass and t.token not in seen and t.logprob is not None:
            seen.add(t.token)
            mass[key] += math.exp(t.logprob)
    total = mass["A"] + mass["B"]
    return None if total <= 0 else mass["A"] / total


__all__ = ["choice_probability", "parse_choice"]
