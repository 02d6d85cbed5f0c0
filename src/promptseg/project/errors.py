"""Exceptions raised by the project store."""

from __future__ import annotations


class ProjectError(Exception):
    """A user-facing problem with a promptseg project (missing, corrupt, invalid input)."""
