"""Fitting larger text models on one device: LoRA adapters, activation checkpointing and bfloat16 weights.

:class:`MemoryConfig` says how a model is trained (all off by default: full fine-tuning in
float32, every activation kept) and :func:`prepare_model` makes a model ready by it:

- **LoRA** (Hu et al. 2021): the weights ``W`` stay frozen and a linear layer computes
  ``W x + (lora_alpha / r) * B A x`` with trainable ``A`` ``(r, in)`` and ``B`` ``(out, r)``,
  ``B`` starting at 0, so a freshly prepared model computes exactly what the base did.
  The model becomes a peft ``PeftModel`` (the adapters are put into the model in place);
  a reward model's ``score`` head trains as well (a trainable copy of it, peft's
  ``modules_to_save``).
- **The reference policy without a second copy**: with LoRA the base policy ``pi_base`` is
  the policy's own model with its adapters switched off (:class:`AdapterOffReference`,
  peft's ``disable_adapter``), exact because the base weights never train.
- **Activation checkpointing**: each decoder layer keeps only its input and recomputes
  the rest in the backward pass, for about one more forward pass of time. transformers
  drops the key/value cache in a checkpointed layer (the replay would write it twice), but
  only when gradients are on in training mode: sampling (under ``inference_mode``) and
  reference passes (``no_grad``) keep their cache, and a policy's training passes avoid
  the cache (:meth:`~rlhfkit.models.text.TextPolicy.sampled_logp` then scores whole
  sequences instead of sharing each prompt's cache).
- **bf16**: weights in bfloat16 (half the memory of float32). LoRA adapters stay in
  float32 (peft keeps them so), and log-probs are taken in float32 from bf16 logits.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.pytorch_utils import Conv1D

from rlhfkit.checks import fraction, non_negative, positive, require
from rlhfkit.models.text import ReferencePolicy, TextPolicy
from rlhfkit.models.text_batch import Prompt, TextBatch

if TYPE_CHECKING:
    from peft import PeftModel


@dataclass(frozen=True)
class MemoryConfig:
    """How a text model trains within less memory: LoRA adapters, activation checkpointing, bf16 (all off)."""

    lora_r: int = 0
    """LoRA rank: train rank-r adapters beside frozen weights (the base weights never change, and the reference
    policy is the same model with its adapters off, no second copy); 0 = full fine-tuning (every weight trains)."""
    lora_alpha: int = 16
    """LoRA scale: an adapter's update B A x is multiplied by lora_alpha / lora_r."""
    lora_dropout: float = 0.0
    """Dropout on an adapter's input while training. The reward model only: a policy runs without dropout, so
    that its sampled log-probs equal its training log-probs (text.policy_memory.lora_dropout must be 0)."""
    lora_targets: tuple[str, ...] = ()
    """Names of the linear layers that get adapters, e.g. ["q_proj", "v_proj"]; empty = every linear layer of the
    attention and MLP blocks (Llama, Qwen2, Mistral: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
    down_proj; GPT-2: c_attn, c_proj, c_fc), never the embeddings, the LM head or the reward head."""
    gradient_checkpointing: bool = False
    """Keep only each decoder layer's input and recompute its activations in the backward pass: less memory for
    about one more forward pass of time. Sampling still uses the key/value cache."""
    bf16: bool = False
    """Keep the model's weights in bfloat16 (LoRA adapters stay float32): half the memory. An error where the
    device cannot compute in bfloat16 (a CPU can; a GPU from before NVIDIA Ampere cannot)."""

    def __post_init__(self) -> None:
        require(
            self,
            {
                "lora_r": (non_negative, ">= 0 (0 = full fine-tuning)"),
                "lora_alpha": (positive, ">= 1"),
                "lora_dropout": (fraction, "in [0, 1)"),
                "lora_targets": (lambda t: not t or self.lora_r > 0, "empty when lora_r = 0 (no adapters)"),
            },
        )

    @property
    def active(self) -> bool:
        """Whether any option is on (off: a model is trained as it is)."""
        return self.lora_r > 0 or self.gradient_checkpointing or self.bf16


ModelTask = Literal["causal_lm", "seq_cls"]
"""What a prepared model is: a causal LM (a policy) or a sequence classifier (a reward model)."""


def check_bf16(device: torch.device, option: str) -> None:
    """Raise ``ValueError`` naming ``option`` where ``device`` cannot compute in bfloat16."""
    if device.type == "cpu":
        return
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported(including_emulation=False)
    else:
        try:
            x = torch.ones(2, 2, dtype=torch.bfloat16, device=device)
            ok = bool(torch.isfinite((x @ x).float()).all())
        except (RuntimeError, TypeError):
            ok = False
    if not ok:
        raise ValueError(f"{option} = true, but the device {device} cannot compute in bfloat16; set {option} = false")


def linear_layer_names(model: nn.Module) -> list[str]:
    """The last name of every linear layer (``nn.Linear`` or GPT-2's ``Conv1D``) except output heads, sorted.

    What :attr:`MemoryConfig.lora_targets` means when empty: the attention and MLP
    projections. The LM head (the output embeddings) and a classifier's ``score`` are left out.
    """
    heads: set[int] = {id(m) for m in (getattr(model, "score", None), getattr(model, "classifier", None)) if m}
    get_output = getattr(model, "get_output_embeddings", None)
    output = get_output() if callable(get_output) else None
    if output is not None:
        heads.add(id(output))
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear | Conv1D) and id(module) not in heads and name
    }
    return sorted(names)


def prepare_model(model: PreTrainedModel, config: MemoryConfig, task: ModelTask, option: str = "memory") -> Any:
    """``model`` made ready to train by ``config``; ``model`` itself when every option is off.

    In order: the weights to bfloat16 (:func:`check_bf16` first); activation checkpointing
    on, and the model put in training mode, since transformers checkpoints a layer only in
    training mode (and ``from_pretrained`` returns a model in eval mode; a text policy has
    its dropout off, so the mode changes nothing else); LoRA adapters last, returning a peft
    ``PeftModel`` (``task`` picks peft's causal-LM or sequence-classification wrapper, the
    latter training the ``score`` head too). ``option`` names the config section in errors,
    e.g. ``text.policy_memory``.

    The ``PeftModel`` forwards what :class:`~rlhfkit.models.text.TextPolicy` reads (``config``,
    ``device``, ``dtype``) to the model, and its ``forward`` passes position ids, caches and
    ``logits_to_keep`` through.
    """
    if config.bf16:
        check_bf16(model.device, f"{option}.bf16")
        model = model.to(dtype=torch.bfloat16)  # type: ignore[call-arg]  # transformers wraps `to`; mypy misreads the wrapper
    if config.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x; the old name warns
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable({"use_reentrant": False})
        model.train()
    if config.lora_r == 0:
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    available = linear_layer_names(model)
    targets = list(config.lora_targets) or available
    missing = [t for t in targets if t not in available]
    if missing:
        raise ValueError(
            f"{option}.lora_targets: {', '.join(missing)} is not a linear layer of this "
            f"{type(model).__name__}; its linear layers are {', '.join(available)}"
        )
    conv1d = any(isinstance(m, Conv1D) and n.rsplit(".", 1)[-1] in targets for n, m in model.named_modules())
    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM if task == "causal_lm" else TaskType.SEQ_CLS,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        fan_in_fan_out=conv1d,  # GPT-2's Conv1D stores its weight as (in, out)
    )
    with warnings.catch_warnings():  # peft reads transformers' old name for the checkpointing flag
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        return get_peft_model(model, lora)


def has_adapters(model: nn.Module) -> bool:
    """Whether ``model`` is a peft model (LoRA adapters that can be switched off)."""
    return callable(getattr(model, "disable_adapter", None)) and callable(getattr(model, "get_base_model", None))


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft model (its adapters in place); any other model as it is."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if has_adapters(model) and callable(get_base) else model


def merged(model: nn.Module) -> Any:
    """A peft model's adapters merged into its weights, as a plain transformers model to ``save_pretrained``.

    The merge is in place (the adapters are gone afterwards); any other model is returned as it is.
    """
    merge = getattr(model, "merge_and_unload", None)
    return merge() if has_adapters(model) and callable(merge) else model


def trainable_share(module: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (a reward head's frozen original included in the total)."""
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


class AdapterOffReference:
    """pi_base of a LoRA policy: the policy's own model with its adapters switched off, without gradients.

    The adapters' base weights are frozen, so switching the adapters off gives the base
    model's log-probs at every step of training, with no second copy of the model. It offers
    what the trainers ask of a reference (:class:`~rlhfkit.models.text.ReferencePolicy`:
    ``sampled_logp`` for RLOO/GRPO/PPO and evaluation, ``completion_logprobs`` for DPO).
    It never trains: ``train``/``eval`` leave the policy's mode alone. While one of its
    passes runs the policy itself reads as the base; nothing here runs two at once.
    """

    training = False

    def __init__(self, policy: TextPolicy) -> None:
        if not has_adapters(policy.model):
            raise TypeError("AdapterOffReference needs a policy with LoRA adapters (prepare_model with lora_r >= 1)")
        self.policy = policy

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.policy.tokenizer

    @property
    def pad_token_id(self) -> int:
        return self.policy.pad_token_id

    @property
    def device(self) -> torch.device:
        return self.policy.device

    @contextlib.contextmanager
    def _adapters_off(self) -> Iterator[None]:
        model: PeftModel = self.policy.model  # type: ignore[assignment]  # has_adapters checked it in __init__
        with torch.no_grad(), model.disable_adapter():
            yield

    def completion_logprobs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_len: int,
        prompt_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`TextPolicy.completion_logprobs <rlhfkit.models.text.TextPolicy.completion_logprobs>` of the base."""
        with self._adapters_off():
            return self.policy.completion_logprobs(input_ids, attention_mask, prompt_len, prompt_index)

    def generate(
        self, prompts: Sequence[Prompt], max_new_tokens: int, n_per_prompt: int = 1, seed: int | None = None
    ) -> TextBatch:
        """Completions sampled from the base (adapters off), as :meth:`TextPolicy.generate
        <rlhfkit.models.text.TextPolicy.generate>` samples them."""
        with self._adapters_off():
            return self.policy.generate(prompts, max_new_tokens, n_per_prompt, seed)

    def sampled_logp(self, batch: TextBatch) -> torch.Tensor:
        """``(B, T)`` log-probs of the batch's completion tokens under the base (adapters off)."""
        with self._adapters_off():
            return self.policy.sampled_logp(batch)

    def train(self, mode: bool = True) -> AdapterOffReference:
        return self

    def eval(self) -> AdapterOffReference:
        return self


def reference_policy(policy: TextPolicy) -> ReferencePolicy:
    """pi_ref for ``policy`` as it is now: its adapters switched off (a LoRA policy) or a frozen copy."""
    return AdapterOffReference(policy) if has_adapters(policy.model) else policy.frozen_copy()
