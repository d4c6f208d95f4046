"""The model a run trains: its facts, its transformer(s) through the family, and the LoRA added to them.

Training loads no text encoder and no VAE (the dataset holds their outputs), so the model is its ``ModelSpec`` (read
from the configs, no weight) and the transformer of one pipeline slot, or both experts of a two-expert model as the
one module its family combines them into. Whatever differs between families is asked of ``spec.family``.
"""

from __future__ import annotations

import argparse
import logging

import torch
from peft import LoraConfig

from ..models import ModelSpec, expert_modules, load_model_spec
from ..models.family import EXPERT_SLOTS, transformer_blocks
from ..refusal import SettingRefused
from .lora_formats import VSA_GATE_MODULE

logger = logging.getLogger(__name__)

# --expert -> the pipeline slot of the transformer it trains
EXPERT_SLOT_OF = {"high": EXPERT_SLOTS[0], "low": EXPERT_SLOTS[1]}


def read_model_spec(args: argparse.Namespace) -> ModelSpec:
    """The ``ModelSpec`` of ``--pretrained_model_name_or_path``; a folder or Hub id that is no pipeline of a family
    we train is refused in one line, before anything else loads."""
    try:
        return load_model_spec(args.pretrained_model_name_or_path, args.revision)
    except ValueError as error:  # load_model_spec's one line: what to pass instead
        raise SettingRefused(str(error)) from error


def load_transformer_to_train(
    args: argparse.Namespace, spec: ModelSpec, dtype: torch.dtype = torch.float32
) -> tuple[torch.nn.Module, str]:
    """(the model to train, its pipeline slot). A two-expert model needs ``--expert high|low|both``; ``both`` gives
    the family's module holding ``transformer`` and ``transformer_2``, routing each sample by its timestep.

    Loaded in ``dtype`` by the family's ``from_pretrained``, which keeps the modules diffusers runs in float32 (RoPE,
    time embedding, modulation table, norms: ``_keep_in_fp32_modules``) in float32, as the family's pipeline does at
    inference; a later ``.to(dtype)`` would cast them too and train a LoRA in other numerics than it runs in."""
    expert = getattr(args, "expert", None)
    if spec.has_experts and expert is None:
        raise SettingRefused(
            f"this model has two experts split at timestep {spec.boundary_ratio * 1000:g}: pass --expert high "
            "(transformer, high noise), --expert low (transformer_2, low noise) or --expert both"
        )
    if expert is not None and not spec.has_experts:
        raise SettingRefused(
            f"--expert {expert} is only for two-expert models (Wan2.2 A14B); this model has one transformer: drop it"
        )
    family, model, revision = spec.family, args.pretrained_model_name_or_path, args.revision
    if expert == "both":
        high, low = (family.load_transformer(model, slot, revision, dtype) for slot in EXPERT_SLOTS)
        return family.combine_experts(high, low, spec.boundary_ratio), EXPERT_SLOTS[0]
    slot = EXPERT_SLOT_OF[expert] if expert else EXPERT_SLOTS[0]
    return family.load_transformer(model, slot, revision, dtype), slot


def add_lora_adapters(transformer: torch.nn.Module, args: argparse.Namespace, vsa_gates: bool) -> list[str]:
    """Add the LoRA of ``--rank`` / ``--lora_alpha`` / ``--lora_target_modules`` to every trained transformer
    (each expert its own), with gradient checkpointing when asked; returns the adapted module names.

    With ``vsa_gates`` the VSA gate of every self-attention trains as a LoRA on its zero base, saved with it."""
    requested = [name.strip() for name in args.lora_target_modules.split(",") if name.strip()]
    # names that match no layer are named in a warning (peft drops them silently); none matching is refused
    target_modules = resolve_lora_targets(next(iter(expert_modules(transformer).values())), requested)
    if vsa_gates:
        target_modules.append(VSA_GATE_MODULE)
    for expert in expert_modules(transformer).values():
        expert.add_adapter(
            LoraConfig(r=args.rank, lora_alpha=args.lora_alpha, init_lora_weights=True, target_modules=target_modules)
        )
        if args.gradient_checkpointing:
            expert.enable_gradient_checkpointing()
    return target_modules


def resolve_lora_targets(model: torch.nn.Module, names: list[str]) -> list[str]:
    """The ``--lora_target_modules`` names that match a Linear layer of ``model`` (as peft matches them: the
    whole module name or its last dotted parts). Names that match nothing are named in a warning, since peft
    drops them silently; if none match, the run is refused."""
    linear_names = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]

    def matches(target: str) -> bool:
        return any(name == target or name.endswith(f".{target}") for name in linear_names)

    matched = [target for target in names if matches(target)]
    unmatched = [target for target in names if target not in matched]
    if not matched:
        # the layers of the first block, by their names inside it (every Linear for a model that lists no blocks)
        first_block = next((f"{name}." for name in transformer_blocks(model)), "")
        examples = sorted({name.removeprefix(first_block) for name in linear_names if name.startswith(first_block)})
        raise SettingRefused(
            f"--lora_target_modules {','.join(names)}: no Linear layer of this model has these names; "
            f"the layers of a block are: {', '.join(examples)}"
        )
    if unmatched:
        logger.warning("--lora_target_modules: %s match no layer of this model and are ignored", ", ".join(unmatched))
    return matched
