"""The command-line flags of the training script, named as in diffusers' examples.

``train.py`` trains a LoRA or the whole transformer (``--training_type lora|full``); ``train_wan_lora.py`` and
``train_wan.py`` are the same script with the type fixed. Every flag but the LoRA ones is shared, and the model's
family fills in what differs between families (``--lora_target_modules``). Defaults follow the published recipes
(FastVideo's Wan2.1 examples).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from ..models import FAMILIES, family_titles
from ..refusal import SettingRefused

TRAINING_TYPES = ("lora", "full")  # --training_type: a LoRA on the frozen transformer, or every weight


def run_refusing_in_one_line(main: Callable[[argparse.Namespace], None], parse_args: Callable[[], argparse.Namespace]):
    """``main(parse_args())``; returns the exit status: 0, or 2 after a ``SettingRefused``, printed as one line by the
    first process only (every process of a run refuses the same setting, and N copies bury it)."""
    try:
        main(parse_args())
    except SettingRefused as refusal:
        if int(os.environ.get("RANK", "0")) == 0:  # set by torchrun and accelerate launch, before any process group
            print(f"{Path(sys.argv[0]).name}: error: {refusal}", file=sys.stderr)
        return 2
    return 0


class _StoreGiven(argparse.Action):
    """``store``, and note the flag in ``namespace._given``: a flag with a default cannot otherwise tell whether the
    user passed it, and a flag passed where it has no effect is refused rather than ignored."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace._given = {*getattr(namespace, "_given", ()), self.dest}


def given_flags(args: argparse.Namespace) -> set[str]:
    """The flags (as ``dest`` names) with a ``_StoreGiven`` action that the command line named."""
    return set(getattr(args, "_given", ()))


def read_training_type(argv: list[str] | None) -> str:
    """The ``--training_type`` of a command line (``lora`` when it names none), read before the whole parser is
    built: the LoRA flags, and the learning rate's default, depend on it."""
    chooser = argparse.ArgumentParser(add_help=False)
    chooser.add_argument("--training_type", choices=TRAINING_TYPES, default=TRAINING_TYPES[0])
    return chooser.parse_known_args(argv)[0].training_type


def build_training_parser(description: str, lora: bool, choose_training_type: bool = False) -> argparse.ArgumentParser:
    """The parser of a run that trains a LoRA (``lora``) or every weight; ``choose_training_type`` adds the
    ``--training_type`` flag that chose between them (``train.py``)."""
    parser = argparse.ArgumentParser(description=description)
    if choose_training_type:
        parser.add_argument(
            "--training_type",
            choices=TRAINING_TYPES,
            default=TRAINING_TYPES[0],
            help="lora: train a LoRA on the frozen transformer (the LoRA flags below); full: train every weight "
            "(float32 master weights). --help after it lists the flags of that type.",
        )
    known = {name: model for family in FAMILIES for name, model in family.known_models.items()}
    two_experts = ", ".join(name for name, model in known.items() if len(model.experts) > 1)
    model = parser.add_argument_group("model and data")
    model.add_argument(
        "--pretrained_model_name_or_path",
        required=True,
        help=f"A diffusers-format {family_titles()} pipeline, local folder or Hub id (e.g. "
        f"{next(iter(known.values())).hub_id}).",
    )
    model.add_argument("--revision", default=None, help="Revision of the model on the Hub.")
    model.add_argument(
        "--dataset_name",
        required=True,
        help="A latent dataset made by `fastvideo-hf preprocess`: a local folder or a Hub dataset id.",
    )
    model.add_argument("--dataset_revision", default=None, help="Revision of --dataset_name on the Hub.")
    model.add_argument(
        "--allow_model_mismatch",
        action="store_true",
        help="Train even if the dataset card says its latents were made for another model (not recommended).",
    )
    model.add_argument(
        "--expert",
        default=None,
        choices=["high", "low", "both"],
        help=f"Two-expert models ({two_experts}): train the high-noise expert (transformer), the low-noise one "
        "(transformer_2), or both in one run; each expert sees only timesteps on its side of the model's boundary.",
    )
    model.add_argument("--dataloader_num_workers", type=int, default=0, help="Worker processes of the dataloader.")

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", required=True, help="Where checkpoints, validation videos and weights go.")
    run.add_argument("--seed", type=int, default=42, help="Seeds data order, noise, timesteps and caption dropout.")
    run.add_argument("--train_batch_size", type=int, default=1, help="Batch size per process.")
    run.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Micro-batches per optimizer step.")
    run.add_argument("--max_train_steps", type=int, default=None, help="Optimizer steps; overrides epochs if set.")
    run.add_argument("--num_train_epochs", type=int, default=1, help="Epochs, when --max_train_steps is not set.")
    run.add_argument("--mixed_precision", default=None, choices=["no", "fp16", "bf16"], help="Mixed precision.")
    run.add_argument(
        "--gradient_checkpointing", action="store_true", help="Recompute activations in backward to save memory."
    )
    run.add_argument(
        "--process_group_timeout",
        type=int,
        default=7200,
        help="Seconds a process waits for the others (validation on one process can take long at full size).",
    )
    run.add_argument("--report_to", default="tensorboard", help='"tensorboard", "wandb", "all" or "none".')
    run.add_argument("--logging_dir", default="logs", help="Tracker logs, relative to --output_dir.")

    optim = parser.add_argument_group("optimizer")
    optim.add_argument(
        "--learning_rate", type=float, default=1e-4 if lora else 5e-5, help="Peak learning rate (after warmup)."
    )
    optim.add_argument(
        "--lr_scheduler",
        default="constant",
        help="constant, constant_with_warmup, linear, cosine, cosine_with_restarts or polynomial.",
    )
    optim.add_argument("--lr_warmup_steps", type=int, default=0, help="Linear warmup steps.")
    optim.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW beta1.")
    optim.add_argument("--adam_beta2", type=float, default=0.999, help="AdamW beta2.")
    optim.add_argument("--adam_weight_decay", type=float, default=1e-4, help="AdamW weight decay.")
    optim.add_argument("--adam_epsilon", type=float, default=1e-8, help="AdamW epsilon.")
    optim.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping norm (0 disables).")

    flow = parser.add_argument_group("flow matching")
    flow.add_argument(
        "--weighting_scheme",
        default="uniform",
        choices=["uniform", "logit_normal", "mode"],
        help="How sigmas are drawn (diffusers' SD3 densities).",
    )
    flow.add_argument("--logit_mean", type=float, default=0.0, help="Mean of logit_normal.")
    flow.add_argument("--logit_std", type=float, default=1.0, help="Std of logit_normal.")
    flow.add_argument("--mode_scale", type=float, default=1.29, help="Scale of the mode density.")
    flow.add_argument(
        "--flow_shift", type=float, default=3.0, help="Timestep shift applied to training sigmas (Wan uses 3-5)."
    )
    flow.add_argument(
        "--caption_dropout", type=float, default=0.1, help="Probability of training on a zeroed prompt embedding."
    )

    checkpoints = parser.add_argument_group("checkpoints")
    checkpoints.add_argument("--checkpointing_steps", type=int, default=500, help="Save a checkpoint every N steps.")
    checkpoints.add_argument("--checkpoints_total_limit", type=int, default=None, help="Keep at most N checkpoints.")
    checkpoints.add_argument(
        "--resume_from_checkpoint", default=None, help='A checkpoint directory, or "latest" in --output_dir.'
    )

    validation = parser.add_argument_group("validation")
    validation.add_argument("--validation_file", default=None, help="FastVideo's validation.json ({'data': [...]}).")
    validation.add_argument("--validation_prompt", default=None, help="A prompt to validate with (if no file).")
    validation.add_argument("--validation_steps", type=int, default=200, help="Validate every N steps.")
    validation.add_argument("--validation_num_inference_steps", type=int, default=50, help="Sampling steps.")
    validation.add_argument("--validation_guidance_scale", type=float, default=5.0, help="Classifier-free guidance.")
    validation.add_argument(
        "--validation_height",
        type=int,
        default=None,
        help="Height when the entry has none (default: the dataset's most common video bucket, else 480).",
    )
    validation.add_argument(
        "--validation_width",
        type=int,
        default=None,
        help="Width when the entry has none (default: the dataset's most common video bucket, else 832).",
    )
    validation.add_argument(
        "--validation_num_frames",
        type=int,
        default=None,
        help="Frames when the entry has none (default: the dataset's most common video bucket, else 81).",
    )
    validation.add_argument("--validation_fps", type=int, default=16, help="fps of the saved validation videos.")

    hub = parser.add_argument_group("hub")
    hub.add_argument("--push_to_hub", action="store_true", help="Upload the final weights with a model card.")
    hub.add_argument("--hub_model_id", default=None, help="Model repo to push to (default: the output dir name).")
    hub.add_argument(
        "--hub_token",
        default=None,
        help="Hub token. Prefer `hf auth login` or the HF_TOKEN variable (the default): a token on the command line "
        "is visible to other users in the process list. Never logged or saved. Not with --report_to wandb.",
    )

    vsa = parser.add_argument_group("Video Sparse Attention (VSA)")
    vsa.add_argument(
        "--attention_backend",
        default="sdpa",
        choices=["sdpa", "vsa"],
        help="sdpa: diffusers' dense attention; vsa: Video Sparse Attention in every self-attention.",
    )
    vsa.add_argument(
        "--vsa_sparsity", type=float, default=0.9, action=_StoreGiven, help="Target fraction of key tiles skipped."
    )
    vsa.add_argument(
        "--vsa_decay_rate",
        type=float,
        action=_StoreGiven,
        default=0.03,
        help="Sparsity added every --vsa_decay_interval_steps (FastVideo's Wan2.1 1.3B recipe: 0.03 every 50).",
    )
    vsa.add_argument(
        "--vsa_decay_interval_steps",
        type=int,
        default=50,
        action=_StoreGiven,
        help="Steps between sparsity increases.",
    )
    vsa.add_argument(
        "--vsa_backend",
        default="auto",
        action=_StoreGiven,
        choices=["auto", "torch", "flex", "kernel"],
        help="auto: FastVideo's kernel on a GPU that has it, else FlexAttention; plain torch for CPU training.",
    )

    memory = parser.add_argument_group("memory savers (LoRA on one GPU; a full finetune refuses them)")
    memory.add_argument(
        "--layerwise_casting",
        default=None,
        choices=["float8_e4m3fn", "float8_e5m2"],
        help="Store the frozen base weights in this fp8 dtype and compute in the mixed-precision dtype (float32 "
        "with --mixed_precision no), through diffusers' enable_layerwise_casting; norms, embeddings and patch layers "
        "stay as they are, and the LoRA stays float32. Halves the base weights' memory vs bf16; changes numerics.",
    )
    memory.add_argument(
        "--group_offload",
        default=None,
        choices=["block_level", "leaf_level"],
        help="Keep the frozen base weights on the CPU and bring them to the GPU as each group runs, through "
        "diffusers' group offloading: block_level moves --offload_blocks_per_group transformer blocks at a time, "
        "leaf_level one layer at a time. The LoRA, its gradients and optimizer state stay on the GPU. Same numbers "
        "as without it; slower. Use with --gradient_checkpointing for the saving to hold through backward.",
    )
    memory.add_argument(
        "--offload_blocks_per_group",
        type=int,
        default=1,
        action=_StoreGiven,
        help="Transformer blocks per group with --group_offload block_level (more: fewer transfers, more memory).",
    )
    memory.add_argument(
        "--offload_use_stream",
        action="store_true",
        help="With --group_offload, prefetch the next group on a CUDA stream while the current one computes "
        "(needs CUDA; block_level then moves one block at a time).",
    )

    parallel = parser.add_argument_group("context parallelism (one sample's tokens over several GPUs)")
    parallel.add_argument(
        "--context_parallel_ulysses",
        type=int,
        default=1,
        help="Processes that share one sample's token sequence through Ulysses' all-to-all (diffusers' "
        "ContextParallelConfig): each holds 1/N of the tokens outside attention and all tokens for 1/N of the heads "
        "inside it. Must divide the attention heads (12 for Wan 1.3B, 40 for 14B) and the processes of the run; the "
        "other processes split the data. Works with --attention_backend vsa.",
    )
    parallel.add_argument(
        "--context_parallel_ring",
        type=int,
        default=1,
        help="Processes that share one sample's token sequence through ring attention (keys and values passed "
        "around the group); multiplies with --context_parallel_ulysses. Not with --attention_backend vsa.",
    )

    if lora:
        adapter = parser.add_argument_group("LoRA")
        adapter.add_argument("--rank", type=int, default=32, help="LoRA rank.")
        adapter.add_argument(
            "--lora_alpha", type=float, default=32, help="LoRA alpha; the update is scaled by alpha/rank."
        )
        defaults = "; ".join(f"{family.title}: {','.join(family.default_lora_targets)}" for family in FAMILIES)
        adapter.add_argument(
            "--lora_target_modules",
            default=None,
            help=f"Comma-separated Linear names to adapt in every block (default: the model family's; {defaults}).",
        )
    return parser


# flag -> (lowest, highest, whether the lowest itself is allowed), for every number a run takes: a NaN or an
# infinity would train to an all-NaN LoRA with exit 0, and values torch, peft or numpy refuse would fail with a
# traceback after the model loaded
_NUMBER_RANGES = {
    "learning_rate": (0.0, math.inf, False),
    "adam_beta1": (0.0, 1.0, True),
    "adam_beta2": (0.0, 1.0, True),
    "adam_epsilon": (0.0, math.inf, False),
    "adam_weight_decay": (0.0, math.inf, True),
    "max_grad_norm": (0.0, math.inf, True),
    "logit_mean": (-math.inf, math.inf, False),
    "logit_std": (0.0, math.inf, False),
    "mode_scale": (-math.inf, math.inf, False),
    "flow_shift": (0.0, math.inf, False),
    "caption_dropout": (0.0, 1.0, True),
    "vsa_sparsity": (0.0, 1.0, True),
    "validation_guidance_scale": (0.0, math.inf, True),
    "lora_alpha": (0.0, math.inf, False),
    "rank": (1, math.inf, True),
    "seed": (0, 2**32, True),
    "dataloader_num_workers": (0, math.inf, True),
    "lr_warmup_steps": (0, math.inf, True),
    "checkpoints_total_limit": (1, math.inf, True),
}


def check_numbers(args: argparse.Namespace) -> None:
    """Refuse a number outside the range the run can use (``_NUMBER_RANGES``), before anything loads."""
    for flag, (lowest, highest, lowest_allowed) in _NUMBER_RANGES.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        low_ok = value >= lowest if lowest_allowed else value > lowest
        if not (math.isfinite(value) and low_ok and value < highest):
            low = f"[{lowest}" if lowest_allowed else f"({lowest}"
            high = "inf)" if highest == math.inf else f"{highest})"
            raise SettingRefused(f"--{flag} must be a finite number in {low}, {high}, got {value}")


def validate_training_args(args: argparse.Namespace) -> None:
    """Refuse flag combinations that would fail late, leak a secret, or be ignored without a word."""
    if args.report_to in ("wandb", "all") and args.hub_token is not None:
        raise SettingRefused(
            "You cannot use both --report_to=wandb and --hub_token due to a security risk of exposing your token."
            " Please use `hf auth login` to authenticate with the Hub."
        )
    if args.hub_token is not None:
        warnings.warn(
            "--hub_token on the command line is visible to other users of this machine in the process list and in "
            "launcher error messages: prefer `hf auth login` or the HF_TOKEN environment variable",
            UserWarning,
            stacklevel=2,
        )
    counts = ("train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "validation_steps")
    for flag in (*counts, "validation_num_inference_steps", "validation_fps"):
        if getattr(args, flag) < 1:
            raise SettingRefused(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    for flag in ("max_train_steps", "num_train_epochs"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise SettingRefused(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    check_numbers(args)
    sizes = [f"--{flag}" for flag in ("validation_height", "validation_width", "validation_num_frames")]
    given_sizes = [flag for flag in sizes if getattr(args, flag[2:]) is not None]
    if given_sizes and args.validation_prompt is None and args.validation_file is None:
        raise SettingRefused(
            f"{', '.join(given_sizes)} without --validation_prompt or --validation_file would be ignored: there is "
            "nothing to validate; add one, or drop the sizes"
        )
    if args.hub_model_id is not None:
        if not args.push_to_hub:
            raise SettingRefused("--hub_model_id without --push_to_hub would be ignored: add --push_to_hub")
        try:
            validate_repo_id(args.hub_model_id)
        except HFValidationError as error:
            raise SettingRefused(f"--hub_model_id {args.hub_model_id!r} is not a Hub repo id: {error}") from None
    vsa_flags = sorted(flag for flag in given_flags(args) if flag.startswith("vsa_"))
    if vsa_flags and args.attention_backend != "vsa":
        named = ", ".join(f"--{flag}" for flag in vsa_flags)
        raise SettingRefused(
            f"{named} without --attention_backend vsa would be ignored: add --attention_backend vsa to train with "
            f"Video Sparse Attention, or drop {named}"
        )
