"""The one exception the analysis raises for bad input (no runs, missing metrics, an empty front)."""

from __future__ import annotations

__all__ = ["AnalysisError"]


class AnalysisError(Exception):
    """Bad input to the analysis. The message says what was wrong and what to do next; the report CLI prints it as
    one line on stderr and exits with code 2 (no traceback)."""
