"""The sparsity ramp of VSA finetuning (FastVideo's ``VSA_decay_rate`` / ``VSA_decay_interval_steps``).

Training starts dense and raises sparsity by ``rate`` every ``interval`` steps up to ``target``:
``min(step // interval, target // rate) * rate``. The division is done so that float error cannot stop the ramp
one notch early (in floats ``0.9 // 0.03 == 29.0``, which would cap the ramp at 0.87).
"""

from __future__ import annotations

import math

_EPSILON = 1e-9


def vsa_sparsity_at_step(step: int, target: float, rate: float | None, interval: int | None) -> float:
    """Sparsity to train with at optimizer ``step``; a missing or zero ``rate``/``interval`` means ``target`` now."""
    if not rate or not interval:
        return target
    notches = min(step // interval, math.floor(target / rate + _EPSILON))
    return round(notches * rate, 12)
