"""The error every fastvideo-hf entry point raises for a setting it refuses.

The training scripts and the ``fastvideo-hf`` commands print it as one line that says what to do and exit 2, as
``fastvideo-hf preprocess`` does, so a user sees the fix and not a traceback; any other exception is a bug and keeps
its traceback. One class for both halves, so a check written once (a size, a folder) refuses the same way wherever
it runs. It is a ``ValueError``, so Python callers of the library functions that raise it catch it as before.
"""

from __future__ import annotations


class SettingRefused(ValueError):
    """A flag, or a file, folder, dataset or checkpoint a flag names, that the run cannot go on with; the message
    says what to do."""
