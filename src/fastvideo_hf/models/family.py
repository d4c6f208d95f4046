"""What every model family tells the rest of fastvideo-hf, and the facts of one model folder.

Preprocessing, training, generation, ``plan`` and VSA are written once, for any family: they ask a ``ModelFamily``
(one module per family under ``models/``) for what differs between families, and read the ``ModelSpec`` it gives
for one model folder. A family answers five kinds of question:

- **what the model is**: which ``model_index.json`` ``_class_name`` it reads, and the facts of a folder (latent
  channels, VAE compression and normalisation, patch size, text length, tasks, experts): ``read_spec``;
- **preprocessing**: the prompt, video and image-conditioning encoders, each computing exactly what the family's
  pipeline feeds its transformer at inference;
- **training**: the transformer class, the transformer call of a training step (noisy latents plus conditioning to
  the prediction, with its loss mask), two experts as one module, the default LoRA targets;
- **outputs**: the diffusers pipeline class that validation, ``generate`` and LoRA files use, the original /
  ComfyUI LoRA key names, the usage lines of a model card;
- **sizes and attention**: the public models ``plan`` knows, the activation bytes of one block, and where VSA
  goes (the self-attentions, their q/k/v, the token grid).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from PIL import Image

EXPERT_SLOTS = ("transformer", "transformer_2")  # a two-expert model's pipeline slots: high noise, then low


@dataclass(frozen=True)
class ModelSpec:
    """The facts of one diffusers model folder (or Hub id) that training and preprocessing depend on; read from its
    configs, no weight loaded. ``family`` answers everything that is not a plain fact."""

    family: ModelFamily = field(repr=False, compare=False)
    pipeline_class: str
    tasks: tuple[str, ...]  # what its transformer trains: ("t2v",), ("i2v",) or both
    latent_channels: int
    vae_scale_factor_temporal: int
    vae_scale_factor_spatial: int
    latents_mean: list[float]
    latents_std: list[float]
    vae_class: str
    text_encoder_class: str
    text_dim: int  # width of the prompt embeddings the transformer takes
    prompt_embedding_dim: int  # width of the prompt embeddings the text encoder makes (what a dataset stores)
    max_sequence_length: int  # prompt tokens the pipeline encodes (and pads to)
    patch_size: tuple[int, int, int] = (1, 1, 1)  # the transformer's (t, h, w) patch; (1, 1, 1) without one
    in_channels: int | None = None  # None for a folder without a transformer (preprocessing only)
    out_channels: int | None = None
    image_dim: int | None = None  # image-embedding width when the transformer takes one (Wan2.1 I2V's CLIP)
    expand_timesteps: bool = False  # one timestep per token (Wan2.2 TI2V): the conditioning frame kept clean
    boundary_ratio: float | None = None  # two experts: timesteps >= ratio * 1000 go to the high-noise one
    has_image_encoder: bool = False  # the pipeline folder holds an image encoder (its image-to-video features)

    @property
    def has_experts(self) -> bool:
        return self.boundary_ratio is not None

    @property
    def spatial_multiple(self) -> tuple[int, int]:
        """What height and width must be multiples of: the VAE's downsampling times the transformer's patch."""
        return self.vae_scale_factor_spatial * self.patch_size[1], self.vae_scale_factor_spatial * self.patch_size[2]

    def latent_shape(self, num_frames: int, height: int, width: int) -> list[int]:
        """``[C, T, H, W]`` of the latents of ``num_frames`` frames of ``height`` x ``width`` pixels."""
        spatial, temporal = self.vae_scale_factor_spatial, self.vae_scale_factor_temporal
        return [self.latent_channels, (num_frames - 1) // temporal + 1, height // spatial, width // spatial]

    def takes_frames(self, num_frames: int) -> bool:
        """Whether the VAE takes ``num_frames`` as is: ``temporal * k + 1`` frames (1 is an image)."""
        return num_frames >= 1 and (num_frames - 1) % self.vae_scale_factor_temporal == 0

    def sigma_range(self, expert: str | None) -> tuple[float, float]:
        """The sigmas an expert sees: high noise at or above the boundary, low noise below it."""
        if expert is None or (expert == "both" and self.has_experts):
            return 0.0, 1.0
        if not self.has_experts:
            raise ValueError("--expert is only for two-expert models (Wan2.2 A14B); this model has one transformer")
        return (self.boundary_ratio, 1.0) if expert == "high" else (0.0, self.boundary_ratio)


@dataclass(frozen=True)
class KnownModel:
    """A public model whose transformer config ``plan`` keeps, so it answers without any download."""

    hub_id: str
    config: dict  # the transformer's config.json
    experts: tuple[str, ...] = ("transformer",)
    vae_scale_spatial: int = 8
    vae_scale_temporal: int = 4
    expand_timesteps: bool = False


@dataclass(frozen=True)
class ActivationBytes:
    """Saved-for-backward bytes of one forward, per process, as a family's ``block_activation_bytes`` counts them:
    ``per_block`` for a block the gradient flows into, ``block_input`` what checkpointing keeps per block,
    ``outside`` the rest (embeddings, head, loss, RoPE), ``first_block_saving`` what block 0 saves less when no
    gradient reaches its input (a LoRA's frozen patch embedding), ``held_once`` what checkpointing holds once as an
    input of every block and no layer saves (the context tokens, per-token modulations), ``workspace`` the backward
    temporaries of one block at its peak."""

    per_block: int
    block_input: int
    outside: int
    first_block_saving: int
    held_once: int
    workspace: int

    def retained(self, blocks: int, checkpointing: bool) -> int:
        """The activations alive at the start of backward."""
        if checkpointing:
            return blocks * self.block_input + self.outside + self.held_once
        return blocks * self.per_block - self.first_block_saving + self.outside


@dataclass
class TransformerCall:
    """The transformer inputs of one training step, built as the family's pipeline builds them at inference."""

    hidden_states: torch.Tensor
    timestep: torch.Tensor
    encoder_hidden_states: torch.Tensor
    extra: dict[str, torch.Tensor | None] = field(default_factory=dict)  # family-specific inputs (image embeddings)
    loss_mask: torch.Tensor | None = None  # [B, 1, T, H, W], 1 where the prediction is trained

    def run(self, transformer: torch.nn.Module, dtype: torch.dtype) -> torch.Tensor:
        """The prediction ``[B, C, T, H, W]``; floating inputs in ``dtype``, timesteps as built."""
        extra = {key: None if value is None else value.to(dtype) for key, value in self.extra.items()}
        return transformer(
            hidden_states=self.hidden_states.to(dtype),
            timestep=self.timestep,
            encoder_hidden_states=self.encoder_hidden_states.to(dtype),
            **extra,
            return_dict=False,
        )[0]


class PromptEncoder(Protocol):
    """Prompt embeddings exactly as the family's pipeline computes them."""

    max_sequence_length: int

    def __call__(self, captions: list[str]) -> list[torch.Tensor]:
        """``[L_i, D]`` per caption, trimmed to its real token count."""

    def truncates(self, caption: str) -> bool:
        """Whether the pipeline cuts ``caption`` to ``max_sequence_length`` tokens."""


class VideoEncoder(Protocol):
    """The family's VAE encoder: ``vae`` is the diffusers autoencoder (image conditioning shares it)."""

    vae: torch.nn.Module

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """Posterior mean ``[C, T', H', W']`` (not normalised) of pixels ``[3, T, H, W]`` in [-1, 1]."""


class ImageConditionEncoder(Protocol):
    """The image-to-video conditioning of the first frame, as the family's image-to-video pipeline computes it."""

    def __call__(self, image: Image.Image, num_frames: int) -> dict[str, torch.Tensor | None]:
        """Tensor per Parquet column name (``first_frame_latent``, ``clip_feature``; None when the model has none)."""


class ModelFamily(ABC):
    """One family of video models (Wan, LTX-2, ...): everything the family-agnostic code asks about it.

    Subclasses are stateless singletons registered in ``models/__init__.py``; heavy imports (diffusers classes,
    transformers encoders) happen inside the methods, so reading the registry loads no model code.
    """

    name: str  # short id: the dataset card's tag, the tracker's project (wan-lora), the model card's tag
    title: str  # as users write it, in messages and card titles
    pipeline_classes: tuple[str, ...]  # the ``model_index.json`` ``_class_name`` values of this family
    transformer_classes: tuple[str, ...]  # the diffusers transformer class names (for VSA, ``inspect``, plan)
    default_lora_targets: tuple[str, ...]  # ``--lora_target_modules`` when none is given
    # the transformer's timestep of a sigma is ``sigma * timestep_scale``, as the pipeline passes its scheduler's
    timestep_scale: float
    known_models: dict[str, KnownModel]  # short name -> public model, for ``plan``

    def recognises(self, index: dict[str, Any]) -> bool:
        """Whether a pipeline's ``model_index.json`` is one of this family's: its class, or else its transformer's
        (FastVideo publishes Wan models under its own pipeline classes, e.g. ``WanDMDPipeline``, with diffusers'
        Wan transformer)."""
        transformer = index.get("transformer") or [None, None]
        return index.get("_class_name") in self.pipeline_classes or transformer[-1] in self.transformer_classes

    # -- what the model is ------------------------------------------------------------------------------------

    @abstractmethod
    def read_spec(self, model: str, revision: str | None, index: dict[str, Any]) -> ModelSpec:
        """The facts of the folder or Hub id ``model`` whose ``model_index.json`` is ``index``; configs only."""

    @abstractmethod
    def vae_scale_factors(self, vae_config: dict[str, Any]) -> tuple[int, int]:
        """(spatial, temporal) compression of the family's VAE from its ``config.json`` alone (all ``plan`` reads of
        a folder), with the VAE class's defaults for what the config leaves out (``{}``: a transformer folder)."""

    def frame_rule(self, spec: ModelSpec) -> str:
        """How users are told the frame counts the VAE takes (e.g. ``4k+1``)."""
        return f"{spec.vae_scale_factor_temporal}k+1"

    # -- preprocessing ----------------------------------------------------------------------------------------

    @abstractmethod
    def prompt_encoder(self, model: str, revision: str | None, device, dtype: torch.dtype) -> PromptEncoder: ...

    @abstractmethod
    def video_encoder(self, model: str, revision: str | None, device, dtype: torch.dtype) -> VideoEncoder: ...

    @abstractmethod
    def image_condition_encoder(
        self, model: str, video_encoder: VideoEncoder, revision: str | None, device, dtype: torch.dtype
    ) -> ImageConditionEncoder: ...

    # -- training ---------------------------------------------------------------------------------------------

    @abstractmethod
    def load_transformer(self, model: str, slot: str, revision: str | None, dtype: torch.dtype) -> torch.nn.Module:
        """The transformer of pipeline slot ``slot`` through ``from_pretrained``, in ``dtype`` (the modules the
        family keeps in float32 stay so, as its pipeline runs them)."""

    @abstractmethod
    def transformer_from_folder(
        self, folder: str, subfolder: str | None = None, dtype: torch.dtype | None = None
    ) -> torch.nn.Module:
        """A trained transformer saved with ``save_pretrained`` (``OUT/transformer`` of a full finetune), in ``dtype``
        (None: as saved)."""

    @abstractmethod
    def meta_transformer(self, config: dict) -> torch.nn.Module:
        """The transformer of ``config`` with every parameter on the meta device: its shapes, no memory."""

    @abstractmethod
    def combine_experts(self, high: torch.nn.Module, low: torch.nn.Module, boundary_ratio: float) -> torch.nn.Module:
        """Both experts as one module that routes each sample by its timestep (``--expert both``)."""

    @abstractmethod
    def transformer_call(
        self,
        spec: ModelSpec,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_embeds: torch.Tensor,
        conditioning: dict[str, torch.Tensor],
    ) -> TransformerCall:
        """The transformer inputs for noisy latents ``[B, C, T, H, W]`` at per-sample ``timesteps`` ``[B]``
        (``sigma * 1000``); ``conditioning`` holds the batch's image-to-video columns."""

    # -- outputs ----------------------------------------------------------------------------------------------

    @abstractmethod
    def pipeline_class(self, task: str) -> type:
        """The stock diffusers pipeline of ``task`` (validation, ``generate``, LoRA files)."""

    @abstractmethod
    def original_lora_key(self, module_name: str) -> tuple[str, bool]:
        """(the original / ComfyUI module name of a diffusers module name, whether its LoRA carries an ``.alpha``);
        ``ValueError`` for a module with no original name."""

    comfy_key_prefix: str = "diffusion_model."
    comfy_base_model_format: str  # the ``base_model_format`` of the ComfyUI file's header

    @abstractmethod
    def usage_snippet(self, base_model: str, repo_id: str, lora: bool, prompt: str = "a video") -> str:
        """The Python lines of a model card that load the trained output with the stock pipeline and sample
        ``prompt``."""

    # -- sizes and attention ----------------------------------------------------------------------------------

    activation_assumption: str  # how ``block_activation_bytes`` counts a block: one line of ``plan``'s assumptions

    @abstractmethod
    def block_activation_bytes(
        self,
        config: dict,
        tokens: int,
        mode: str,
        compute_bytes: int,
        lora_rank: int,
        lora_layers: tuple[str, ...],
        peft_casts_input: bool,
        per_token_modulation: bool,
    ) -> ActivationBytes:
        """What autograd saves for one sample of ``tokens`` video tokens in one block of ``config``."""

    @abstractmethod
    def vsa_attentions(self, transformer: torch.nn.Module) -> list[torch.nn.Module]:
        """The video self-attention modules VSA replaces (cross-attention stays dense)."""

    @abstractmethod
    def vsa_qkv(self, attn: torch.nn.Module, hidden_states: torch.Tensor, rotary_emb) -> tuple[torch.Tensor, ...]:
        """q, k, v ``[B, S, H, D]`` of a self-attention, normalised and rotated as the family's processor does."""

    @abstractmethod
    def token_grid(self, transformer: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[int, int, int]:
        """(frames, height, width) of the patchified token grid of a transformer call with ``args`` / ``kwargs``."""


def expert_modules(model: torch.nn.Module, slot: str = "transformer") -> dict[str, torch.nn.Module]:
    """The pipeline slots a trained model fills: every expert of one ``combine_experts`` made (its
    ``experts_by_slot``), else ``{slot: model}``."""
    experts = getattr(model, "experts_by_slot", None)
    return dict(experts) if experts is not None else {slot: model}


def transformer_blocks(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The transformer blocks of a diffusers transformer by module name, in order: the modules of the classes its
    ``_repeated_blocks`` lists (the blocks diffusers compiles and offloads one at a time); empty if it lists none."""
    classes = set(getattr(model, "_repeated_blocks", ()))
    return {name: module for name, module in model.named_modules() if type(module).__name__ in classes}


def model_index(model: str, revision: str | None = None) -> dict[str, Any]:
    """A pipeline's ``model_index.json``: its class, which components exist (image encoder, second expert), flags."""
    from diffusers import DiffusionPipeline

    return dict(DiffusionPipeline.load_config(model, revision=revision))


def has_component(index: dict[str, Any], name: str) -> bool:
    """Whether a pipeline's ``model_index.json`` holds component ``name`` (an entry ``[library, class]``)."""
    return bool(index.get(name)) and index[name][0] is not None
