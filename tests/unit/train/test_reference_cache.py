"""The reference log-probability cache: what its key depends on (derived from the installed TRL's
source), and refusing a cache written for other rows or other key parts."""

from __future__ import annotations

import dataclasses
import inspect
import re

from hypothesis import given
from hypothesis import strategies as st

from stage1.train.reference_cache import (
    NOT_IN_REFERENCE,
    REFERENCE_SETTINGS,
    cache_path,
    read_cached,
    reference_key,
    reference_parts,
    reference_settings,
    write_cached,
)

DEFAULTS = {"max_length": 1024, "truncation_mode": "keep_start", "pad_to_multiple_of": None, "pad_token": None, "padding_free": False,
            "ld_alpha": None, "disable_dropout": True, "precompute_ref_batch_size": None, "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 8, "bf16": True, "fp16": False, "beta": 0.1, "learning_rate": 5e-6}
# One value other than the default for each setting (bools flip).
OTHER = {"max_length": 512, "truncation_mode": "keep_end", "pad_to_multiple_of": 8, "pad_token": "<|im_end|>", "padding_free": True,
         "ld_alpha": 0.5, "disable_dropout": False, "precompute_ref_batch_size": 4, "per_device_train_batch_size": 2,
         "per_device_eval_batch_size": 2, "bf16": False, "fp16": True}
BASE = {"model_hash": "m" * 64, "adapter_hash": None, "adapter_config_hash": None, "tokenizer_hashes": {"tokenizer.json": "t" * 64},
        "pairs_hash": "p" * 64, "settings": reference_settings(type("C", (), DEFAULTS)), "quantization": "nf4", "dtype": "bfloat16",
        "versions": {"trl": "1.16.0"}}


class Config:
    def __init__(self, **values):
        self.__dict__.update(values)


def _key(**changes) -> str:
    settings = reference_settings(Config(**{**DEFAULTS, **changes}))
    return reference_key(reference_parts(**{**BASE, "settings": settings}))


def test_the_key_changes_with_each_file_and_setup_the_reference_depends_on():
    key = reference_key(reference_parts(**BASE))
    assert key == reference_key(reference_parts(**dict(BASE))), "deterministic"
    for name, other in (("model_hash", "n" * 64), ("adapter_hash", "a" * 64), ("adapter_config_hash", "c" * 64),
                        ("tokenizer_hashes", {"tokenizer.json": "u" * 64}), ("pairs_hash", "q" * 64),
                        ("quantization", "none"), ("dtype", "float32"), ("versions", {"trl": "1.17.0"})):
        assert reference_key(reference_parts(**{**BASE, name: other})) != key, name


@given(setting=st.sampled_from(REFERENCE_SETTINGS), beta=st.floats(0.01, 1.0), learning_rate=st.floats(1e-7, 1e-3))
def test_each_reference_setting_changes_the_key_and_beta_or_learning_rate_do_not(setting, beta, learning_rate):
    key = _key()
    assert _key(beta=beta, learning_rate=learning_rate) == key
    assert _key(**{setting: OTHER[setting]}) != key, setting
    assert _key(**{setting: OTHER[setting]}, beta=beta, learning_rate=learning_rate) == _key(**{setting: OTHER[setting]})


def test_the_listed_settings_are_the_ones_trl_reads_on_the_way_to_the_reference():
    """Every DPOConfig field that TRL's reference pass, its precompute loop or the preference
    collator reads is either keyed or named (with a reason) as not changing the values."""
    from trl import DPOConfig, DPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    fields = {field.name for field in dataclasses.fields(DPOConfig)}
    assert set(REFERENCE_SETTINGS) <= fields, set(REFERENCE_SETTINGS) - fields
    init = inspect.getsource(DPOTrainer.__init__)
    from_args = dict(re.findall(r"self\.(\w+) = args\.(\w+)\b", init))
    read = set()
    for method in (DPOTrainer.compute_ref_log_probs, DPOTrainer._precompute_ref_logps):
        source = inspect.getsource(method)
        read |= set(re.findall(r"\bargs\.(\w+)", source))
        read |= {from_args[attribute] for attribute in re.findall(r"\bself\.(\w+)", source) if attribute in from_args}
    read |= {field.name for field in dataclasses.fields(DataCollatorForPreference)} & fields
    collator_call = re.search(r"DataCollatorForPreference\((.*?)\)", init, re.S)
    assert collator_call is not None, "TRL no longer builds its preference collator in __init__"
    read |= set(re.findall(r"\bargs\.(\w+)", collator_call.group(1)))
    assert "ld_alpha" in read and "max_length" in read, "the source no longer reads as expected"
    unlisted = read - set(REFERENCE_SETTINGS) - set(NOT_IN_REFERENCE)
    assert not unlisted, f"TRL reads {sorted(unlisted)} for the reference pass: key them or say why not"


def test_a_cache_is_read_back_exactly_and_refused_for_another_row_count(tmp_path):
    parts = reference_parts(**BASE)
    path = cache_path(tmp_path, reference_key(parts), "train")
    columns = {"ref_chosen_logps": [-1.25, -3.0000000001], "ref_rejected_logps": [-7.5, -2.0]}
    write_cached(path, parts, columns)
    assert read_cached(path, 2, parts) == columns
    assert read_cached(path, 3, parts) is None
    assert read_cached(tmp_path / "missing.json", 2, parts) is None
    path.write_text("{not json")
    assert read_cached(path, 2, parts) is None


def test_a_cache_from_another_ld_alpha_is_not_reused_even_under_the_asked_name(tmp_path):
    """The stale hit of the audit: a file written with ld_alpha unset, asked for with ld_alpha 0.5."""
    written = reference_parts(**{**BASE, "settings": reference_settings(Config(**DEFAULTS))})
    asked = reference_parts(**{**BASE, "settings": reference_settings(Config(**{**DEFAULTS, "ld_alpha": 0.5}))})
    columns = {"ref_chosen_logps": [-1.0], "ref_rejected_logps": [-2.0]}
    stale = write_cached(cache_path(tmp_path, reference_key(written), "train"), written, columns)
    fresh_path = cache_path(tmp_path, reference_key(asked), "train")
    assert fresh_path != stale
    assert read_cached(fresh_path, 1, asked) is None, "nothing under the new key"
    fresh_path.write_bytes(stale.read_bytes())
    assert read_cached(fresh_path, 1, asked) is None, "a file with other key parts is refused whatever its name"
    assert read_cached(stale, 1, written) == columns
