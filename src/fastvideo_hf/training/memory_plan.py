"""Will a training run fit on a GPU, and which memory savers does it need? An estimate without any weights.

The transformer is built from its config on the meta device (the family's ``meta_transformer``), so a 14B model is
counted in a second with no weight read; the public models whose configs are kept in the code come from the
families (``family.known_models``). Each part of the peak is a pure function of the parameter counts, the token
count and the options; ``plan`` evaluates every combination of the memory options of the training scripts.

What is exact and what is modelled:

- Parameters, gradients and optimizer states are counted from the real module tree: the trained model's weights
  (float32 master weights in a full finetune, as ``train_wan.py`` keeps them; the mixed-precision dtype for a LoRA's
  frozen base, fp8 for the layers diffusers' ``enable_layerwise_casting`` casts, found by running it on the meta
  model), the LoRA's float32 ``lora_A`` / ``lora_B`` of every matched Linear, float32 gradients, and AdamW's
  ``exp_avg`` and ``exp_avg_sq`` (its per-parameter ``step`` is a CPU scalar). The tests check these byte for byte
  against a real model and a real AdamW step.
- Activations are the tensors autograd saves for backward, derived term by term from the family's transformer block
  (its ``block_activation_bytes``) and checked against ``torch.autograd.graph``'s
  saved-tensor hooks on tiny models at two sizes (within 15%, measured within 7%). Those measurements run on the CPU,
  where RMSNorm saves a float32 copy of its input. On CUDA, when input and weight share a dtype (a LoRA's bf16 base,
  FSDP's bf16 parameters) and autocast leaves it alone, the fused RMSNorm may save the bf16 input instead: the
  estimate is then high by 6 bytes x hidden size per token and block (about 11% of a 14B LoRA block).
- The rest is modelled, and named as such in ``assumptions``: the backward workspace of one block, what diffusers'
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
from ..models import FAMILIES, family_of_index, family_of_transformer_class
from ..models.family import EXPERT_SLOTS, KnownModel, ModelFamily, has_component, transformer_blocks

GIB = 1024**3
CUDA_OVERHEAD_BYTES = GIB  # CUDA context, cuBLAS workspaces and allocator fragmentation: an assumption, not measured
COMPUTE_BYTES = {"bf16": 2, "fp16": 2, "no": 4}  # --mixed_precision -> bytes of the activations and frozen weights

WEIGHTS_ASSUMPTION = (
    "weights: full finetune keeps float32 master weights (train_wan.py) and AdamW; LoRA keeps the base in the "
    "mixed-precision dtype and the LoRA, its gradients and AdamW states in float32"
)
# what the estimate assumes beyond the weights and the family's activations (``assumptions`` joins them)
ASSUMPTIONS = (
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


def assumptions(family: ModelFamily) -> list[str]:
    """What the estimate of a ``family`` model assumes, one line each: the weights, the family's activation model,
    then ``ASSUMPTIONS``."""
    return [WEIGHTS_ASSUMPTION, family.activation_assumption, *ASSUMPTIONS]


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs from a model: its family, its transformer config and how its VAE maps pixels to
    latents."""

    family: ModelFamily = field(repr=False, compare=False)
    name: str
    config: dict
    experts: tuple[str, ...]
    vae_scale_spatial: int
    vae_scale_temporal: int = 4
    expand_timesteps: bool = False

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """The transformer's (t, h, w) patch, as its config records it (1x2x2 if the config omits it)."""
        return tuple(self.config.get("patch_size", (1, 2, 2)))


def known_model(name: str) -> tuple[ModelFamily, KnownModel] | None:
    """(its family, the kept config) of a public model, by short name or Hub id (case-insensitive)."""
    lowered = name.lower()
    for family in FAMILIES:
        for short, model in family.known_models.items():
            if lowered in (short, model.hub_id.lower()):
                return family, model
    return None


def resolve_model(name_or_path: str, revision: str | None = None) -> ModelShape:
    """The transformer config of a known public model, a local diffusers folder, or a Hub id in the local cache.

    Never reaches the network: ``plan`` must answer before anything is downloaded, so an id that is neither known nor
    cached is refused with what to run instead.
    """
    known = known_model(name_or_path)
    if known is not None:
        family, model = known
        return ModelShape(
            family,
            model.hub_id,
            model.config,
            model.experts,
            model.vae_scale_spatial,
            model.vae_scale_temporal,
            model.expand_timesteps,
        )
    folder = Path(name_or_path)
    if folder.is_dir():
        if not (folder / "model_index.json").is_file() and (folder / "config.json").is_file():
            # a transformer folder of its own (OUT/transformer of a full finetune): its VAE is the family's default
            config = _read_json(folder / "config.json")
            family = family_of_transformer_class(config.get("_class_name") or "a config.json without _class_name")
            return ModelShape(family, name_or_path, config, EXPERT_SLOTS[:1], *family.vae_scale_factors({}))
        read = lambda file, required: _read_local(folder, file, required)  # noqa: E731
    else:
        read = lambda file, required: _read_cached(name_or_path, file, revision, required)  # noqa: E731
    index = read("model_index.json", True)
    family = family_of_index(index, name_or_path)
    experts = tuple(slot for slot in EXPERT_SLOTS if has_component(index, slot))
    spatial, temporal = family.vae_scale_factors(read("vae/config.json", False) or {})
    return ModelShape(
        family,
        name_or_path,
        read("transformer/config.json", True),
        experts,
        spatial,
        temporal,
        bool(index.get("expand_timesteps")),
    )


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _read_local(folder: Path, file: str, required: bool) -> dict | None:
    if (folder / file).is_file():
        return _read_json(folder / file)
    if required:
        raise FileNotFoundError(f"{folder / file} not found: is {folder} a diffusers-format pipeline folder?")
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
    """The short names of every public model ``plan`` knows without a download, for messages."""
    return ", ".join(name for family in FAMILIES for name in family.known_models)


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
    parts, like ``training.model_loading.resolve_lora_targets``)."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and any(name == t or name.endswith(f".{t}") for t in targets)
    ]


def count_parameters(
    model: torch.nn.Module, lora_rank: int = 0, lora_targets: tuple[str, ...] = ()
) -> ParameterCounts:
    """Count the parameters of a (meta) transformer and of the LoRA that ``lora_rank`` / ``lora_targets`` add; its
    blocks are the modules of the classes diffusers lists in its ``_repeated_blocks``."""
    layer_types = layerwise_casting_layer_types()

    def numel(module: torch.nn.Module) -> int:
        return sum(param.numel() for param in module.parameters())

    layers = [m for m in model.modules() if isinstance(m, layer_types)]
    blocks = transformer_blocks(model)
    first_name, block = next(iter(blocks.items()))
    block_layers = [m for m in block.modules() if isinstance(m, layer_types)]
    fp8, fp8_block = _fp8_counts(model, block)
    targeted = lora_target_layers(model, lora_targets) if lora_rank else []
    modules = dict(model.named_modules())
    lora_sizes = {name: lora_rank * (modules[name].in_features + modules[name].out_features) for name in targeted}
    in_block = [name.removeprefix(f"{first_name}.") for name in targeted if name.startswith(f"{first_name}.")]
    per_block = numel(block)
    return ParameterCounts(
        total=numel(model),
        blocks=len(blocks),
        per_block=per_block,
        non_block=numel(model) - per_block * len(blocks),
        linear=sum(numel(m) for m in layers),
        linear_per_block=sum(numel(m) for m in block_layers),
        fp8=fp8,
        fp8_per_block=fp8_block,
        largest_layer=max(numel(m) for m in layers),
        lora=sum(lora_sizes.values()),
        lora_layers_per_block=tuple(in_block),
    )


def _fp8_counts(model: torch.nn.Module, first_block: torch.nn.Module) -> tuple[int, int]:
    """(parameters stored in fp8, of them in ``first_block``) when diffusers' ``enable_layerwise_casting`` runs on
    ``model``: run on the meta model itself (its skip patterns decide) and read back the dtypes; the model is left
    cast."""
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)

    def fp8(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters() if p.dtype == torch.float8_e4m3fn)

    return fp8(model), fp8(first_block)


@dataclass(frozen=True)
class TrainingSetup:
    """The run being planned, in the training scripts' terms."""

    mode: str  # "lora" or "full"
    height: int
    width: int
    num_frames: int
    train_batch_size: int = 1
    rank: int = 32
    lora_targets: tuple[str, ...] = ()  # empty: the model family's default targets (``make_plan`` fills them in)
    mixed_precision: str = "bf16"
    num_gpus: int = 1
    expert: str | None = None  # a two-expert model: "both" trains both experts (both in memory); else one


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
    """Tokens of one sample: latent frames ``(num_frames - 1) // temporal + 1`` and ``height / spatial`` x
    ``width / spatial`` latents (the VAE's compression: 4 and 8 for Wan2.1, 16 spatial for Wan2.2 TI2V-5B),
    patchified by the transformer's patch."""
    patch_t, patch_h, patch_w = model.patch_size
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
    activation = model.family.block_activation_bytes(
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
        if len(self.model.experts) > 1:  # the scripts need --expert for a two-expert model; high and low plan alike
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
    """Evaluate every option combination for ``setup`` on GPUs of ``gpu_memory_gib`` (a setup without LoRA targets
    takes the family's default ones)."""
    if setup.mode not in ("lora", "full"):
        raise ValueError(f"mode must be lora or full, got {setup.mode!r}")
    if setup.mixed_precision not in COMPUTE_BYTES:
        raise ValueError(f"mixed_precision must be one of {', '.join(COMPUTE_BYTES)}, got {setup.mixed_precision!r}")
    if not setup.lora_targets:
        setup = replace(setup, lora_targets=model.family.default_lora_targets)
    meta = model.family.meta_transformer(model.config)
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
    """When nothing fits: the most frames (``temporal * k + 1``, as the VAE takes them) that some combination fits,
    or None."""
    temporal = plan.model.vae_scale_temporal
    # the largest temporal * k + 1 under num_frames, whatever num_frames is
    below = (plan.setup.num_frames - 2) // temporal * temporal + 1
    for frames in range(below, 0, -temporal):
        smaller = replace(plan.setup, num_frames=frames)
        if any(
            estimate(plan.model, plan.counts, smaller, row.options).total <= plan.gpu_memory_bytes for row in plan.rows
        ):
            return frames
    return None
