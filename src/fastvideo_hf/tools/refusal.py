"""The error a ``fastvideo-hf`` command raises for a setting it refuses.

``fastvideo-hf`` prints it as one line that says what to do and exits 2, as ``preprocess`` does; any other exception
is a bug and keeps its traceback. It is a ``ValueError``, so Python callers of the functions behind the commands
(``export_vsa_checkpoint``, ``summarize_dataset``, ``plot_loss_curves``) catch it as before.
"""

from __future__ import annotations


class CommandRefused(ValueError):
    """A flag, or a file or folder a flag names, that the command cannot run with; the message says what to do."""
