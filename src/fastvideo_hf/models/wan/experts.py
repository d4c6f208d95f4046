"""Wan2.2 A14B's two experts trained in one run (``--expert both``).

The pipeline sends timesteps >= ``boundary_ratio * 1000`` to ``transformer`` (high noise) and the rest to
``transformer_2`` (low noise). ``WanExperts`` holds both as one module and routes each sample of a batch the
same way, so one optimizer and one Accelerate-prepared model train both, each on its own timesteps.
"""

from __future__ import annotations

import torch
from torch import nn

from ..family import EXPERT_SLOTS


class WanExperts(nn.Module):
    def __init__(self, transformer: nn.Module, transformer_2: nn.Module, boundary_ratio: float):
        super().__init__()
        self.transformer = transformer
        self.transformer_2 = transformer_2
        self.boundary_timestep = boundary_ratio * 1000

    @property
    def config(self):
        return self.transformer.config

    @property
    def experts_by_slot(self) -> dict[str, nn.Module]:
        """Each expert by the pipeline slot it fills (what ``family.expert_modules`` reads)."""
        return {slot: getattr(self, slot) for slot in EXPERT_SLOTS}

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        return_dict: bool = False,
    ) -> tuple[torch.Tensor]:
        """Each sample through the expert of its timestep (``timestep`` ``[B]``), in the original order."""
        high = timestep >= self.boundary_timestep
        outputs, rows = [], []
        for expert, selected in ((self.transformer, high), (self.transformer_2, ~high)):
            index = selected.nonzero().squeeze(1)
            if index.numel() == 0:
                continue
            image = None if encoder_hidden_states_image is None else encoder_hidden_states_image[index]
            outputs.append(
                expert(
                    hidden_states=hidden_states[index],
                    timestep=timestep[index],
                    encoder_hidden_states=encoder_hidden_states[index],
                    encoder_hidden_states_image=image,
                    return_dict=False,
                )[0]
            )
            rows.append(index)
        order = torch.argsort(torch.cat(rows))
        return (torch.cat(outputs)[order],)
