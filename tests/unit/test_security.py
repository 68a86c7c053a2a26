"""Security by inspection of the source: no code execution on data, no pickle, no remote code unless a
user's config asks, safetensors only, YAML only through the safe loader.

Each rule is an ``ast`` scan of every Python file stage1 ships or runs (``stage1/``, ``cli.py``,
``fixtures/*.py``, and ``bench/`` with one exception: benchmarks load the tiny model they have just
written themselves, so the safetensors rule, which guards user-supplied folders, is not applied
there). The scanner is tested on small snippets first, so a rule that could never fire fails too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = sorted([*(ROOT / "stage1").rglob("*.py"), ROOT / "cli.py", *(ROOT / "fixtures").glob("*.py")])
BENCHMARKS = sorted((ROOT / "bench").rglob("*.py"))
SAFETENSORS_RULE = "without use_safetensors=True"

#: Classes whose ``from_pretrained`` loads model weights (tokenizers and configs hold no weights).
WEIGHT_LOADER_SUFFIXES = ("ForCausalLM", "ForSequenceClassification", "Model")
WEIGHT_LOADER_PREFIXES = ("AutoModel",)
#: PEFT's loader reads adapter_model.safetensors when present; stage1 refuses an adapter without it
#: (``lineage.adapter_hash``) before PEFT is called, so its ``from_pretrained`` is checked by behaviour below.
NOT_WEIGHT_LOADERS = ("PeftModel",)
YAML_LOADING = ("load", "load_all", "compose", "compose_all", "parse", "scan")
YAML_UNSAFE = ("unsafe_load", "unsafe_load_all", "full_load", "full_load_all")
SAFE_LOADERS = ("SafeLoader", "CSafeLoader")
PICKLE_MODULES = ("pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal")


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _loader_is_safe(call: ast.Call) -> bool:
    loader = _keyword(call, "Loader")
    if loader is None and len(call.args) >= 2:
        loader = call.args[1]
    return loader is not None and _dotted(loader).split(".")[-1] in SAFE_LOADERS


def _call_problems(call: ast.Call) -> list[str]:
    name = _dotted(call.func)
    last = name.split(".")[-1]
    problems = []
    if name in ("eval", "exec", "builtins.eval", "builtins.exec", "compile"):
        problems.append(f"{name}() runs code")
    if name.split(".")[0] in PICKLE_MODULES and last in ("load", "loads", "Unpickler", "open"):
        problems.append(f"{name}() unpickles")
    if name == "torch.load" and not _is_true(_keyword(call, "weights_only")):
        problems.append("torch.load without weights_only=True")
    if last == "load" and name.split(".")[0] in ("np", "numpy") and _is_true(_keyword(call, "allow_pickle")):
        problems.append(f"{name}(allow_pickle=True)")
    if name.split(".")[0] == "yaml" and last in YAML_UNSAFE:
        problems.append(f"{name}() constructs arbitrary objects")
    if name.split(".")[0] == "yaml" and last in YAML_LOADING and not _loader_is_safe(call):
        problems.append(f"{name}() without Loader=yaml.SafeLoader")
    if _is_true(_keyword(call, "trust_remote_code")):
        problems.append(f"{name}(trust_remote_code=True)")
    if _is_true(_keyword(call, "shell")):
        problems.append(f"{name}(shell=True)")
    if last == "from_pretrained" and _loads_weights(name) and not _is_true(_keyword(call, "use_safetensors")):
        problems.append(f"{name}() without use_safetensors=True")
    return problems


def _loads_weights(dotted: str) -> bool:
    owner = dotted.split(".")[-2] if "." in dotted else ""
    if owner in NOT_WEIGHT_LOADERS or "Tokenizer" in owner or "Config" in owner or "Processor" in owner:
        return False
    return owner.endswith(WEIGHT_LOADER_SUFFIXES) or owner.startswith(WEIGHT_LOADER_PREFIXES)


def _default_problems(node: ast.AST) -> list[str]:
    """A ``trust_remote_code`` parameter or field whose default is True."""
    problems = []
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        arguments = node.args
        positional = [*arguments.posonlyargs, *arguments.args]
        pairs = list(zip(positional[len(positional) - len(arguments.defaults):], arguments.defaults))
        pairs += [(a, d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults) if d is not None]
        problems += [f"{node.name}(trust_remote_code=True) by default" for a, d in pairs if a.arg == "trust_remote_code" and _is_true(d)]
    if isinstance(node, ast.AnnAssign) and _dotted(node.target) == "trust_remote_code" and _is_true(node.value):
        problems.append("a trust_remote_code setting that defaults to True")
    return problems


def _import_problems(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name.split(".")[0] for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        names = [(node.module or "").split(".")[0]]
    else:
        return []
    return [f"imports {name}" for name in names if name in PICKLE_MODULES]


def scan(source: str, filename: str = "<snippet>") -> list[str]:
    """Every rule broken in ``source``, as ``file:line: what``."""
    problems = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        found = _call_problems(node) if isinstance(node, ast.Call) else []
        found += _default_problems(node) + _import_problems(node)
        problems += [f"{filename}:{getattr(node, 'lineno', '?')}: {problem}" for problem in found]
    return problems


# ---------------------------------------------------------------- the scanner catches what it should

BAD_SNIPPETS = {
    "eval": "value = eval(text)",
    "exec": "exec(code)",
    "builtins eval": "import builtins\nbuiltins.eval(text)",
    "pickle import": "import pickle",
    "pickle from-import": "from pickle import loads",
    "joblib": "import joblib",
    "torch.load bare": "import torch\nstate = torch.load(path)",
    "torch.load weights_only False": "import torch\nstate = torch.load(path, weights_only=False)",
    "numpy allow_pickle": "import numpy as np\nnp.load(path, allow_pickle=True)",
    "yaml.load no loader": "import yaml\nyaml.load(text)",
    "yaml.load full loader": "import yaml\nyaml.load(text, Loader=yaml.FullLoader)",
    "yaml.unsafe_load": "import yaml\nyaml.unsafe_load(text)",
    "yaml.full_load": "import yaml\nyaml.full_load(text)",
    "yaml.compose unsafe": "import yaml\nyaml.compose(text, yaml.Loader)",
    "remote code call": "AutoTokenizer.from_pretrained(path, trust_remote_code=True)",
    "remote code default": "def load(path, trust_remote_code=True):\n    pass",
    "remote code kw default": "def load(path, *, trust_remote_code=True):\n    pass",
    "remote code field": "class Settings:\n    trust_remote_code: bool = True",
    "pickle weights": "AutoModelForCausalLM.from_pretrained(path)",
    "pickle weights qwen": "transformers.Qwen2ForCausalLM.from_pretrained(path, use_safetensors=False)",
    "shell": "subprocess.run(command, shell=True)",
}
GOOD_SNIPPETS = {
    "method eval": "model.eval()",
    "torch.load weights_only": "import torch\ntorch.load(path, weights_only=True)",
    "yaml safe": "import yaml\nyaml.safe_load(text)\nyaml.compose(text, Loader=yaml.SafeLoader)\nyaml.load(text, yaml.CSafeLoader)",
    "remote code from config": "AutoModelForCausalLM.from_pretrained(path, trust_remote_code=config.trust, use_safetensors=True)",
    "remote code off": "def load(path, *, trust_remote_code=False):\n    pass",
    "tokenizer": "AutoTokenizer.from_pretrained(path)",
    "config": "Qwen2Config.from_pretrained(path)",
}


@pytest.mark.parametrize("name", BAD_SNIPPETS)
def test_the_scanner_catches(name):
    assert scan(BAD_SNIPPETS[name]), f"the rule for {name!r} never fires"


@pytest.mark.parametrize("name", GOOD_SNIPPETS)
def test_the_scanner_allows(name):
    assert scan(GOOD_SNIPPETS[name]) == []


# ---------------------------------------------------------------- the project's own source


def test_every_scanned_file_is_found():
    names = {str(path.relative_to(ROOT)) for path in SCANNED}
    assert {"cli.py", "stage1/hf/models.py", "stage1/config/load.py", "stage1/hf/generation.py"} <= names
    assert len([n for n in names if n.startswith("stage1/")]) >= 40


def _problems(paths: list[Path]) -> list[str]:
    return [problem for path in paths for problem in scan(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]


def test_no_rule_is_broken_anywhere_in_the_source():
    assert _problems(SCANNED) == []


def test_benchmarks_break_no_rule_but_load_their_own_models_as_they_like():
    assert BENCHMARKS and [p for p in _problems(BENCHMARKS) if not p.endswith(SAFETENSORS_RULE)] == []


def test_model_loading_asks_for_safetensors_and_remote_code_only_from_the_caller():
    """The one model loader passes use_safetensors=True and forwards trust_remote_code from its caller."""
    tree = ast.parse((ROOT / "stage1" / "hf" / "models.py").read_text(encoding="utf-8"))
    loads = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _dotted(n.func).endswith("from_pretrained")
             and _loads_weights(_dotted(n.func))]
    assert loads, "stage1.hf.models must load weights with from_pretrained"
    for call in loads:
        assert _is_true(_keyword(call, "use_safetensors"))
        assert _dotted(_keyword(call, "trust_remote_code")) == "trust_remote_code", "forwarded, never a literal"


def test_a_model_folder_with_only_pickle_weights_is_refused(tmp_path):
    from stage1.core.errors import InputError
    from stage1.hf.models import load_model

    (tmp_path / "config.json").write_text('{"model_type": "qwen2"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not loaded")
    with pytest.raises(InputError, match="safetensors"):
        load_model(tmp_path)


def test_an_adapter_without_safetensors_weights_is_refused(tmp_path):
    from stage1.core.errors import LineageError
    from stage1.io.lineage import adapter_hash

    (tmp_path / "adapter_model.bin").write_bytes(b"\x80\x04not loaded")
    with pytest.raises(LineageError, match="adapter_model.safetensors"):
        adapter_hash(tmp_path)
