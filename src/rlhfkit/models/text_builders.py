"""Building and loading causal language models and their tokenizers.

For tests and demos, :func:`train_tiny_tokenizer`, :func:`tiny_gpt2` and :func:`tiny_llama_like` build a
small byte-level BPE tokenizer and a GPT-2, Llama, Qwen2 or Mistral from scratch (nothing is downloaded);
:func:`load_causal_lm` loads any model and tokenizer saved with ``save_pretrained``
and names what a folder lacks (:class:`ModelFolderError`); :func:`reward_model_config`
shapes a one-output reward model like a given language model.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

ModelT = TypeVar("ModelT", bound=PreTrainedModel)
ConfigT = TypeVar("ConfigT", bound=PretrainedConfig)

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{ raise_exception('unknown chat role ' ~ message['role'] ~ ': expected system, user or assistant') }}"
    "{%- endif -%}"
    "{{ '<|' ~ message['role'] ~ '|>\\n' ~ message['content'] }}"
    "{%- if message['role'] == 'assistant' -%}{{ '" + EOS_TOKEN + "' }}{%- endif -%}"
    "{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)
"""Renders ``[{"role": "user", "content": "hi"}]`` as ``"<|user|>\\nhi\\n"``; an assistant
turn ends with ``<|endoftext|>`` (what a sampled completion ends with), and
``add_generation_prompt`` appends ``"<|assistant|>\\n"``."""


class ModelFolderError(ValueError):
    """A folder given as a saved model lacks the model or the tokenizer (or cannot be loaded)."""


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts``, ready for a chat model.

    Every byte is in the vocabulary (no unknown tokens); ``<|endoftext|>`` is the
    eos (and bos) token, ``<|pad|>`` the pad token, ``<|system|>``, ``<|user|>`` and
    ``<|assistant|>`` mark chat turns (see :data:`CHAT_TEMPLATE`). Padding is on
    the left, as batched sampling needs. Save it with ``save_pretrained``.
    """
    specials = [EOS_TOKEN, PAD_TOKEN, *ROLE_TOKENS]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(specials):
        raise ValueError(
            f"vocab_size must be >= {len(alphabet) + len(specials)} (256 bytes + specials), got {vocab_size}"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=list(ROLE_TOKENS),
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )


def tiny_gpt2(
    tokenizer: PreTrainedTokenizerBase,
    n_layer: int = 2,
    n_embd: int = 128,
    n_head: int = 4,
    n_positions: int = 256,
    seed: int = 0,
) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 sized to ``tokenizer`` (seeded; dropout off).

    Vocabulary size and the bos/eos/pad ids come from the tokenizer; the
    global torch RNG is left as it was.
    """
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return _with_causal_lm_loss(model)


LLAMA_LIKE = ("llama", "qwen2", "mistral")
"""The families :func:`tiny_llama_like` builds: rotary positions, grouped-query attention, a gated MLP."""


def tiny_llama_like(
    family: str,
    tokenizer: PreTrainedTokenizerBase,
    width: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    positions: int = 128,
    seed: int = 0,
    **config: Any,
) -> PreTrainedModel:
    """A freshly initialised Llama, Qwen2 or Mistral causal LM sized to ``tokenizer`` (seeded).

    The MLP is ``2 * width`` wide; ``kv_heads < heads`` gives grouped-query attention. Vocabulary size and the
    bos/eos ids come from the tokenizer; ``config`` sets any other field (e.g. ``initializer_range``,
    ``pad_token_id``). The global torch RNG is left as it was.
    """
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    classes: dict[str, tuple[Any, Any]] = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
    }
    if family not in classes:
        raise ValueError(f"family {family!r}: expected one of {', '.join(LLAMA_LIKE)}")
    config_class, model_class = classes[family]
    model_config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **config,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: PreTrainedModel = model_class(model_config)
    return model


def _with_causal_lm_loss(model: ModelT) -> ModelT:
    """Name the model's loss as next-token cross-entropy, which it is.

    transformers picks a model's loss from its class name; ``GPT2LMHeadModel`` matches
    none, so a forward pass with ``labels`` warns "loss_type=None ... unrecognized"
    (once per process) before using this same loss.
    """
    if getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"
    return model


_WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_causal_lm(path: str | os.PathLike[str]) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``(model, tokenizer)`` from a folder written by their ``save_pretrained``.

    Only local files are read (never the Hub). Raises :class:`ModelFolderError`,
    naming the folder and what is missing, when it holds no model (``config.json``
    and weights) or no tokenizer, or when loading them fails.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: not a folder (expected one written by save_pretrained)")
    names = {p.name for p in folder.iterdir()}
    missing = []
    if "config.json" not in names or not any(n.endswith(_WEIGHT_SUFFIXES) for n in names):
        missing.append("a model (config.json and *.safetensors weights)")
    if not any(n in names for n in _TOKENIZER_FILES):
        missing.append("a tokenizer (tokenizer.json / tokenizer_config.json)")
    if missing:
        found = ", ".join(sorted(names)) or "nothing"
        raise ModelFolderError(
            f"{folder}: no saved causal LM here: missing {' and '.join(missing)}; found {found}. "
            "Save both with model.save_pretrained(folder) and tokenizer.save_pretrained(folder)."
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ModelFolderError(f"{folder}: could not load the saved causal LM: {e}") from e
    return _with_causal_lm_loss(model), tokenizer


def reward_model_config(lm_config: ConfigT) -> ConfigT:
    """The config of a one-output sequence classifier (a reward model) shaped like the LM of ``lm_config``.

    A copy with ``num_labels`` set (its setter remakes the label maps): building the config
    anew with ``num_labels=1`` beside the LM's default two-label ``id2label`` makes
    transformers warn that the two are incompatible.
    """
    config = copy.deepcopy(lm_config)
    config.num_labels = 1
    return config
