"""The model families fastvideo-hf trains, and the one place that says which exist.

Everything outside ``models/`` is family-agnostic: it reads a model folder's ``ModelSpec`` (``load_model_spec``)
and asks ``spec.family`` whatever differs between families. Adding a family is one module implementing
``family.ModelFamily``, its entry in ``FAMILIES``, its tiny-model builder and its tests.
"""

from __future__ import annotations

import os

import torch

from .family import ModelFamily, ModelSpec, expert_modules, has_component, model_index
from .wan.family import WAN

FAMILIES: tuple[ModelFamily, ...] = (WAN,)

__all__ = [
    "FAMILIES",
    "ModelFamily",
    "ModelSpec",
    "expert_modules",
    "has_component",
    "family_of_index",
    "family_of_transformer",
    "family_of_transformer_class",
    "family_titles",
    "load_model_spec",
    "model_index",
]


def family_titles() -> str:
    """The families by name, for messages: ``Wan`` (``Wan or LTX-2`` once there are two)."""
    return " or ".join(family.title for family in FAMILIES)


def family_of_index(index: dict, model: str) -> ModelFamily:
    """The family of a pipeline whose ``model_index.json`` is ``index``, or one line naming those it knows."""
    for family in FAMILIES:
        if family.recognises(index):
            return family
    known = ", ".join(name for family in FAMILIES for name in family.pipeline_classes)
    raise ValueError(
        f"{model} is a {index.get('_class_name') or 'pipeline of no known class'}: fastvideo-hf trains "
        f"{family_titles()} models (pipelines {known})"
    )


def family_of_transformer(transformer: torch.nn.Module) -> ModelFamily:
    """The family of a loaded transformer, by its class."""
    return family_of_transformer_class(type(transformer).__name__)


def family_of_transformer_class(name: str) -> ModelFamily:
    """The family of a transformer class name (a transformer ``config.json``'s ``_class_name``)."""
    for family in FAMILIES:
        if name in family.transformer_classes:
            return family
    raise ValueError(f"{name} is not the transformer of a family fastvideo-hf knows ({family_titles()})")


def load_model_spec(model: str, revision: str | None = None) -> ModelSpec:
    """The ``ModelSpec`` of a diffusers pipeline folder or Hub id, from its configs (no weight loaded), or one
    ``ValueError`` line saying what to pass instead (missing folder, not a pipeline of a family we train, unknown or
    unreachable Hub id), so a wrong path fails in a second, not at the first clip."""
    try:
        index = model_index(model, revision)
    except (OSError, ValueError) as error:  # diffusers raises OSError; a malformed Hub id ValueError
        raise ValueError(_unloadable_model_message(model, error)) from error
    family = family_of_index(index, model)
    try:
        return family.read_spec(model, revision, index)
    except (OSError, ValueError) as error:  # a component's config missing or unreadable
        raise ValueError(_unloadable_model_message(model, error)) from error


def _unloadable_model_message(model: str, error: Exception) -> str:
    reason = (str(error).splitlines() or [type(error).__name__])[0]
    kind = f"diffusers-format {family_titles()} pipeline"
    if os.path.isdir(model):
        return (
            f"{model} is not a {kind} ({reason}): pass the folder written by save_pretrained (model_index.json, "
            "vae/, text_encoder/, tokenizer/) or a Hub id"
        )
    if os.path.isabs(model) or model.startswith((".", "~")) or model.count("/") != 1:
        examples = ", ".join(next(iter(family.known_models.values())).hub_id for family in FAMILIES)
        return (
            f"--pretrained_model_name_or_path {model}: no such folder; pass a {kind} folder or a Hub id such as "
            f"{examples}"
        )
    return (
        f"cannot load the model {model!r} from the Hub ({reason}): check the id and --revision, "
        "and run `hf auth login` for a gated or private model"
    )
