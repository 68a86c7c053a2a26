"""Messages name the field and the value the user gave, never a neighbour of it."""

from __future__ import annotations

import pytest

from stage1 import cli
from stage1.core.errors import EXIT_INPUT, InputError


def test_an_empty_eval_split_names_pairs_eval_fraction(tmp_path):
    """`pairs.eval_fraction=0` used to end DPO with "the None arm has no None pair in the eval split"."""
    from stage1.train.dpo import read_arm_pairs

    empty = tmp_path / "eval.jsonl"
    empty.write_text("")
    with pytest.raises(InputError) as raised:
        read_arm_pairs(empty, None, "eval")
    assert raised.value.field == "pairs.eval_fraction" and "None" not in str(raised.value)
    assert "no preference pair in the eval split" in str(raised.value) and "above 0" in str(raised.value)


@pytest.mark.parametrize("key", ["data.instructions", "data.eval_items", "data.exemplars", "model.path"])
@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_path_setting_names_the_setting(tmp_path, capsys, key, value):
    """`--set data.instructions=` used to fail on "." (the working folder) and name no setting."""
    run = tmp_path / "run"
    assert cli.main(["run", "--run-dir", str(run), "--set", f"{key}={value}"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert f"field '{key}': is empty" in err and f"--set {key}=" in err
    assert not run.exists()
