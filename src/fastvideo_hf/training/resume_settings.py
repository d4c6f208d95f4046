"""The settings a checkpoint must be resumed with, recorded in ``checkpoint-N/run_settings.json``.

Exact resume holds only if the data order and the meaning of a step are unchanged: the same rows, the same
global batch and accumulation, the same seed (which draws noise, sigmas and caption dropout), the same model
and adapter shape, and the storage dtype of the frozen weights (``--layerwise_casting``). A resume that changes
one of those is refused with every difference listed, before any weight is loaded (a changed ``--rank`` would
otherwise die in a size-mismatch traceback).

Everything else may change on resume. Where the checkpoint holds a value, the checkpoint wins: the optimizer
restores its learning rate, betas, epsilon and weight decay, and the LR scheduler its base learning rate. The
new flags win for the remaining schedule shape (``--lr_scheduler``, ``--lr_warmup_steps``, ``--max_train_steps``),
for ``--max_grad_norm``, ``--mixed_precision``, ``--group_offload`` (the same numbers, computed elsewhere),
checkpointing, validation, logging and the Hub. The number of processes may change when the global batch
(``--train_batch_size`` x processes) stays the same, except under FSDP / DeepSpeed, whose states are sharded per
process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from ..refusal import SettingRefused

logger = logging.getLogger(__name__)

RUN_SETTINGS_FILE = "run_settings.json"

# (flag, why it may not change); each is compared when both the checkpoint and the run have it
FIXED_FLAGS = {
    "pretrained_model_name_or_path": "the model",
    "revision": "the model revision",
    "expert": "the trained expert",
    "seed": "noise, sigmas and caption dropout of every step",
    "gradient_accumulation_steps": "what one step is",
    "weighting_scheme": "the sigmas of every step",
    "logit_mean": "the sigmas of every step",
    "logit_std": "the sigmas of every step",
    "mode_scale": "the sigmas of every step",
    "flow_shift": "the sigmas of every step",
    "caption_dropout": "which captions are dropped",
    "rank": "the LoRA's shape",
    "lora_alpha": "the LoRA's scale",
    "attention_backend": "the attention and its gates",
    # fp8 storage rounds the frozen weights every step computes with; --group_offload is not here: it moves weights
    # without changing a number (tested), so a run may resume with it turned on or off
    "layerwise_casting": "the precision of the frozen weights",
}
VSA_FLAGS = ("vsa_sparsity", "vsa_decay_rate", "vsa_decay_interval_steps")
# flags whose checkpointed value wins over a new one (the optimizer and scheduler states restore them)
CHECKPOINT_WINS = ("learning_rate", "adam_beta1", "adam_beta2", "adam_epsilon", "adam_weight_decay")


class ResumeSettingsError(SettingRefused):
    pass


def dataset_fingerprint(hf_dataset, card: dict[str, Any] | None) -> str:
    """A digest of the rows training iterates: their ids (or count), latent shapes and captions, in order, and
    the card's record of what made them (model, size, fps, dtypes, counts).

    The data order is drawn from the row count and the shape buckets; ids and captions catch a dataset of the
    same size that holds other clips or other captions, and the card one re-encoded with other settings. The
    tensors themselves are not read: that would mean reading the whole dataset at every start.
    """
    digest = hashlib.sha256(json.dumps(card, sort_keys=True, default=str).encode())
    ids = hf_dataset["id"] if "id" in hf_dataset.column_names else range(len(hf_dataset))
    captions = hf_dataset["caption"] if "caption" in hf_dataset.column_names else [""] * len(hf_dataset)
    for row_id, shape, caption in zip(ids, hf_dataset["vae_latent_shape"], captions, strict=True):
        digest.update(f"{row_id}\0{list(shape)}\0{caption}\n".encode())
    return digest.hexdigest()[:16]


def run_settings(
    args: argparse.Namespace,
    mode: str,
    num_processes: int,
    dataset_fingerprint: str,
    num_rows: int,
    lora_targets: list[str] | None = None,
    data_parallel_size: int | None = None,
) -> dict[str, Any]:
    """What this run's checkpoints record. Only named settings: never the token or anything else secret.

    ``data_parallel_size`` is the number of distinct per-process batches (fewer than the processes under context
    parallelism, whose groups share one); the global batch counts distinct rows, so a resume may change the
    context-parallel layout when the data-parallel size stays."""
    settings = {flag: getattr(args, flag, None) for flag in (*FIXED_FLAGS, *CHECKPOINT_WINS)}
    if getattr(args, "attention_backend", None) == "vsa":
        settings.update({flag: getattr(args, flag) for flag in VSA_FLAGS})
    return {
        **settings,
        "mode": mode,
        "lora_target_modules": sorted(lora_targets) if lora_targets is not None else None,
        "train_batch_size": args.train_batch_size,
        "num_processes": num_processes,
        "global_batch_size": args.train_batch_size * (data_parallel_size or num_processes),
        "dataset_name": args.dataset_name,
        "dataset_fingerprint": dataset_fingerprint,
        "dataset_rows": num_rows,
    }


def settings_file_text(settings: dict[str, Any]) -> str:
    return json.dumps(settings, indent=2, sort_keys=True) + "\n"


def resume_differences(saved: dict[str, Any], current: dict[str, Any], sharded: bool) -> list[str]:
    """The changes that would break an exact resume, one line each (empty when the resume is exact)."""
    problems = []
    for flag in ("mode", "lora_target_modules", *FIXED_FLAGS, *VSA_FLAGS):
        if flag in saved and not _same_setting(flag, saved.get(flag), current.get(flag)):
            name = "training mode" if flag == "mode" else f"--{flag}"
            problems.append(f"{name}: {saved.get(flag)!r} -> {current.get(flag)!r}")
    if saved.get("dataset_fingerprint") != current["dataset_fingerprint"]:
        problems.append(
            f"the dataset: {saved.get('dataset_name')!r} ({saved.get('dataset_rows')} rows) -> "
            f"{current['dataset_name']!r} ({current['dataset_rows']} rows{_same_rows(saved, current)})"
        )
    if saved.get("global_batch_size") != current["global_batch_size"]:
        problems.append(
            f"the global batch: {saved.get('train_batch_size')} x {saved.get('num_processes')} processes -> "
            f"{current['train_batch_size']} x {current['num_processes']} processes"
        )
    elif sharded and saved.get("num_processes") != current["num_processes"]:
        problems.append(
            f"the number of processes: {saved.get('num_processes')} -> {current['num_processes']} "
            "(FSDP / DeepSpeed states are sharded per process)"
        )
    return problems


def _same_setting(flag: str, saved: Any, current: Any) -> bool:
    if flag == "pretrained_model_name_or_path" and saved and current:
        return _model_location(saved) == _model_location(current)
    return saved == current


def _model_location(model: str) -> str:
    """A local folder by its resolved path (the same folder however it is spelled), a Hub id as it is."""
    return str(Path(model).resolve()) if Path(model).exists() else model


def _same_rows(saved: dict[str, Any], current: dict[str, Any]) -> str:
    return ", other clips" if saved.get("dataset_rows") == current["dataset_rows"] else ""


def check_resume_settings(checkpoint: Path, current: dict[str, Any], sharded: bool) -> dict[str, Any]:
    """Refuse (``ResumeSettingsError``) a resume that changes a fixed setting; log what else changed.

    Returns the settings the resumed run has in effect (the checkpoint's where its states win), which its own
    checkpoints then record.
    """
    path = Path(checkpoint, RUN_SETTINGS_FILE)
    if not path.is_file():
        logger.warning("%s records no run settings (an older checkpoint): they cannot be checked", checkpoint)
        return current
    saved = json.loads(path.read_text())
    problems = resume_differences(saved, current, sharded)
    if problems:
        raise ResumeSettingsError(
            f"Cannot resume {checkpoint} exactly: these settings differ from the run that wrote it:\n  - "
            + "\n  - ".join(problems)
            + "\nResume with the original settings, or start a new run in another --output_dir."
        )
    effective = dict(current)
    for flag in CHECKPOINT_WINS:
        if flag in saved and saved[flag] != current.get(flag):
            logger.warning(
                "--%s %s is ignored on resume: the checkpoint's optimizer keeps %s", flag, current[flag], saved[flag]
            )
            effective[flag] = saved[flag]
    if saved.get("num_processes") != current["num_processes"]:
        logger.info(
            "resuming on %d processes (checkpoint: %d) with the same global batch of %d",
            current["num_processes"],
            saved.get("num_processes"),
            current["global_batch_size"],
        )
    return effective
