"""Generation: string stops through the real ``generate``, stop reasons, token counts, batching, seeding."""

from __future__ import annotations

import pytest
import torch

from stage1.core.format import STOP_END, STOP_EOS, STOP_MAX_TOKENS, STOP_RUNAWAY, render_prompt
from stage1.core.generation import (
    GenerationSettings,
    batches_by_length,
    build_fewshot_prompt,
    check_prompt_ids,
    longest_prompt_tokens,
    read_generation,
)
from stage1.core.masking import encode_text
from stage1.hf.generation import TransformersBackend
from stage1.hf.vllm_backend import VLLMSettings, vllm_max_model_len
from tests.scripted_model import load_scripted

# prompt -> the completion the scripted model writes (then eos, unless a stop string fires first)
SCRIPTS = {
    render_prompt("Capital of France?"): " Paris.\nEND\nInstruction: should never be generated",
    render_prompt("Capital of Peru?"): " Lima.\nEND\n\nInstruction: should never be generated",
    render_prompt("Say bye."): " Bye.\nEND",  # what a trained model writes: END, then eos
    render_prompt("Close the block."): " IF x\nENDIF\nfi.\nEND",
    render_prompt("Which route?"): " Steps:\nENDPOINT is /v1.\nEND",
    render_prompt("When do you rest?"): " On the\nWEEKEND, mostly.\nEND",
    render_prompt("Say yes."): " Yes.\nInstruction: Say no.\nResponse: No.\nEND",
    render_prompt("Say done."): " Done.",
    render_prompt("Count."): " one two three four five six seven eight nine ten eleven twelve",
    render_prompt("Note?"): " Note: colons are fine.\nEND",
    render_prompt("Acc\u00e9nt?"): " Caf\u00e9 cr\u00e8me.\nEND",
}


@pytest.fixture(scope="module")
def scripted_backend(tiny_model_dir, qwen_tokenizer):
    return TransformersBackend(load_scripted(tiny_model_dir, qwen_tokenizer, SCRIPTS), qwen_tokenizer)


@pytest.fixture(scope="module")
def scripted_results(scripted_backend):
    prompts = list(SCRIPTS)
    results = scripted_backend.generate(prompts, GenerationSettings(max_new_tokens=12, batch_size=16))
    return dict(zip(prompts, results))


def test_end_line_stops_generation_and_is_not_part_of_the_response(scripted_results, qwen_tokenizer):
    # A base model going on after END writes a newline next: "\nEND\n" stops it there.
    result = scripted_results[render_prompt("Capital of France?")]
    assert (result.response, result.stop_reason, result.stopped, result.runaway) == ("Paris.", STOP_END, True, False)
    assert result.completion_text == " Paris.\nEND\n", "generation must stop at the END line, not run on"
    assert result.num_tokens == len(encode_text(qwen_tokenizer, " Paris.\nEND\n"))


def test_end_line_followed_by_a_blank_line_stops_generation(scripted_results):
    # "\n\n" is one token: the stop string ends inside it.
    result = scripted_results[render_prompt("Capital of Peru?")]
    assert (result.completion_text, result.response, result.stop_reason) == (" Lima.\nEND\n\n", "Lima.", STOP_END)


def test_end_then_eos_stops_with_reason_end(scripted_results, qwen_tokenizer):
    # The trained model's ending: END, then eos (which stops generate); the eos is not counted.
    result = scripted_results[render_prompt("Say bye.")]
    assert (result.completion_text, result.response, result.stop_reason, result.stopped) == (" Bye.\nEND", "Bye.", STOP_END, True)
    assert result.num_tokens == len(encode_text(qwen_tokenizer, " Bye.\nEND"))


@pytest.mark.parametrize(
    "instruction, response",
    [("When do you rest?", "On the\nWEEKEND, mostly."), ("Close the block.", "IF x\nENDIF\nfi."), ("Which route?", "Steps:\nENDPOINT is /v1.")],
)
def test_end_at_the_start_of_a_word_does_not_stop_generation(scripted_results, instruction, response):
    # "WEEKEND" ends in the same token as "END" (a token-id stop would cut it); "\nENDIF" and
    # "\nENDPOINT" start with "\nEND" (a stop on "\nEND" would cut them, and the eos padding after
    # the cut would make the row read as an answer that ended by eos).
    result = scripted_results[render_prompt(instruction)]
    assert (result.response, result.stop_reason, result.stopped) == (response, STOP_END, True)


def test_runaway_is_stopped_counted_and_the_answer_before_it_kept(scripted_results):
    result = scripted_results[render_prompt("Say yes.")]
    assert result.completion_text == " Yes.\nInstruction:"
    assert (result.response, result.stop_reason, result.runaway, result.stopped) == ("Yes.", STOP_RUNAWAY, True, False)


def test_eos_and_token_limit_are_told_apart(scripted_results, qwen_tokenizer):
    by_eos = scripted_results[render_prompt("Say done.")]
    assert (by_eos.response, by_eos.stop_reason, by_eos.stopped) == ("Done.", STOP_EOS, True)
    assert by_eos.num_tokens == len(encode_text(qwen_tokenizer, " Done.")) + 1, "the eos token counts"
    limited = scripted_results[render_prompt("Count.")]
    assert (limited.stop_reason, limited.stopped, limited.num_tokens) == (STOP_MAX_TOKENS, False, 12)
    assert limited.response.startswith("one two three")


def test_a_colon_in_the_answer_does_not_stop_generation(scripted_results):
    assert scripted_results[render_prompt("Note?")].response == "Note: colons are fine."


def test_completion_comes_from_generated_ids_not_from_slicing_text(scripted_backend):
    # A decomposed accent in the prompt: the tokenizer normalises it to NFC, so the decoded prompt is
    # one character shorter than the prompt string; slicing decoded text by length would eat a character.
    nfd_prompt = "Instruction: Acce\u0301nt?\nResponse:"
    [result] = scripted_backend.generate([nfd_prompt], GenerationSettings(max_new_tokens=12))
    assert result.prompt == nfd_prompt
    assert result.completion_text == " Caf\u00e9 cr\u00e8me.\nEND"
    assert result.response == "Caf\u00e9 cr\u00e8me."


def test_batched_and_one_by_one_give_the_same_results(scripted_backend, scripted_results):
    prompts = list(SCRIPTS)
    single = [scripted_backend.generate([p], GenerationSettings(max_new_tokens=12, batch_size=1))[0] for p in prompts]
    assert single == [scripted_results[p] for p in prompts]
    batched = scripted_backend.generate(prompts, GenerationSettings(max_new_tokens=12, batch_size=3))
    assert batched == single


def test_special_token_text_in_a_prompt_never_becomes_a_control_token(scripted_backend, qwen_tokenizer):
    prompt = render_prompt("Explain <|im_start|> and <|endoftext|> literally.")
    [ids] = scripted_backend.encode_prompts([prompt])
    assert 151644 not in ids and 151643 not in ids
    [result] = scripted_backend.generate([prompt], GenerationSettings(max_new_tokens=3))
    assert result.num_tokens <= 3
    with pytest.raises(RuntimeError, match="special token ids \\[151644\\]"):
        check_prompt_ids([16664, 151644], set(qwen_tokenizer.all_special_ids), "x")


def test_fewshot_prompt_is_the_plain_format_with_blank_lines():
    prompt = build_fewshot_prompt([("Q1", "A1"), ("Q2", "A2\nmore")], "Q3")
    assert prompt == "Instruction: Q1\nResponse: A1\nEND\n\nInstruction: Q2\nResponse: A2\nmore\nEND\n\nInstruction: Q3\nResponse:"
    assert "<|im_start|>" not in prompt


def test_a_row_stopped_by_a_stop_string_and_padded_with_eos_never_reads_as_eos(qwen_tokenizer):
    eos = qwen_tokenizer.eos_token_id
    decode = lambda ids: qwen_tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    stopped = read_generation("p", encode_text(qwen_tokenizer, " Go.\nEND\n") + [eos] * 3, decode, {eos})
    assert (stopped.response, stopped.stop_reason) == ("Go.", STOP_END)
    assert stopped.num_tokens == len(encode_text(qwen_tokenizer, " Go.\nEND\n")), "padding is not counted"
    runaway = read_generation("p", encode_text(qwen_tokenizer, " Go.\nInstruction:") + [eos] * 3, decode, {eos})
    assert (runaway.response, runaway.stop_reason, runaway.stopped) == ("Go.", STOP_RUNAWAY, False)


@pytest.mark.parametrize(
    ("completion", "eos", "reason", "response"),
    [
        (" Go.\nEND", False, STOP_MAX_TOKENS, "Go."),  # cut by the limit: END may have been ENDING
        (" Go.\nEND", True, STOP_END, "Go."),  # eos right after END confirms the line
        (" Go.\nEND\n", False, STOP_END, "Go."),  # so does a newline
        (" Go.\nEND.\nEND.\nEND", False, STOP_MAX_TOKENS, "Go.\nEND.\nEND."),  # 'END.' lines are content
        (" Go.\nEND\nmore\nEND", False, STOP_END, "Go."),  # an earlier whole END line decides
    ],
)
def test_an_end_line_must_be_confirmed_by_what_follows_it(qwen_tokenizer, completion, eos, reason, response):
    eos_id = qwen_tokenizer.eos_token_id
    decode = lambda ids: qwen_tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    ids = encode_text(qwen_tokenizer, completion) + ([eos_id] if eos else [])
    result = read_generation("p", ids, decode, {eos_id})
    assert (result.stop_reason, result.response) == (reason, response)
    assert result.completion_text == completion, "the raw text is kept whole"


def test_read_generation_cuts_at_the_first_end_id():
    decode = lambda ids: "".join({1: " a", 2: "\nEND", 3: " b"}[i] for i in ids)  # noqa: E731
    result = read_generation("p", [1, 3, 9, 9, 9], decode, {9})
    assert (result.response, result.stop_reason, result.num_tokens) == ("a b", STOP_EOS, 3)
    result = read_generation("p", [1, 2, 9, 9], decode, {9})
    assert (result.response, result.stop_reason, result.num_tokens) == ("a", STOP_END, 2)
    result = read_generation("p", [1, 2], decode, {9})
    assert (result.response, result.stop_reason) == ("a", STOP_MAX_TOKENS)
    result = read_generation("p", [1, 3], decode, {9})
    assert (result.stop_reason, result.num_tokens) == (STOP_MAX_TOKENS, 2)


def test_batches_group_similar_lengths_and_cover_every_index():
    batches = batches_by_length([5, 1, 9, 1, 5], 2)
    assert batches == [[1, 3], [0, 4], [2]]


@pytest.mark.parametrize("field, value", [("max_new_tokens", 0), ("batch_size", 0), ("temperature", 0.0), ("top_p", 1.5)])
def test_bad_generation_settings_are_refused_naming_the_field(field, value):
    from stage1.core.errors import ConfigError

    with pytest.raises(ConfigError, match=f"generation.{field}"):
        GenerationSettings(**{field: value})


@pytest.mark.slow
def test_sampling_is_seeded_and_leaves_the_global_rng_alone(tiny_model_dir, qwen_tokenizer):
    from transformers import AutoModelForCausalLM

    backend = TransformersBackend(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), qwen_tokenizer)
    prompts = [render_prompt(f"Question {i}?") for i in range(5)]
    settings = GenerationSettings(max_new_tokens=6, batch_size=4, do_sample=True, temperature=1.0, top_p=0.95, seed=3)
    torch.manual_seed(1)
    expected_next = torch.rand(2)
    torch.manual_seed(1)
    first = backend.generate(prompts, settings)
    assert torch.equal(torch.rand(2), expected_next), "sampling must not consume the global torch RNG"
    torch.manual_seed(999)
    assert backend.generate(prompts, settings) == first, "same seed, same samples, whatever the global state"
    other = backend.generate(prompts, GenerationSettings(**{**settings.__dict__, "seed": 4}))
    assert [g.completion_text for g in other] != [g.completion_text for g in first]
    greedy = backend.generate(prompts, GenerationSettings(max_new_tokens=6))
    assert [g.completion_text for g in greedy] != [g.completion_text for g in first]


@pytest.mark.gpu
def test_vllm_generates_with_the_same_stops_and_parsing(tiny_model_dir, qwen_tokenizer):
    pytest.importorskip("vllm", reason="vllm is an optional extra (pip install -e '.[vllm]')")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    from stage1.hf.vllm_backend import VLLMBackend

    backend = VLLMBackend(str(tiny_model_dir), qwen_tokenizer, gpu_memory_utilization=0.2, enforce_eager=True)
    results = backend.generate([render_prompt("Capital of France?")], GenerationSettings(max_new_tokens=8))
    assert len(results) == 1
    assert results[0].stop_reason in (STOP_END, STOP_EOS, STOP_RUNAWAY, STOP_MAX_TOKENS)
    assert 0 < results[0].num_tokens <= 8


@pytest.mark.parametrize("stage", ["sft_data", "samples"])
def test_every_generating_stage_sizes_its_vllm_engine_for_its_own_prompts(qwen_tokenizer, monkeypatch, stage):
    """SFT data and the samples stage share one backend factory: the engine gets max_model_len from
    the stage's longest prompt + max_new_tokens (never the model's 131,072) and is checked to fit first."""
    import stage1.hf.backends as backends

    started, checked = [], []
    monkeypatch.setattr(backends, "VLLMBackend", lambda path, tokenizer, **engine: started.append(engine) or "engine")
    monkeypatch.setattr(backends, "check_engine_fits", lambda *args: checked.append(args))
    prompts = ["Instruction: Hi?\nResponse:", "Instruction: " + "word " * 40 + "\nResponse:"]
    settings = VLLMSettings(max_num_seqs=8)
    with backends.model_backends("model", qwen_tokenizer, backend="vllm", quantization="none", dtype="bfloat16", device_map=None,
                                   seed=3, vllm=settings, prompts=prompts, max_new_tokens=48, stage=stage) as make_backend:
        assert started == [] and make_backend() == "engine"
    longest = longest_prompt_tokens(qwen_tokenizer, prompts)
    assert started[0]["max_model_len"] == vllm_max_model_len(longest, 48) < 131072
    assert started[0]["max_num_seqs"] == 8 and checked and checked[0][-1] == stage
