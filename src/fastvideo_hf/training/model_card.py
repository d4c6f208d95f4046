"""The README.md model card written next to trained weights: base model, dataset, recipe, a validation video.

The card is published, so it names models and datasets by Hub id only: a local folder's path says nothing to
a reader (and may say too much about the machine), and the Hub reads ``base_model`` to link the two models.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import ModelCard, ModelCardData

if TYPE_CHECKING:
    from ..models import ModelFamily

logger = logging.getLogger(__name__)

LOCAL_BASE_MODEL = "BASE_MODEL"  # in the usage snippet when the base model was a local folder of no known repo

TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ kind }} of {{ model_link }} trained with [fastvideo-hf](https://github.com/fastvideo-hf/fastvideo-hf)
on the latent dataset {{ dataset_link }}.

{% if video %}Validation video at step {{ video_step }} (prompt: "{{ prompt }}"): [{{ video }}]({{ video }})
{% endif %}
## Use it

{{ usage }}

## Training recipe

| setting | value |
|---|---|
{% for key, value in recipe.items() %}| `{{ key }}` | `{{ value }}` |
{% endfor %}"""


def hub_model_id(name_or_path: str) -> str | None:
    """The Hub id of a model given as a Hub id or a local folder; None for a folder of no known repo.

    A folder in the HF cache (``.../models--org--name/snapshots/<commit>``, what ``from_pretrained`` and
    ``hf download`` make) is that repo; any other folder cannot be traced back to one.
    """
    path = Path(name_or_path)
    if not path.exists():
        return name_or_path  # training loaded it from the Hub by this id
    parts = path.resolve().parts
    for index, part in enumerate(parts[:-2]):
        if part.startswith("models--") and parts[index + 1] == "snapshots":
            return part.removeprefix("models--").replace("--", "/")
    return None


def hub_dataset_id(name_or_path: str) -> str | None:
    """``name_or_path`` when it is a Hub dataset id, None for a local folder."""
    return None if Path(name_or_path).exists() else name_or_path


def write_model_card(
    output_dir: str | Path,
    repo_id: str,
    base_model: str,
    dataset: str,
    lora: bool,
    recipe: dict[str, Any],
    validation_video: str | None = None,
    validation_prompt: str | None = None,
    validation_step: int | None = None,
    *,
    family: ModelFamily,
) -> Path:
    """Write ``output_dir/README.md`` for a LoRA or a full finetune of a ``family`` model and return its path.

    ``base_model`` and ``dataset`` are what training loaded (a Hub id or a local folder); only Hub ids are
    written, a local folder is named by its folder name. The usage lines are the family's.
    """
    prompt = validation_prompt or "a video"
    base_model_id, dataset_id = hub_model_id(base_model), hub_dataset_id(dataset)
    if base_model_id is None:
        logger.warning(
            "the base model %s is a local folder of no known Hub repo: the model card names no base_model "
            "(train from its Hub id, or from its HF cache snapshot, to link it)",
            Path(base_model).name,
        )
    card_data = ModelCardData(
        base_model=base_model_id,
        library_name="diffusers",
        license="apache-2.0",
        datasets=[dataset_id] if dataset_id else None,
        tags=["text-to-video", "diffusers-training", "fastvideo-hf", family.name, "lora" if lora else "full-finetune"],
    )
    usage = family.usage_snippet(base_model_id or LOCAL_BASE_MODEL, repo_id, lora, prompt)
    card = ModelCard.from_template(
        card_data,
        template_str=TEMPLATE,
        title=f"{repo_id.split('/')[-1]}",
        kind="A LoRA" if lora else "A full finetune",
        model_link=(
            f"[{base_model_id}](https://huggingface.co/{base_model_id})"
            if base_model_id
            else (
                f"a local {family.title} model (`{Path(base_model).resolve().name}`, not on the Hub: "
                f"`{LOCAL_BASE_MODEL}` below)"
            )
        ),
        dataset_link=(
            f"[{dataset_id}](https://huggingface.co/datasets/{dataset_id})"
            if dataset_id
            else f"`{Path(dataset).resolve().name}` (a local folder)"
        ),
        video=validation_video,
        video_step=validation_step,
        prompt=prompt,
        usage=usage,
        recipe=recipe,
    )
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path
