"""Exceptions shared across aplkit that must not pull anything heavy in (no torch, no openai, no yaml)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config problem, reported as a single line that names the field."""


__all__ = ["ConfigError"]
