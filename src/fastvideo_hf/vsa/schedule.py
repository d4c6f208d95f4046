"""The sparsity ramp of VSA finetuning (FastVideo's ``VSA_decay_rate`` / ``VSA_decay_interval_steps``).

Training starts dense and raises sparsity by ``rate`` every ``interval`` steps up to ``target``:
``min(step // interval, target // rate) * rate``, evaluated exactly as FastVideo's training pipeline does, in
plain Python floats, so a run here ramps through the very values a FastVideo run does. Float rounding shows:
``0.9 // 0.03 == 30.0`` and the ramp ends at ``30 * 0.03 == 0.8999999999999999``, but ``0.3 // 0.1 == 2.0``
(``0.3 / 0.1`` is 2.9999999999999996), so a 0.3 target at rate 0.1 stops at 0.2, in FastVideo and here alike.
"""

from __future__ import annotations


def vsa_sparsity_at_step(step: int, target: float, rate: float | None, interval: int | None) -> float:
    """Sparsity to train with at optimizer ``step``; a missing or zero ``rate``/``interval`` means ``target`` now."""
    if not rate or not interval:
        return target
    return min(step // interval, target // rate) * rate
