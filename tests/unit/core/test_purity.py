"""``stage1/core/`` is pure: it imports no framework and opens no file.

The rule is what keeps the core testable with plain strings and dataclasses, and the layout honest:
a core module that needs torch, a tokenizer library, the console or the disk belongs in ``hf/``,
``io/`` or a stage folder. The scanner is an ast walk; it is first shown to catch each kind of
breach on a snippet, so a scanner that sees nothing cannot pass the real check.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[3] / "stage1" / "core"

#: Libraries the core must never import (frameworks, the console, config files, plotting).
FORBIDDEN_LIBRARIES = {
    "torch", "transformers", "trl", "peft", "datasets", "rich", "accelerate", "bitsandbytes", "safetensors",
    "vllm", "tokenizers", "yaml", "matplotlib", "numpy", "psutil",
}
#: Standard-library modules that reach the disk, the network or other processes. (``pathlib`` may be
#: imported for type hints; using a path to touch the disk is caught by ``FILE_CALLS``.)
FORBIDDEN_STDLIB = {"os", "io", "shutil", "tempfile", "glob", "subprocess", "socket", "csv", "json", "pickle", "sqlite3"}
#: Calls that open, read, write or list files, by the last part of their dotted name.
FILE_CALLS = {
    "open", "read_text", "read_bytes", "write_text", "write_bytes", "exists", "is_file", "is_dir", "mkdir",
    "iterdir", "glob", "rglob", "unlink", "rename", "replace", "stat", "listdir", "scandir", "walk",
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def breaches(source: str) -> list[str]:
    """Every import or call in ``source`` that breaks the core's rule, as readable strings."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top in FORBIDDEN_LIBRARIES or top in FORBIDDEN_STDLIB:
                found.append(f"line {node.lineno}: imports {name}")
            elif top == "stage1" and not name.startswith("stage1.core"):
                found.append(f"line {node.lineno}: imports {name} (outside the core)")
        if isinstance(node, ast.Call):
            called = _dotted(node.func)
            if called.split(".")[-1] in FILE_CALLS and called not in ("str.replace",) and not _is_string_method(node):
                found.append(f"line {node.lineno}: calls {called}")
    return found


def _is_string_method(call: ast.Call) -> bool:
    """``text.replace(a, b)`` is a string method, not ``Path.replace``: two arguments give it away."""
    return isinstance(call.func, ast.Attribute) and call.func.attr == "replace" and len(call.args) == 2


BREAKING_SNIPPETS = {
    "torch": "import torch\n",
    "a submodule": "from transformers.tokenization_utils import PreTrainedTokenizer\n",
    "rich inside a function": "def show():\n    from rich.console import Console\n",
    "the disk through os": "import os\n",
    "the disk through pathlib": "from pathlib import Path\n\ndef load():\n    return Path('items.jsonl').read_bytes()\n",
    "a shell module": "from stage1.io.readers import iter_rows\n",
    "open": "def read(name):\n    return open(name).read()\n",
    "a path method": "def read(path):\n    return path.read_text()\n",
    "a file test": "def seen(path):\n    return path.exists()\n",
}


@pytest.mark.parametrize("name", sorted(BREAKING_SNIPPETS))
def test_the_scanner_catches(name):
    assert breaches(BREAKING_SNIPPETS[name]), f"the scanner missed {name}"


def test_the_scanner_allows_pure_code():
    pure = "import re\nfrom stage1.core.format import render_prompt\n\ndef f(text):\n    return re.sub('a', 'b', text.replace('x', 'y'))\n"
    assert breaches(pure) == []


def test_the_core_imports_no_framework_and_opens_no_file():
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 10, "the core's modules were not found"
    problems = [f"{path.name}: {problem}" for path in modules for problem in breaches(path.read_text(encoding="utf-8"))]
    assert problems == []


def test_importing_the_core_loads_no_framework():
    """What the ast scan cannot see (an import through another module) shows in ``sys.modules``."""
    import subprocess

    code = (
        "import sys, pkgutil, importlib, stage1.core as core\n"
        "for info in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module(f'stage1.core.{info.name}')\n"
        f"print(sorted(set(name.split('.')[0] for name in sys.modules) & set({sorted(FORBIDDEN_LIBRARIES)!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=CORE.parents[1])
    assert result.stdout.strip() == "[]", result.stdout
