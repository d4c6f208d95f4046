"""``fastvideo-hf export-vsa``: a VSA full finetune rewritten with FastVideo's gate key names (or back to ours).

FastVideo loads a diffusers-format Wan pipeline folder but maps only diffusers' names onto its DiT, and its gate
lives on the block: it reads ``blocks.{i}.to_gate_compress.*`` and rejects ours (``blocks.{i}.attn1.
to_gate_compress.*``) under its strict load. The export copies every transformer folder of a finetune output
(``transformer/``, and ``transformer_2/`` for Wan2.2 A14B), shard by shard, renaming only the gate keys, with its
``config.json``, index and ``vsa_config.json``; ``--base_model`` adds the rest of the pipeline (text encoder,
VAE, scheduler, ``model_index.json``) so the folder is a complete model FastVideo can open.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..refusal import SettingRefused
from ..vsa.checkpoints import GATE_KEY_FORMATS, gate_key_naming, rename_gate_keys

TRANSFORMER_FOLDERS = ("transformer", "transformer_2")
INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"


def export_vsa_checkpoint(
    input_dir: str | Path, output_dir: str | Path, gate_names: str = "fastvideo", base_model: str | Path | None = None
) -> list[Path]:
    """Write ``input_dir``'s transformer folders to ``output_dir`` with the gates named as ``gate_names``.

    Returns the transformer folders written. Every tensor other than the gates is written unchanged, and the
    folders must hold gates: exporting a dense finetune as a VSA model would hand FastVideo zero gates silently.
    What would be refused (``SettingRefused``) is checked before anything is written, reading only key names.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    if gate_names not in GATE_KEY_FORMATS:
        raise SettingRefused(f"unknown VSA gate naming {gate_names!r}; choose from {sorted(GATE_KEY_FORMATS)}")
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise SettingRefused(f"--input {input_dir}: no such folder (pass the OUT of a VSA train_wan.py run)")
    if output_dir.resolve() == input_dir.resolve():
        raise SettingRefused("export-vsa writes a new folder: --output must differ from --input")
    sources = [input_dir / name for name in TRANSFORMER_FOLDERS if (input_dir / name).is_dir()]
    if not sources:
        raise SettingRefused(
            f"--input {input_dir} has no {' or '.join(TRANSFORMER_FOLDERS)} folder: not a full finetune output "
            "(a LoRA's VSA gates are in its pytorch_lora_weights.safetensors)"
        )
    for source in sources:
        keys = set()
        for path in source.glob("*.safetensors"):
            with safe_open(path, framework="pt") as handle:
                keys.update(handle.keys())
        namings = {gate_key_naming(key) for key in keys} - {None}
        if not namings:
            raise SettingRefused(f"{source} holds no VSA gate weights (to_gate_compress): not a VSA finetune")
        if len(namings) > 1:
            raise SettingRefused(f"{source} holds VSA gate weights under both namings ({', '.join(sorted(namings))})")
    if base_model is not None and not (Path(base_model) / "model_index.json").is_file():
        raise SettingRefused(
            f"--base_model {base_model} is not a local diffusers pipeline folder (no model_index.json)"
        )
    if base_model is not None:
        _copy_pipeline_without_transformers(Path(base_model), output_dir)
    written = []
    for source in sources:
        target = output_dir / source.name
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.glob("*.safetensors")):
            tensors = load_file(path)
            save_file(rename_gate_keys(tensors, gate_names), target / path.name, metadata={"format": "pt"})
        index = source / INDEX_NAME
        if index.is_file():
            content = json.loads(index.read_text())
            content["weight_map"] = rename_gate_keys(content["weight_map"], gate_names)
            (target / INDEX_NAME).write_text(json.dumps(content, indent=2) + "\n")
        for name in ("config.json", "vsa_config.json"):
            if (source / name).is_file():
                shutil.copy2(source / name, target / name)
        written.append(target)
    return written


def _copy_pipeline_without_transformers(base_model: Path, output_dir: Path) -> None:
    """The base pipeline's other components (copied, so the export is a self-contained folder to upload)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for entry in base_model.iterdir():
        if entry.name in TRANSFORMER_FOLDERS or entry.name.startswith("."):
            continue
        if entry.is_dir():
            shutil.copytree(entry, output_dir / entry.name, dirs_exist_ok=True)
        else:
            shutil.copy2(entry, output_dir / entry.name)


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--input", required=True, help="A VSA full finetune output (OUT of train_wan.py).")
    parser.add_argument("--output", required=True, help="Folder to write (its transformer/ and, with a base, more).")
    parser.add_argument(
        "--gate_names",
        default="fastvideo",
        choices=sorted(GATE_KEY_FORMATS),
        help="fastvideo: blocks.{i}.to_gate_compress.* (what FastVideo loads); fastvideo-hf: "
        "blocks.{i}.attn1.to_gate_compress.* (ours).",
    )
    parser.add_argument(
        "--base_model",
        default=None,
        help="Local base pipeline folder whose other components (text encoder, VAE, scheduler, model_index.json) "
        "are copied in, making a complete model folder.",
    )
    return parser


def run_export(args: argparse.Namespace) -> int:
    """The ``export-vsa`` command."""
    for folder in export_vsa_checkpoint(args.input, args.output, args.gate_names, args.base_model):
        print(f"{folder}: VSA gates named as {args.gate_names} ({GATE_KEY_FORMATS[args.gate_names]})")
    return 0
