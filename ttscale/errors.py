"""Errors a user can fix (a bad file, a bad option value, a missing model folder).

`ttscale <stage>` prints a UserError as one line and exits 2; anything else keeps its traceback, because
it may be a bug. UserError subclasses ValueError so code that caught ValueError still catches it.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input or option; the message says what to change."""
