"""Exceptions shared across aplkit that must not pull anything heavy in (no torch, no openai, no yaml)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config problem, reported as a single line that names the field."""


class RunFolderBusy(ConfigError):
    """Another process is running in this run folder (two writers would interleave its steps and label pairs twice)."""


__all__ = ["ConfigError", "RunFolderBusy"]
