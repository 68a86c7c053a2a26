"""The numbers of a Qwen2 architecture that memory depends on, read from a config.json-style file.

``ModelShape`` counts parameters exactly (``count_parameters_on_meta`` checks the count against
transformers' own model built on the meta device); ``stage1.hf.memory_estimate`` turns a shape and a
stage's knobs into GiB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stage1.core.errors import ConfigError, InputError
from stage1.io.plain import read_json
from stage1.io.readers import read_json_file


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a Qwen2 config.json that memory depends on."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str = "config") -> ModelShape:
        """Raises: ConfigError naming a missing key."""
        needed = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        for key in needed:
            if key not in config:
                raise ConfigError(f"architecture lacks '{key}'", path=source, field=key)
        heads = int(config["num_attention_heads"])
        return cls(
            hidden_size=int(config["hidden_size"]),
            intermediate_size=int(config["intermediate_size"]),
            num_hidden_layers=int(config["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or int(config["hidden_size"]) // heads),
            vocab_size=int(config["vocab_size"]),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        )

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def projection_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear projection in one decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim), "o_proj": (self.q_dim, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
        }

    def linear_parameters(self) -> int:
        """Weights of the decoder projections (what bitsandbytes quantises)."""
        return self.num_hidden_layers * sum(a * b for a, b in self.projection_shapes().values())

    def other_parameters(self) -> int:
        """Embeddings, lm_head (when untied), norms and the q/k/v biases: kept in 16-bit."""
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        per_layer = 2 * self.hidden_size + self.q_dim + 2 * self.kv_dim  # two norms + q/k/v biases
        return embeddings + self.num_hidden_layers * per_layer + self.hidden_size

    def parameter_count(self) -> int:
        """Exact parameter count of Qwen2ForCausalLM with this shape."""
        return self.linear_parameters() + self.other_parameters()

    def lora_parameters(self, r: int, targets: tuple[str, ...]) -> int:
        shapes = self.projection_shapes()
        unknown = [t for t in targets if t not in shapes]
        if unknown:
            raise ConfigError(f"unknown LoRA target(s) {unknown}", field="lora.target_modules", hint=f"one of {sorted(shapes)}")
        return self.num_hidden_layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)

    def activation_values_per_token_layer(self) -> int:
        """Values one decoder layer keeps for backward per token (attention via SDPA/flash: no s^2 term)."""
        return 8 * self.hidden_size + 2 * self.kv_dim + 4 * self.intermediate_size


def read_architecture(path: str | Path) -> ModelShape:
    """A ModelShape from a config.json-style file.

    Raises:
        ConfigError: missing file, invalid JSON, or a missing key.
    """
    source = Path(path)
    if not source.exists() and not source.is_symlink():
        raise ConfigError("architecture file not found", path=source, field="model.architecture")
    try:
        data = read_json_file(source)
    except InputError as error:
        raise ConfigError(error.message, path=source, line=error.line, field="model.architecture", hint=error.hint) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object (a config.json)", path=source, field="model.architecture")
    return ModelShape.from_config(data, source=str(source))


def count_parameters_on_meta(path: str | Path) -> int:
    """Instantiate Qwen2ForCausalLM from an architecture file on the meta device (no weights) and count."""
    from accelerate import init_empty_weights
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**read_json(path))
    with init_empty_weights():
        model = Qwen2ForCausalLM(config)
    return sum(p.numel() for p in model.parameters())
