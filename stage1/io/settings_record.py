"""The settings a run directory was built with, and refusing a command that would change them.

``config.yaml`` in the run directory is the resolved config of the last command that wrote the run
(the preset with every ``--set`` applied). A later command on the same run whose resolved config
differs would retrain with other settings without saying so (``evaluate`` after ``run --set
dpo.beta=0.2`` used to reset beta to the preset's and rebuild DPO); such a command is refused,
naming each setting that differs, unless ``--force`` says the new settings are meant.

Two values of a path setting (``data.instructions``, ...) are the same when they name the same
path, or two files with the same bytes: a copied project or run folder keeps its settings. A file's
content changing under the same path is not a settings change: the stages that read it see it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stage1.core.errors import ConfigError
from stage1.io.hashing import sha256_file
from stage1.io.layout import CONFIG_FILE

#: Settings that change where or how a command reports, never what a stage writes.
NOT_SETTINGS = frozenset({"run.log_file"})
PATH_SETTINGS = frozenset({"model.path", "model.architecture", "data.instructions", "data.exemplars", "data.eval_items"})


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _same_file(before: Any, now: Any) -> bool:
    if not (isinstance(before, str) and isinstance(now, str)):
        return False
    first, second = Path(before), Path(now)
    try:
        return first.is_file() and second.is_file() and sha256_file(first) == sha256_file(second)
    except OSError:
        return False


def settings_changes(recorded_yaml: str, config_yaml: str, defaults_yaml: str = "") -> list[str]:
    """Each setting whose value differs between two dumped configs, as ``key: before -> now``.

    A setting the record lacks and ``config_yaml`` holds at its value in ``defaults_yaml`` (the code's
    defaults) is not a change: it was added after the run was recorded, and a new setting's default
    keeps what the code did before it (``negatives.off_topic_from``). Without that, every setting
    added to the code made every earlier run refuse even its own recorded ``config.yaml``. An
    unreadable record gives no change (there is nothing to keep).
    """
    try:
        before = _flatten(yaml.safe_load(recorded_yaml) or {})
    except yaml.YAMLError:
        return []
    now = _flatten(yaml.safe_load(config_yaml) or {})
    defaults = _flatten(yaml.safe_load(defaults_yaml) or {})
    changes = []
    for key in sorted(set(before) | set(now)):
        if key in NOT_SETTINGS or before.get(key) == now.get(key):
            continue
        if key not in before and key in defaults and now.get(key) == defaults[key]:
            continue
        if key in PATH_SETTINGS and _same_file(before.get(key), now.get(key)):
            continue
        changes.append(f"{key}: {before.get(key, '(unset)')!r} -> {now.get(key, '(unset)')!r}")
    return changes


def refuse_changed_settings(run_dir: Path, config_yaml: str, defaults_yaml: str = "") -> None:
    """Refuse a command whose settings differ from those ``run_dir`` was built with.

    Raises:
        ConfigError: naming the run's ``config.yaml``, every setting that differs (recorded -> now),
            and the three ways on: the same settings, ``--force``, or a new run directory.
    """
    record = Path(run_dir) / CONFIG_FILE
    if not record.is_file():
        return
    changes = settings_changes(record.read_text(encoding="utf-8", errors="replace"), config_yaml, defaults_yaml)
    if changes:
        shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
        raise ConfigError(
            f"the run was built with other settings (recorded -> now): {shown}", path=record, field="--config/--set",
            hint=f"to keep the run's settings give --config {record}; to rebuild with the new ones add --force "
                 "(or --force STAGE: the stages the new settings change rerun either way); or choose a new --run-dir",
        )
