"""Will a Wan training run fit on a GPU, and which memory savers does it need? An estimate without any weights.

The transformer is built from its config on the meta device (``accelerate.init_empty_weights``), so a 14B model is
counted in a second with no weight read. Each part of the peak is a pure function of the parameter counts, the token
count and the options; ``plan`` evaluates every combination of the memory options of the training scripts.

What is exact and what is modelled:

- Parameters, gradients and optimizer states are counted from the real module tree: the trained model's weights
  (float32 master weights in a full finetune, as ``train_wan.py`` keeps them; the mixed-precision dtype for a LoRA's
  frozen base, fp8 for the layers diffusers' ``enable_layerwise_casting`` casts, found by running it on the meta
  model), the LoRA's float32 ``lora_A`` / ``lora_B`` of every matched Linear, float32 gradients, and AdamW's
  ``exp_avg`` and ``exp_avg_sq`` (its per-parameter ``step`` is a CPU scalar). The tests check these byte for byte
  against a real model and a real AdamW step.
- Activations are the tensors autograd saves for backward, derived term by term from diffusers'
  ``WanTransformerBlock`` (see ``block_activation_bytes``) and checked against ``torch.autograd.graph``'s
  saved-tensor hooks on tiny models at two sizes (within 15%, measured within 7%). Those measurements run on the CPU,
  where RMSNorm saves a float32 copy of its input. On CUDA, when input and weight share a dtype (a LoRA's bf16 base,
  FSDP's bf16 parameters) and autocast leaves it alone, the fused RMSNorm may save the bf16 input instead: the
  estimate is then high by 6 bytes x hidden size per token and block (about 11% of a 14B LoRA block).
- The rest is modelled, and named as such in ``ASSUMPTIONS``: the backward workspace of one block, what diffusers'
  group offloading and fp8 casting keep on the GPU (autograd keeps the compute-dtype copy of every weight a forward
  used until its backward, so both save memory at the peak only with gradient checkpointing), FSDP2's unsharded blocks
  in flight, context parallelism dividing every per-token tensor, and a fixed CUDA context and allocator overhead.

The total is the sum of the parts: gradients are counted beside the activations, though they grow as activations are
freed, so it is an upper bound of the peak by up to the gradients.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from ..library_internals import layerwise_casting_layer_types
from ..model_spec import WAN_MAX_SEQUENCE_LENGTH
from .args import DEFAULT_LORA_TARGETS  # the training flag's default

GIB = 1024**3
CUDA_OVERHEAD_BYTES = GIB  # CUDA context, cuBLAS workspaces and allocator fragmentation: an assumption, not measured
CLIP_IMAGE_TOKENS = 257  # Wan2.1 I2V: the CLIP ViT-H/14 hidden states of one 224x224 image (256 patches + class token)
COMPUTE_BYTES = {"bf16": 2, "fp16": 2, "no": 4}  # --mixed_precision -> bytes of the activations and frozen weights

ASSUMPTIONS = (
    "weights: full finetune keeps float32 master weights (train_wan.py) and AdamW; LoRA keeps the base in the "
    "mixed-precision dtype and the LoRA, its gradients and AdamW states in float32",
    "activations: what autograd saves, term by term from diffusers' WanTransformerBlock (validated on the CPU within "
    "15%); text context 512 tokens, plus 257 CLIP tokens for Wan2.1 I2V",
    "gradient checkpointing keeps each block's input; one block is recomputed at a time during backward",
    "workspace: the backward temporaries of one block at its peak, the start of its backward (the FFN's two gradients "
    "and the residual stream's, float32 inside the block) and, under context parallelism, one all-to-all copy of "
    "q/k/v/out",
    "fp8 layerwise casting and group offload keep the weights a forward used on the GPU until their backward: they "
    "save memory at the peak only with gradient checkpointing (then one block's weights are live)",
    "group offload block_level moves one block at a time (--offload_blocks_per_group 1, no stream; "
    "--offload_use_stream prefetches one more block); leaf_level one layer, but the recomputed block's weights stay "
    "live during its backward as for block_level",
    "FSDP2 (full shard over --num_gpus) shards weights, gradients and optimizer states; two blocks are unsharded in "
    "the compute dtype at a time (current and prefetched) plus the root's own parameters and one block's gradients",
    "DDP (several GPUs, no FSDP) keeps a second copy of the gradients in its buckets",
    "context parallelism of degree P divides every per-token tensor of the video by P; the text context is not split",
    "a full finetune without FSDP keeps autocast's compute-dtype copy of every Linear/Conv weight for backward (with "
    "checkpointing: of the layers outside the blocks and of the recomputed block)",
    "1 GiB fixed overhead (CUDA context, cuBLAS workspaces, allocator fragmentation) on top of the allocated bytes; "
    "torch.cuda.max_memory_allocated is to be compared with allocated_bytes, not total_bytes",
    "--gpu_memory is in GiB, as GPUs are sold (a 24 GB card has 24 GiB, an 80 GB card 80 GiB)",
)


@dataclass(frozen=True)
class KnownModel:
    hub_id: str
    config: dict  # the transformer's config.json (diffusers' scripts/convert_wan_to_diffusers.py)
    experts: tuple[str, ...] = ("transformer",)  # Wan2.2 A14B: the high- and the low-noise expert
    vae_scale_spatial: int = 8  # Wan2.2 TI2V-5B's VAE compresses 16x spatially
    expand_timesteps: bool = False  # Wan2.2 TI2V-5B: one timestep, so one modulation, per token


_WAN_14B = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 40,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 13824,
    "num_layers": 40,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-06,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
}
_WAN_I2V_14B = {**_WAN_14B, "in_channels": 36, "image_dim": 1280, "added_kv_proj_dim": 5120}
_A14B = ("transformer", "transformer_2")

KNOWN_MODELS = {
    "wan2.1-t2v-1.3b": KnownModel(
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        {**_WAN_14B, "num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30},
    ),
    "wan2.1-t2v-14b": KnownModel("Wan-AI/Wan2.1-T2V-14B-Diffusers", _WAN_14B),
    "wan2.1-i2v-14b-480p": KnownModel("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", _WAN_I2V_14B),
    "wan2.1-i2v-14b-720p": KnownModel("Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", _WAN_I2V_14B),
    "wan2.2-t2v-a14b": KnownModel("Wan-AI/Wan2.2-T2V-A14B-Diffusers", _WAN_14B, _A14B),
    "wan2.2-i2v-a14b": KnownModel("Wan-AI/Wan2.2-I2V-A14B-Diffusers", {**_WAN_14B, "in_channels": 36}, _A14B),
    "wan2.2-ti2v-5b": KnownModel(
        "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        {**_WAN_14B, "num_attention_heads": 24, "ffn_dim": 14336, "num_layers": 30, "in_channels": 48,
         "out_channels": 48},
        vae_scale_spatial=16,
        expand_timesteps=True,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs from a model: its transformer config and how its VAE maps pixels to latents."""

    name: str
    config: dict
    experts: tuple[str, ...]
    vae_scale_spatial: int
    vae_scale_temporal: int = 4
    expand_timesteps: bool = False


def known_model(name: str) -> KnownModel | None:
    """The kept config of a public Wan model, by short name or Hub id (case-insensitive)."""
    lowered = name.lower()
    for short, model in KNOWN_MODELS.items():
        if lowered in (short, model.hub_id.lower()):
            return model
    return None


def resolve_model(name_or_path: str, revision: str | None = None) -> ModelShape:
    """The transformer config of a known public model, a local diffusers folder, or a Hub id in the local cache.

    Never reaches the network: ``plan`` must answer before anything is downloaded, so an id that is neither known nor
    cached is refused with what to run instead.
    """
    known = known_model(name_or_path)
    if known is not None:
        return ModelShape(
            known.hub_id, known.config, known.experts, known.vae_scale_spatial, expand_timesteps=known.expand_timesteps
        )
    folder = Path(name_or_path)
    if folder.is_dir():
        if not (folder / "model_index.json").is_file() and (folder / "config.json").is_file():
            # a transformer folder of its own (OUT/transformer of a full finetune)
            return ModelShape(name_or_path, _read_json(folder / "config.json"), ("transformer",), 8)
        read = lambda file, required: _read_local(folder, file, required)  # noqa: E731
    else:
        read = lambda file, required: _read_cached(name_or_path, file, revision, required)  # noqa: E731
    index = read("model_index.json", True)
    experts = tuple(slot for slot in ("transformer", "transformer_2") if (index.get(slot) or [None])[0] is not None)
    vae = read("vae/config.json", False) or {}
    return ModelShape(
        name_or_path,
        read("transformer/config.json", True),
        experts,
        vae.get("scale_factor_spatial") or 8,
        vae.get("scale_factor_temporal") or 4,
        bool(index.get("expand_timesteps")),
    )


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _read_local(folder: Path, file: str, required: bool) -> dict | None:
    if (folder / file).is_file():
        return _read_json(folder / file)
    if required:
        raise FileNotFoundError(f"{folder / file} not found: is {folder} a diffusers-format Wan pipeline folder?")
    return None


def _read_cached(repo_id: str, file: str, revision: str | None, required: bool) -> dict | None:
    """A config file of a Hub model from the local cache only."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return _read_json(Path(hf_hub_download(repo_id, file, revision=revision, local_files_only=True)))
    except HFValidationError:
        raise ValueError(
            f"{repo_id!r} is neither a folder, nor a Hub id, nor a known model ({known_names()})"
        ) from None
    except LocalEntryNotFoundError:
        if not required:
            return None
        raise FileNotFoundError(
            f"{repo_id}: {file} is not in the local Hugging Face cache, and plan never downloads. Fetch the configs "
            f"first (hf download {repo_id} model_index.json transformer/config.json vae/config.json), pass a local "
            f"pipeline folder, or use a known model: {known_names()}"
        ) from None


def known_names() -> str:
    return ", ".join(KNOWN_MODELS)


def build_meta_transformer(config: dict):
    """A ``WanTransformer3DModel`` with every parameter on the meta device: its shapes, no memory."""
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    with init_empty_weights():
        return WanTransformer3DModel.from_config(config)


@dataclass(frozen=True)
class ParameterCounts:
    """Element counts of one transformer (one expert)."""

    total: int
    blocks: int  # number of transformer blocks
    per_block: int  # every parameter of one block
    non_block: int  # embeddings, output head, modulation tables
    linear: int  # parameters of Linear / Conv layers: what autocast copies to the compute dtype
    linear_per_block: int
    fp8: int  # parameters enable_layerwise_casting stores in fp8 (norms, embeddings, patch and head stay)
    fp8_per_block: int
    largest_layer: int  # the biggest Linear / Conv: what leaf-level offload keeps on the GPU
    lora: int  # lora_A + lora_B of every matched Linear, for the given rank and targets
    lora_layers_per_block: tuple[str, ...]  # block-relative names of the adapted Linears


def lora_target_layers(model: torch.nn.Module, targets: tuple[str, ...]) -> list[str]:
    """Names of the Linears a LoRA adapts: as peft matches ``target_modules`` (the whole name, or its last dotted
    parts, like ``training.stages.resolve_lora_targets``)."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and any(name == t or name.endswith(f".{t}") for t in targets)
    ]


def count_parameters(
    model: torch.nn.Module, lora_rank: int = 0, lora_targets: tuple[str, ...] = ()
) -> ParameterCounts:
    """Count the parameters of a (meta) Wan transformer and of the LoRA that ``lora_rank`` / ``lora_targets`` add."""
    layer_types = layerwise_casting_layer_types()

    def numel(module: torch.nn.Module) -> int:
        return sum(param.numel() for param in module.parameters())

    layers = [m for m in model.modules() if isinstance(m, layer_types)]
    block = model.blocks[0]
    block_layers = [m for m in block.modules() if isinstance(m, layer_types)]
    fp8, fp8_block = _fp8_counts(model)
    targeted = lora_target_layers(model, lora_targets) if lora_rank else []
    modules = dict(model.named_modules())
    lora_sizes = {name: lora_rank * (modules[name].in_features + modules[name].out_features) for name in targeted}
    in_block = [name.split(".", 2)[2] for name in targeted if name.startswith("blocks.0.")]
    per_block = numel(block)
    return ParameterCounts(
        total=numel(model),
        blocks=len(model.blocks),
        per_block=per_block,
        non_block=numel(model) - per_block * len(model.blocks),
        linear=sum(numel(m) for m in layers),
        linear_per_block=sum(numel(m) for m in block_layers),
        fp8=fp8,
        fp8_per_block=fp8_block,
        largest_layer=max(numel(m) for m in layers),
        lora=sum(lora_sizes.values()),
        lora_layers_per_block=tuple(in_block),
    )


def _fp8_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(parameters stored in fp8, of them in block 0) when diffusers' ``enable_layerwise_casting`` runs on ``model``:
    run on the meta model itself (its skip patterns decide) and read back the dtypes; the model is left cast."""
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)

    def fp8(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters() if p.dtype == torch.float8_e4m3fn)

    return fp8(model), fp8(model.blocks[0])


@dataclass(frozen=True)
class TrainingSetup:
    """The run being planned, in the training scripts' terms."""

    mode: str  # "lora" or "full"
    height: int
    width: int
    num_frames: int
    train_batch_size: int = 1
    rank: int = 32
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    mixed_precision: str = "bf16"
    num_gpus: int = 1
    expert: str | None = None  # Wan2.2 A14B: "both" trains both experts (both in memory); else one


@dataclass(frozen=True)
class Options:
    """One combination of the memory options of the training scripts."""

    gradient_checkpointing: bool = False
    layerwise_casting: bool = False  # --layerwise_casting float8_e4m3fn (LoRA only)
    group_offload: str | None = None  # --group_offload block_level|leaf_level (LoRA on one GPU only)
    context_parallel: int = 1  # --context_parallel_ulysses x --context_parallel_ring
    fsdp: bool = False  # Accelerate FSDP2, full shard over every GPU

    @property
    def cost(self) -> float:
        """How much an option slows a step or changes its numbers, to rank the combinations that fit: FSDP and
        context parallelism cost communication (on GPUs the run has anyway), checkpointing ~1/3 more compute, fp8
        changes the numerics, offload waits on PCIe. A ranking, not a measurement."""
        offload = {None: 0, "block_level": 4, "leaf_level": 6}[self.group_offload]
        checkpointing, fp8 = 2 * self.gradient_checkpointing, 3 * self.layerwise_casting
        return self.fsdp + math.log2(self.context_parallel) + checkpointing + fp8 + offload

    def describe(self) -> str:
        parts = [
            "FSDP" if self.fsdp else "",
            f"CP{self.context_parallel}" if self.context_parallel > 1 else "",
            "ckpt" if self.gradient_checkpointing else "",
            "fp8" if self.layerwise_casting else "",
            f"offload:{self.group_offload.split('_')[0]}" if self.group_offload else "",
        ]
        return " + ".join(part for part in parts if part) or "none"


@dataclass(frozen=True)
class MemoryParts:
    """The parts of the peak GPU memory of one process, in bytes."""

    weights: int  # the base / trained weights resident on the GPU (sharded by FSDP, fp8, or offloaded)
    lora: int  # the LoRA's float32 weights
    gradients: int
    optimizer_states: int
    weight_copies: int  # compute-dtype copies alive at the peak: fp8 upcasts, onloaded blocks, autocast, FSDP
    activations: int  # saved for backward and kept through the forward (block inputs with checkpointing)
    recompute: int  # one block's saved activations while it is recomputed (checkpointing only)
    workspace: int  # backward temporaries of one block, all-to-all buffers of context parallelism
    overhead: int = CUDA_OVERHEAD_BYTES

    @property
    def allocated(self) -> int:
        """What ``torch.cuda.max_memory_allocated`` should report: every part but the fixed overhead."""
        return self.total - self.overhead

    @property
    def total(self) -> int:
        return sum(asdict(self).values())


def latent_tokens(model: ModelShape, height: int, width: int, num_frames: int) -> int:
    """Tokens of one sample: latent frames ``(num_frames - 1) // 4 + 1`` and ``height / 8`` x ``width / 8`` latents
    (16 for Wan2.2 TI2V-5B), patchified 1x2x2."""
    patch_t, patch_h, patch_w = model.config.get("patch_size", (1, 2, 2))
    frames = (num_frames - 1) // model.vae_scale_temporal + 1
    return (
        (frames // patch_t)
        * (height // model.vae_scale_spatial // patch_h)
        * (width // model.vae_scale_spatial // patch_w)
    )


def estimate(model: ModelShape, counts: ParameterCounts, setup: TrainingSetup, options: Options) -> MemoryParts:
    """The parts of the peak memory of one GPU for ``setup`` under ``options``."""
    a = COMPUTE_BYTES[setup.mixed_precision]
    experts = len(model.experts) if setup.expert == "both" else 1
    shards = setup.num_gpus if options.fsdp else 1
    ckpt = options.gradient_checkpointing
    lora = setup.mode == "lora"
    trainable = counts.lora if lora else counts.total
    tokens = math.ceil(latent_tokens(model, setup.height, setup.width, setup.num_frames) / options.context_parallel)
    activation = block_activation_bytes(
        model.config,
        tokens,
        setup.mode,
        a,
        setup.rank if lora else 0,
        counts.lora_layers_per_block,
        peft_casts_input=a < 4 and not options.layerwise_casting,
        per_token_modulation=model.expand_timesteps,
    )

    if lora:
        weights, copies = _lora_weights(counts, options, a)
    else:
        weights = 4 * counts.total
        if options.fsdp:  # two blocks unsharded (current, prefetched), the root's own parameters, one block's grads
            copies = a * (3 * counts.per_block + counts.non_block)
        else:
            # autocast's copies of the weights, kept by autograd for backward: every block's, or with checkpointing
            # the recomputed block's (the others' are dropped when autocast's cache is cleared after forward)
            live_blocks = 1 if options.gradient_checkpointing else counts.blocks
            outside_blocks = counts.linear - counts.blocks * counts.linear_per_block
            copies = a * (outside_blocks + live_blocks * counts.linear_per_block) if a < 4 else 0
    gradients = 4 * trainable * experts // shards
    if setup.num_gpus > 1 and not options.fsdp:
        gradients *= 2  # DDP's buckets
    workspace = activation.workspace
    if options.context_parallel > 1:
        workspace += tokens * 4 * a * model.config["num_attention_heads"] * model.config["attention_head_dim"]
    batch = setup.train_batch_size
    return MemoryParts(
        weights=weights * experts // shards,
        lora=4 * counts.lora * experts // shards if lora else 0,
        gradients=gradients,
        optimizer_states=8 * trainable * experts // shards,
        weight_copies=copies,
        activations=batch * activation.retained(counts.blocks, ckpt),
        recompute=batch * activation.per_block if ckpt else 0,
        workspace=batch * workspace,
    )


def _lora_weights(counts: ParameterCounts, options: Options, a: int) -> tuple[int, int]:
    """(frozen weights resident on the GPU, compute-dtype weight bytes alive at the peak beyond them) for a LoRA.

    Autograd keeps every weight a forward used until its backward (a frozen Linear still needs its weight for the
    input gradient): without checkpointing every block's weights are live at the peak whatever is offloaded or
    stored in fp8; with it, only the block being recomputed (its onloaded copy, its fp8 layers' upcasts).
    """
    fp8_block = counts.fp8_per_block if options.layerwise_casting else 0
    fp8_rest = counts.fp8 - counts.blocks * counts.fp8_per_block if options.layerwise_casting else 0
    stored_block = a * (counts.per_block - fp8_block) + fp8_block
    stored_rest = a * (counts.non_block - fp8_rest) + fp8_rest
    live_blocks = 1 if options.gradient_checkpointing else counts.blocks
    upcasts = live_blocks * a * fp8_block
    if options.group_offload is None:
        weights, copies = counts.blocks * stored_block + stored_rest, upcasts
    elif options.group_offload == "block_level":
        weights, copies = stored_block + stored_rest, (live_blocks - 1) * stored_block + upcasts
    else:  # leaf_level: one layer on the GPU; what the forward used comes back as autograd's copies
        weights, copies = a * counts.largest_layer, live_blocks * stored_block + stored_rest + upcasts
    if options.fsdp:  # the caller shards the weights; two blocks and the root are unsharded at a time
        copies += a * (2 * counts.per_block + counts.non_block)
    return weights, copies


def option_combinations(setup: TrainingSetup) -> list[Options]:
    """Every combination the training scripts accept: fp8 casting and group offload only for a LoRA (train_wan.py
    refuses them), offload only on one GPU (memory_savers refuses it under DDP), neither under FSDP; context
    parallel degrees that divide the GPUs."""
    lora = setup.mode == "lora"
    degrees = [p for p in range(1, setup.num_gpus + 1) if setup.num_gpus % p == 0]
    combos = []
    for ckpt, fp8, offload, degree, fsdp in itertools.product(
        (False, True),
        (False, True) if lora else (False,),
        (None, "block_level", "leaf_level") if lora and setup.num_gpus == 1 else (None,),
        degrees,
        (False, True) if setup.num_gpus > 1 else (False,),
    ):
        if fsdp and (fp8 or offload):
            continue
        combos.append(Options(ckpt, fp8, offload, degree, fsdp))
    return combos


def _ulysses_ring(degree: int, heads: int) -> tuple[int, int]:
    """(--context_parallel_ulysses, --context_parallel_ring) for a degree: as much Ulysses as the heads allow (it
    needs them divisible), the rest as ring attention."""
    ulysses = max(u for u in range(1, degree + 1) if degree % u == 0 and heads % u == 0)
    return ulysses, degree // ulysses


@dataclass(frozen=True)
class PlanRow:
    options: Options
    parts: MemoryParts
    fits: bool


@dataclass
class Plan:
    model: ModelShape
    setup: TrainingSetup
    counts: ParameterCounts
    tokens: int
    gpu_memory_bytes: int
    rows: list[PlanRow] = field(default_factory=list)

    @property
    def best(self) -> PlanRow | None:
        """The cheapest combination that fits (ties: the smaller peak), or None."""
        fitting = [row for row in self.rows if row.fits]
        return min(fitting, key=lambda row: (row.options.cost, row.parts.total), default=None)

    def command(self, options: Options) -> str:
        """The launch command and training flags that turn ``options`` on (the run's own flags go after it)."""
        gpus = self.setup.num_gpus
        words = ["accelerate launch"]
        if options.fsdp:
            words.append(f"--config_file examples/accelerate_configs/fsdp.yaml --num_processes {gpus}")
        elif gpus > 1:
            words.append(f"--multi_gpu --num_processes {gpus}")
        words.append(
            "training_scripts/train_wan_lora.py" if self.setup.mode == "lora" else "training_scripts/train_wan.py"
        )
        if len(self.model.experts) > 1:  # the scripts need --expert for Wan2.2 A14B; high and low plan alike
            words.append(f"--expert {self.setup.expert or 'high|low'}")
        if options.gradient_checkpointing:
            words.append("--gradient_checkpointing")
        if options.layerwise_casting:
            words.append("--layerwise_casting float8_e4m3fn")
        if options.group_offload:
            words.append(f"--group_offload {options.group_offload}")
        if options.context_parallel > 1:
            ulysses, ring = _ulysses_ring(options.context_parallel, self.model.config["num_attention_heads"])
            words.append(f"--context_parallel_ulysses {ulysses} --context_parallel_ring {ring}")
        return " ".join(words) + " ..."


def make_plan(model: ModelShape, setup: TrainingSetup, gpu_memory_gib: float) -> Plan:
    """Evaluate every option combination for ``setup`` on GPUs of ``gpu_memory_gib``."""
    if setup.mode not in ("lora", "full"):
        raise ValueError(f"mode must be lora or full, got {setup.mode!r}")
    if setup.mixed_precision not in COMPUTE_BYTES:
        raise ValueError(f"mixed_precision must be one of {', '.join(COMPUTE_BYTES)}, got {setup.mixed_precision!r}")
    meta = build_meta_transformer(model.config)
    counts = count_parameters(meta, setup.rank if setup.mode == "lora" else 0, setup.lora_targets)
    if setup.mode == "lora" and counts.lora == 0:
        raise ValueError(f"--lora_target_modules {','.join(setup.lora_targets)}: no Linear of this model matches")
    tokens = latent_tokens(model, setup.height, setup.width, setup.num_frames)
    plan = Plan(model, setup, counts, tokens, int(gpu_memory_gib * GIB))
    for options in option_combinations(setup):
        parts = estimate(model, counts, setup, options)
        plan.rows.append(PlanRow(options, parts, parts.total <= plan.gpu_memory_bytes))
    return plan


def largest_fitting_frames(plan: Plan) -> int | None:
    """When nothing fits: the most frames (4k+1, as Wan's VAE takes them) that some combination fits, or None."""
    below = (plan.setup.num_frames - 2) // 4 * 4 + 1  # the largest 4k+1 under num_frames, whatever num_frames is
    for frames in range(below, 0, -4):
        smaller = replace(plan.setup, num_frames=frames)
        if any(
            estimate(plan.model, plan.counts, smaller, row.options).total <= plan.gpu_memory_bytes for row in plan.rows
        ):
            return frames
    return None


def plan_to_json(plan: Plan) -> dict:
    """The machine-readable plan (see ``tools/plan.py`` for the keys)."""
    rows = []
    for row in plan.rows:
        parts = {f"{name}_bytes": value for name, value in asdict(row.parts).items()}
        rows.append(
            {
                "options": asdict(row.options),
                "description": row.options.describe(),
                "parts": parts,
                "allocated_bytes": row.parts.allocated,
                "total_bytes": row.parts.total,
                "fits": row.fits,
            }
        )
    best = plan.best
    return {
        "model": plan.model.name,
        "setup": asdict(plan.setup),
        "tokens_per_sample": plan.tokens,
        "parameters": plan.counts.total,
        "lora_parameters": plan.counts.lora,
        "gpu_memory_bytes": plan.gpu_memory_bytes,
        "combinations": rows,
        "recommended": None if best is None else plan.rows.index(best),
        "assumptions": list(ASSUMPTIONS),
    }


def format_plan(plan: Plan) -> str:
    """The table of every combination and the recommendation, as ``fastvideo-hf plan`` prints them."""
    setup, counts = plan.setup, plan.counts
    experts = len(plan.model.experts) if setup.expert == "both" else 1
    trained = f"LoRA rank {setup.rank} ({counts.lora / 1e6:.1f}M parameters)" if setup.mode == "lora" else "full"
    lines = [
        f"{plan.model.name}: {counts.total / 1e9:.2f}B parameters x {experts} transformer(s), {counts.blocks} blocks; "
        f"{trained}, {setup.mixed_precision}",
        f"{setup.width}x{setup.height}x{setup.num_frames}, batch {setup.train_batch_size}: {plan.tokens:,} tokens per "
        f"sample; {setup.num_gpus} GPU(s) of {plan.gpu_memory_bytes / GIB:g} GiB",
        "",
    ]
    header = ("options", "weights", "lora", "grads", "optim", "w.copies", "activ.", "recomp.", "worksp.", "total", "")
    table = [header]
    for row in sorted(plan.rows, key=lambda r: (r.options.cost, r.parts.total)):
        p = row.parts
        values = (p.weights, p.lora, p.gradients, p.optimizer_states, p.weight_copies, p.activations, p.recompute,
                  p.workspace, p.total)  # fmt: skip
        table.append((row.options.describe(), *(f"{v / GIB:.1f}" for v in values), "fits" if row.fits else ""))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for cells in table:
        padded = [cell.rjust(width) for cell, width in zip(cells, widths, strict=True)]
        lines.append("  ".join([cells[0].ljust(widths[0]), *padded[1:]]).rstrip())
    lines.append(f"(GiB per GPU; total includes {CUDA_OVERHEAD_BYTES / GIB:g} GiB of CUDA context and fragmentation)")
    lines.append("")
    best = plan.best
    if best is None:
        smallest = min(plan.rows, key=lambda r: r.parts.total)
        lines.append(
            f"Nothing fits in {plan.gpu_memory_bytes / GIB:g} GiB: the smallest is "
            f"{smallest.parts.total / GIB:.1f} GiB ({smallest.options.describe()})."
        )
        frames = largest_fitting_frames(plan)
        if frames is not None:
            lines.append(f"With --num_frames {frames} (or a smaller size) a combination fits; or add GPUs.")
    else:
        lines.append(
            f"Recommended: {best.options.describe()} ({best.parts.total / GIB:.1f} GiB of "
            f"{plan.gpu_memory_bytes / GIB:g}):\n  {plan.command(best.options)}"
        )
    return "\n".join(lines)
