"""The one way stage1 loads models, tokenizers and adapters.

- One ``BitsAndBytesConfig`` (nf4, double quantisation, bf16 compute) for every stage that quantises,
  so training, merging and evaluation agree on what "nf4" means.
- ``trust_remote_code`` is off unless a caller passes the user's explicit choice; weights load only
  from safetensors (``use_safetensors=True``), never from pickle files.
- No chat template: base models are trained and evaluated on the plain format, so a template that
  came with a tokenizer is removed on load and can never be applied by accident.
- eos is read from the tokenizer and checked against the model's generation config.
"""

from __future__ import annotations

import gc
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from stage1.core.errors import ConfigError, InputError, LineageError
from stage1.io.lineage import Lineage, check_parent, read_lineage
from stage1.io.plain import read_byte_range
from stage1.io.readers import read_json_file

log = logging.getLogger(__name__)

#: How a model's frozen weights are held: as they are, nf4 (QLoRA) or int8 (bitsandbytes). Defined once;
#: every settings section that loads a model uses this type.
Quantization = Literal["none", "nf4", "int8"]
QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)
DTYPES = ("float32", "bfloat16", "float16", "auto")

__all__ = [
    "EosInfo",
    "bnb_config",
    "check_quantization",
    "eos_info",
    "free_model",
    "load_adapter",
    "load_model",
    "load_tokenizer",
    "model_folder_problem",
    "read_lineage",
    "torch_dtype",
]


def torch_dtype(name: str):
    """``"bfloat16"`` → ``torch.bfloat16``; ``"auto"`` stays ``"auto"``.

    Raises:
        ConfigError: an unknown dtype name.
    """
    import torch

    if name == "auto":
        return "auto"
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}", field="training.dtype", hint=f"one of: {', '.join(DTYPES)}")
    return getattr(torch, name)


def bnb_config(quantization: str):
    """The project's only ``BitsAndBytesConfig``; None for ``"none"``.

    nf4 with double quantisation and bf16 compute is the QLoRA recipe (Dettmers et al. 2023,
    arXiv:2305.14314 §3); int8 is LLM.int8().

    Raises:
        ConfigError: an unknown quantization name.
    """
    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "none":
        return None
    if quantization == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ConfigError(
        f"unknown quantization {quantization!r}", field="training.quantization", hint=f"one of: {', '.join(QUANTIZATIONS)}"
    )


def load_model(
    path: str | Path,
    *,
    quantization: str = "none",
    dtype: str = "float32",
    device_map: Any = None,
    trust_remote_code: bool = False,
    low_cpu_mem_usage: bool = True,
):
    """Load a causal LM from a local folder of safetensors weights.

    A quantised model needs a device map; with none given it goes to the CPU (bitsandbytes 0.50
    runs nf4 and int8 there). Unquantised weights use ``dtype``; quantised ones keep their
    non-linear parts (embeddings, norms) in ``dtype`` as well.

    Raises:
        InputError: the folder is missing or holds no safetensors weights.
        ConfigError: unknown quantization or dtype.
    """
    from transformers import AutoModelForCausalLM

    folder = _model_folder(path)
    quantization_config = bnb_config(quantization)
    if quantization_config is not None and device_map is None:
        device_map = "cpu"
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        dtype=torch_dtype(dtype),
        quantization_config=quantization_config,
        device_map=device_map,
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
        low_cpu_mem_usage=low_cpu_mem_usage,
    )
    log.info("loaded %s (quantization=%s, dtype=%s, device_map=%s)", folder, quantization, dtype, device_map)
    return model


def _model_folder(path: str | Path) -> Path:
    folder = Path(path)
    problem = model_folder_problem(folder)
    if problem is not None:
        message, hint = problem
        raise InputError(message, path=folder, hint=hint)
    return folder


def model_folder_problem(folder: Path) -> tuple[str, str] | None:
    """Why ``folder`` cannot be loaded as a model, as (message, hint), or None when it can.

    A model folder holds a ``config.json`` with a ``model_type`` (transformers picks the class from
    it) and safetensors weights (stage1 loads no pickle files). A LoRA adapter folder
    (``adapter_config.json``) is named as such: it is the commonest wrong folder to pass.
    """
    if not folder.exists():
        return "model folder not found", "give a local folder with config.json and *.safetensors"
    if not folder.is_dir():
        return "is not a folder", "give the model's folder, not one of its files"
    config_file = folder / "config.json"
    if (folder / "adapter_config.json").is_file() and not config_file.is_file():
        return (
            "is a LoRA adapter folder (adapter_config.json), not a model",
            "point it at the base model, or merge the adapter first (stage1 merge) and use the merged folder",
        )
    if not config_file.exists() and not config_file.is_symlink():
        return "no config.json", "is this a Hugging Face model folder?"
    try:
        config = read_json_file(config_file)
    except InputError as error:
        return f"config.json: {error.describe()}", "re-download or re-save the model"
    if not isinstance(config, dict) or not config.get("model_type"):
        return "config.json has no model_type", "transformers needs it to pick the model class (Qwen2.5: \"qwen2\")"
    if "auto_map" in config:
        return (
            "config.json has an auto_map: the model asks to run its own code (remote code)",
            "stage1 loads only the architectures transformers ships; remove auto_map or use a plain Qwen2 checkpoint",
        )
    if config["model_type"] not in SUPPORTED_MODEL_TYPES:
        return (
            f"config.json says model_type {config['model_type']!r}; stage1 supports {', '.join(SUPPORTED_MODEL_TYPES)}",
            "the format, masking and memory plan are built and tested for Qwen2 / Qwen2.5 base models",
        )
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return (
            "no *.safetensors weights",
            "stage1 loads safetensors only; convert pickle (*.bin) weights with save_pretrained(safe_serialization=True)",
        )
    try:
        names = _tensor_names(folder, weights)
    except InputError as error:
        return error.describe(), "re-download or re-save the weights"
    signature = QWEN2_SIGNATURE_TENSOR
    if not any(name.endswith(signature) for name in names):
        return (
            f"the weights hold no '{signature}' tensor, which every Qwen2 checkpoint has: they are not Qwen2 weights "
            "although config.json says qwen2",
            "transformers would load them with those biases missing (randomly initialised); use the checkpoint's own config.json",
        )
    return None


#: ``model_type`` values stage1 loads (its format, masking, LoRA targets and memory plan are Qwen2's).
SUPPORTED_MODEL_TYPES = ("qwen2",)
#: A tensor every Qwen2 checkpoint has and Llama-style ones lack: Qwen2 puts biases on q/k/v.
QWEN2_SIGNATURE_TENSOR = "self_attn.q_proj.bias"
#: Largest safetensors JSON header read (the 32B model's headers are about 100 kB).
MAX_SAFETENSORS_HEADER = 100 * 2**20


def _tensor_names(folder: Path, weights: list[Path]) -> list[str]:
    """The tensor names of a folder's safetensors files, read from their JSON headers (no weights loaded).

    A sharded checkpoint's ``model.safetensors.index.json`` names every tensor; otherwise each file's
    header does (8 bytes little-endian length, then that many bytes of JSON).

    Raises:
        InputError: an empty or truncated file, a header that is not JSON, an unreadable index.
    """
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = read_json_file(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict):
            raise InputError("has no weight_map", path=index)
        return list(weight_map)
    names: list[str] = []
    for path in weights:
        head = read_byte_range(path, 0, 8)
        if len(head) < 8:
            raise InputError(f"is {len(head)} bytes: an empty or truncated safetensors file", path=path)
        length = int.from_bytes(head, "little")
        if length > MAX_SAFETENSORS_HEADER or length > path.stat().st_size - 8:
            raise InputError(f"not a safetensors file (its header claims {length:,} bytes)", path=path)
        try:
            header = json.loads(read_byte_range(path, 8, length))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise InputError("not a safetensors file (its header is not JSON)", path=path) from None
        if not isinstance(header, dict):
            raise InputError("not a safetensors file (its header is not a JSON object)", path=path)
        tensors = {name: value for name, value in header.items() if name != "__metadata__"}
        ends = [value.get("data_offsets", [0, 0])[-1] for value in tensors.values() if isinstance(value, dict)]
        expected = 8 + length + max((end for end in ends if isinstance(end, int)), default=0)
        if expected != path.stat().st_size:
            raise InputError(
                f"truncated or padded: its header describes {expected:,} bytes, the file holds {path.stat().st_size:,}", path=path
            )
        names.extend(tensors)
    return names


def load_tokenizer(path: str | Path, *, trust_remote_code: bool = False):
    """The tokenizer of a model folder, with any chat template removed; built once per process for
    each distinct set of tokenizer files (``stage1.hf.tokenizer_cache``).

    Raises:
        InputError: the folder is missing.
        ConfigError: the tokenizer has no eos token.
    """
    from stage1.hf.tokenizer_cache import cached_tokenizer

    if not Path(path).is_dir():
        # transformers would read a missing folder as a hub id and fail with an unrelated message
        raise InputError("model folder not found", path=path, hint="give a local folder with the tokenizer files")
    return cached_tokenizer(Path(path), trust_remote_code, lambda: _read_tokenizer(Path(path), trust_remote_code))


def _read_tokenizer(path: Path, trust_remote_code: bool):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no eos token", path=path, hint="Qwen2.5 base models use <|endoftext|>")
    tokenizer.chat_template = None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass(frozen=True)
class EosInfo:
    """The eos token the tokenizer uses; ``generation_eos_ids`` are the ids the model's generation stops on."""

    token: str
    token_id: int
    generation_eos_ids: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "token_id": self.token_id, "generation_eos_ids": list(self.generation_eos_ids)}


def eos_info(model, tokenizer) -> EosInfo:
    """Read eos from the tokenizer and the generation config and check they agree.

    Raises:
        ConfigError: the generation config does not stop on the tokenizer's eos.
    """
    token_id = int(tokenizer.eos_token_id)
    generation = getattr(model, "generation_config", None)
    configured = getattr(generation, "eos_token_id", None) if generation is not None else None
    if configured is None:
        configured = getattr(model.config, "eos_token_id", None)
    ids = tuple(int(i) for i in (configured if isinstance(configured, (list, tuple)) else [configured]) if i is not None)
    if token_id not in ids:
        raise ConfigError(
            f"the tokenizer's eos is {tokenizer.eos_token!r} (id {token_id}) but the model's generation config stops on {list(ids)}",
            field="eos_token_id",
            hint="a base model's tokenizer and generation_config.json must agree on eos",
        )
    return EosInfo(token=str(tokenizer.eos_token), token_id=token_id, generation_eos_ids=ids)


def check_quantization(recorded: str, requested: str, *, allow_mismatch: bool = False) -> bool:
    """Compare the quantisation a checkpoint was trained with to the one about to be used.

    Returns True when they match, False for an allowed mismatch.

    Raises:
        LineageError: a mismatch without ``allow_mismatch``.
    """
    for name in (recorded, requested):
        if name not in QUANTIZATIONS:
            raise ConfigError(f"unknown quantization {name!r}", hint=f"one of: {', '.join(QUANTIZATIONS)}")
    if recorded == requested:
        return True
    if not allow_mismatch:
        raise LineageError(
            f"the checkpoint was trained against quantization={recorded!r} but quantization={requested!r} was requested; "
            "a different quantisation is a different model. Use the recorded one, or allow the mismatch explicitly."
        )
    log.warning("quantization mismatch allowed: trained with %s, loading with %s", recorded, requested)
    return False


def load_adapter(model, adapter_dir: str | Path, *, expected_parent: str | Path | None = None, is_trainable: bool = False):
    """Wrap ``model`` with the adapter in ``adapter_dir`` after checking its lineage.

    ``expected_parent`` is the folder (or the weights hash) of the model being wrapped; when None,
    the folder ``model`` was loaded from (``model.name_or_path``) is used. PEFT wraps a model in
    place: the model passed in is no longer the plain base afterwards.

    Raises:
        LineageError: no lineage, or the adapter was made from other weights.
    """
    from peft import PeftModel

    lineage = read_lineage(adapter_dir)
    assert lineage is not None  # required=True raises instead
    _check_expected_parent(lineage, model, expected_parent)
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=is_trainable)


def _check_expected_parent(lineage: Lineage, model, expected_parent: str | Path | None) -> None:
    if expected_parent is None:
        source = getattr(model, "name_or_path", None)
        if not source or not Path(source).is_dir():
            raise LineageError(
                "cannot tell which weights this model holds; pass expected_parent=<model folder> to load_adapter"
            )
        expected_parent = source
    if isinstance(expected_parent, str) and len(expected_parent) == 64 and not Path(expected_parent).exists():
        if expected_parent != lineage.parent_hash:
            raise LineageError(
                f"the adapter was made from {lineage.parent_path} (weights {lineage.parent_hash[:12]}), "
                f"not from weights {expected_parent[:12]}"
            )
        return
    check_parent(lineage, expected_parent)


def free_model(model) -> None:
    """Release a model's memory now, even while other references to the object remain.

    Every parameter and buffer is replaced by an empty tensor (quantisation state included), so a
    4-bit model's GPU memory is returned even if a trainer or a PEFT wrapper still points at it.
    The model is unusable afterwards.
    """
    import torch

    for module in model.modules():
        for param in list(module._parameters.values()):
            if param is None:
                continue
            if hasattr(param, "quant_state"):
                param.quant_state = None
            param.data = torch.empty(0, dtype=param.dtype, device="cpu")
            param.grad = None
        for name, buffer in list(module._buffers.items()):
            if buffer is not None:
                module._buffers[name] = torch.empty(0, dtype=buffer.dtype, device="cpu")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
