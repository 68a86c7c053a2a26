"""Generation without a model: the decoding settings, the ``Generation`` record, reading generated ids
back into it, and which prompts are decoded together (pure: no framework, no file).

Both backends (``stage1.hf.generation``'s transformers backend and ``stage1.hf.vllm_backend``) decode
through these, and the generation journal (``stage1.io.journal``) stores and reads back ``Generation``
records keyed by the same settings, so none of them depends on another to know what a generation is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stage1.core.errors import ConfigError
from stage1.core.format import STOP_END, STOP_EOS, is_end_line, parse_completion, render_example, render_prompt
from stage1.core.masking import encode_text
from stage1.core.seeds import row_seed


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings shared by both backends."""

    max_new_tokens: int = 48  # generated tokens at most, per prompt
    batch_size: int = 16  # prompts decoded together (left-padded)
    do_sample: bool = False  # False: greedy; True: seeded sampling with temperature and top_p
    temperature: float = 0.7  # sampling temperature (do_sample only)
    top_p: float = 0.9  # nucleus sampling mass (do_sample only)
    seed: int = 0  # sampling: each row draws from its own generator, seeded by (seed, row key)

    def __post_init__(self) -> None:
        checks = {
            "max_new_tokens": self.max_new_tokens >= 1,
            "batch_size": self.batch_size >= 1,
            "temperature": self.temperature > 0.0,
            "top_p": 0.0 < self.top_p <= 1.0,
        }
        refuse_invalid(self, checks, "generation", _HINTS)


def refuse_invalid(settings: Any, checks: dict[str, bool], section: str, hints: dict[str, str]) -> None:
    """Raise ``ConfigError`` for the first setting whose check failed, naming ``section.name``."""
    for name, ok in checks.items():
        if not ok:
            raise ConfigError(f"invalid value {getattr(settings, name)!r}", field=f"{section}.{name}", hint=hints[name])


_HINTS = {
    "max_new_tokens": "at least 1",
    "batch_size": "at least 1",
    "temperature": "greater than 0 (use do_sample: false for greedy)",
    "top_p": "in (0, 1]",
}


@dataclass(frozen=True)
class Generation:
    """One prompt's generation, read back.

    ``completion_text`` is the raw decoded text after the prompt (special tokens removed), before
    any cleaning; ``runaway`` is measured on it. ``num_tokens`` counts the generated tokens up to
    the stop (the eos included when the model ended with eos).
    """

    prompt: str
    completion_text: str
    response: str
    stop_reason: str
    stopped: bool
    runaway: bool
    num_tokens: int


# ---------------------------------------------------------------- prompts and reading back


def build_fewshot_prompt(exemplars: Sequence[tuple[str, str]], instruction: str) -> str:
    """Exemplars rendered in the plain format, blank-line separated, then the open prompt.

    No chat template: the base model sees exactly the format it will be trained on.

    Raises:
        FormatError: an exemplar or the instruction is refused by the format.
    """
    shots = [render_example(shot_instruction, shot_response) for shot_instruction, shot_response in exemplars]
    return "\n\n".join([*shots, render_prompt(instruction)])


def read_generation(
    prompt: str, new_ids: Sequence[int], decode, end_ids: set[int], *, finished_by_eos: bool | None = None
) -> Generation:
    """Turn the ids generated after ``prompt`` into a ``Generation``.

    The ids are cut at the first id in ``end_ids`` (eos, or the padding a finished row gets); the
    text is decoded from the kept ids, never sliced out of a decoded prompt+completion string
    (the tokenizer normalises to NFC, which changes character counts).

    Padding is not told from eos by its id (Qwen pads with eos), nor by position (``generate``
    does not say at which step a stop string fired). It need not be: every ``STOP_STRINGS`` entry
    makes ``parse_completion`` end on an ``END`` line or a runaway before ``finished_by_eos`` is
    looked at, so a row stopped by a stop string reads as ``end`` or ``runaway`` whatever follows
    it, and a row that reads as ``eos`` really wrote eos (``test_format`` checks this property).

    Args:
        decode: ``ids -> str`` with special tokens removed.
        finished_by_eos: whether the row ended with eos; by default, whether an end id was found.
    """
    ids = list(new_ids)
    cut = next((i for i, token in enumerate(ids) if token in end_ids), len(ids))
    if finished_by_eos is None:
        finished_by_eos = cut < len(ids)
    text = decode(ids[:cut])
    parsed = parse_completion(text, finished_by_eos=finished_by_eos)
    if parsed.stop_reason == STOP_END and not finished_by_eos and ends_with_open_end_line(text):
        # Cut by the token limit right after "END": nothing after it (a newline, eos) shows that END
        # was a whole line rather than the start of "ENDING", so the row did not stop.
        parsed = parse_completion(text[: text.rstrip().rfind("\n") + 1], finished_by_eos=False)
    num_tokens = cut + (1 if parsed.stop_reason == STOP_EOS and cut < len(ids) else 0)
    return Generation(
        prompt=prompt,
        completion_text=text,
        response=parsed.response,
        stop_reason=parsed.stop_reason,
        stopped=parsed.stopped,
        runaway=parsed.runaway,
        num_tokens=num_tokens,
    )


def ends_with_open_end_line(text: str) -> bool:
    """Whether the text's first whole ``END`` line is its last line, with nothing after it.

    Generation stops on ``"\\nEND\\n"`` or eos, so such a text was cut by the token limit.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    first_end = next((i for i, line in enumerate(lines) if is_end_line(line)), None)
    return first_end == len(lines) - 1


def default_row_seeds(seed: int, count: int) -> list[int]:
    """Seeds for ``count`` rows identified by their position in the prompt list."""
    return [row_seed(seed, "row", index) for index in range(count)]


def checked_seeds(seeds: Sequence[int] | None, settings: GenerationSettings, count: int) -> list[int]:
    """One seed per prompt: ``seeds`` as given, or ``default_row_seeds``.

    Raises:
        ValueError: ``seeds`` does not have one seed per prompt.
    """
    if seeds is None:
        return default_row_seeds(settings.seed, count)
    if len(seeds) != count:
        raise ValueError(f"{len(seeds)} seeds for {count} prompts")
    return [int(seed) for seed in seeds]


def batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), in a deterministic order."""
    order = sorted(range(len(lengths)), key=lambda index: (lengths[index], index))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def chunk_batches(count: int, batch_size: int) -> list[list[int]]:
    """Indices in input order, ``batch_size`` at a time (vLLM schedules within a chunk itself)."""
    return [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]


def plan_batches(backend: str, tokenizer, prompts: Sequence[str], batch_size: int) -> list[list[int]]:
    """The batches a backend decodes ``prompts`` in: by similar length for transformers, in input
    order for vLLM. Needs only the tokenizer, so a caller can plan before any model loads."""
    if backend == "vllm":
        return chunk_batches(len(prompts), batch_size)
    return batches_by_length([len(encode_text(tokenizer, prompt)) for prompt in prompts], batch_size)


def check_prompt_ids(ids: Sequence[int], forbidden: set[int], prompt: str) -> None:
    """Refuse prompt ids holding a special token (``<|im_start|>``, eos): the format has none.

    ``encode_text`` keeps special-token text as text, so this cannot happen unless a tokenizer
    misbehaves; checked anyway because a chat-template id reaching a base model changes its task.
    """
    bad = sorted(set(ids) & forbidden)
    if bad:
        raise RuntimeError(f"special token ids {bad} in the prompt ids of {prompt[:80]!r}; prompts must be plain text")


def longest_prompt_tokens(tokenizer, prompts: Sequence[str]) -> int:
    """The longest prompt in tokens, counted as the backends encode it (``encode_text``)."""
    return max((len(encode_text(tokenizer, prompt)) for prompt in prompts), default=0)
