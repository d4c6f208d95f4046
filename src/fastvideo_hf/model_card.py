"""The README.md model card written next to trained weights: base model, dataset, recipe, a validation video."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

USAGE_LORA = """```python
import torch
from diffusers import WanPipeline
from diffusers.utils import export_to_video

pipe = WanPipeline.from_pretrained("{base_model}", torch_dtype=torch.bfloat16).to("cuda")
pipe.load_lora_weights("{repo_id}")
video = pipe("{prompt}", num_frames=81).frames[0]
export_to_video(video, "video.mp4", fps=16)
```

For ComfyUI, load `pytorch_lora_weights_comfy.safetensors` with a LoRA loader node (original Wan key names).
For image-to-video use `WanImageToVideoPipeline` and pass `image=`. For a Wan2.2 low-noise expert, add
`load_into_transformer_2=True` (with `--expert both`, its file is `pytorch_lora_weights_transformer_2.safetensors`:
pass it as `weight_name`)."""

USAGE_FULL = """```python
import torch
from diffusers import WanPipeline, WanTransformer3DModel
from diffusers.utils import export_to_video

transformer = WanTransformer3DModel.from_pretrained("{repo_id}", subfolder="transformer", torch_dtype=torch.bfloat16)
pipe = WanPipeline.from_pretrained("{base_model}", transformer=transformer, torch_dtype=torch.bfloat16).to("cuda")
video = pipe("{prompt}", num_frames=81).frames[0]
export_to_video(video, "video.mp4", fps=16)
```"""

TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ kind }} of [{{ base_model }}](https://huggingface.co/{{ base_model }}) trained with
[fastvideo-hf](https://github.com/fastvideo-hf/fastvideo-hf) on the latent dataset `{{ dataset }}`.

{% if video %}Validation video at step {{ video_step }} (prompt: "{{ prompt }}"): [{{ video }}]({{ video }})
{% endif %}
## Use it

{{ usage }}

## Training recipe

| setting | value |
|---|---|
{% for key, value in recipe.items() %}| `{{ key }}` | `{{ value }}` |
{% endfor %}"""


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
) -> Path:
    """Write ``output_dir/README.md`` for a LoRA or a full finetune and return its path."""
    prompt = validation_prompt or "a video"
    card_data = ModelCardData(
        base_model=base_model,
        library_name="diffusers",
        license="apache-2.0",
        datasets=[dataset] if "/" in dataset and not Path(dataset).exists() else None,
        tags=["text-to-video", "diffusers-training", "fastvideo-hf", "wan", "lora" if lora else "full-finetune"],
    )
    usage = (USAGE_LORA if lora else USAGE_FULL).format(base_model=base_model, repo_id=repo_id, prompt=prompt)
    card = ModelCard.from_template(
        card_data,
        template_str=TEMPLATE,
        title=f"{repo_id.split('/')[-1]}",
        kind="A LoRA" if lora else "A full finetune",
        base_model=base_model,
        dataset=dataset,
        video=validation_video,
        video_step=validation_step,
        prompt=prompt,
        usage=usage,
        recipe=recipe,
    )
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path
