"""The code never turns data into code: no pickle, eval/exec, unsafe YAML, pickled NumPy,
torch.load, __import__ or a shell; and the server never loads a Keras model.

The scan reads the syntax tree, so comments, docstrings and look-alikes such as
`session.exec(...)` or `model.evaluate(...)` never count; each rule is tried on a bad
snippet below, so a matcher that finds nothing fails too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("app", "worker")

# Modules whose loaders run code hidden in the data they read.
PICKLING = {"pickle", "_pickle", "dill", "cloudpickle", "jsonpickle", "shelve", "marshal"}
PICKLING_CALLS = {"load", "loads", "Unpickler", "open"}
YAML_LOADS = {"load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


def _dotted(node: ast.expr) -> str | None:
    """`a.b.c` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self, *, server: bool) -> None:
        self.server = server
        self.aliases: dict[str, str] = {}  # local name -> module or module.attribute
        self.findings: list[tuple[int, str]] = []

    def _flag(self, node: ast.AST, what: str) -> None:
        self.findings.append((getattr(node, "lineno", 0), what))

    def _qualified(self, node: ast.expr) -> str | None:
        dotted = _dotted(node)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        head = self.aliases.get(head, head)
        return f"{head}.{rest}" if rest else head

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name.split(".")[0]] = (
                alias.name if alias.asname else alias.name.split(".")[0]
            )
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
            if self.server and alias.name == "load_model":
                self._flag(node, f"imports load_model from {module}")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self.server and node.attr == "load_model":
            self._flag(node, "refers to load_model")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if self.server and node.id == "load_model":
            self._flag(node, "refers to load_model")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = self._qualified(node.func) or ""
        module, _, function = name.rpartition(".")
        keywords = {keyword.arg: keyword.value for keyword in node.keywords if keyword.arg}
        if name in ("eval", "exec", "__import__", "builtins.eval", "builtins.exec"):
            self._flag(node, f"calls {name}()")
        if module.split(".")[0] in PICKLING and function in PICKLING_CALLS:
            self._flag(node, f"calls {name}()")
        if module == "torch" and function == "load":
            self._flag(node, "calls torch.load()")
        if module == "yaml" and function in YAML_LOADS:
            loader = keywords.get("Loader")
            if len(node.args) > 1:
                loader = node.args[1]
            loader_name = (_dotted(loader) or "") if loader is not None else ""
            if function.startswith(("unsafe", "full")) or (
                loader_name.rpartition(".")[2] not in SAFE_YAML_LOADERS
            ):
                self._flag(node, f"calls {name}() without a safe loader")
        allow_pickle = keywords.get("allow_pickle")
        if allow_pickle is not None and not (
            isinstance(allow_pickle, ast.Constant) and allow_pickle.value is False
        ):
            self._flag(node, "passes allow_pickle other than False")
        shell = keywords.get("shell")
        if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
            self._flag(node, f"calls {name}() with shell")
        if name in ("os.system", "os.popen") or (
            module == "subprocess" and function in ("getoutput", "getstatusoutput")
        ):
            self._flag(node, f"calls {name}() (a shell)")
        self.generic_visit(node)


def unsafe_calls(source: str, *, server: bool = False) -> list[tuple[int, str]]:
    """(line, what) for each unsafe construct in a module's source."""
    scanner = _Scanner(server=server)
    scanner.visit(ast.parse(source))
    return scanner.findings


def python_files() -> list[Path]:
    return sorted(path for folder in SCANNED for path in (ROOT / folder).rglob("*.py"))


def test_the_scan_covers_the_server_and_the_worker() -> None:
    files = python_files()
    assert any(path.match("app/main.py") for path in files)
    assert any(path.parts[-2] == "worker" for path in files)
    assert len(files) >= 20


@pytest.mark.parametrize("path", python_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_unsafe_code(path: Path) -> None:
    server = path.relative_to(ROOT).parts[0] == "app"
    findings = unsafe_calls(path.read_text(encoding="utf-8"), server=server)
    assert findings == [], f"{path.relative_to(ROOT)}: {findings}"


BAD = [
    "import pickle\npickle.load(f)",
    "import pickle\npickle.loads(b)",
    "import pickle as p\np.loads(b)",
    "from pickle import loads\nloads(b)",
    "from pickle import load as read\nread(f)",
    "import dill\ndill.loads(b)",
    "import marshal\nmarshal.loads(b)",
    "eval(text)",
    "exec(code)",
    "x = eval ( text )",
    "import yaml\nyaml.load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "import yaml\nyaml.load(text, yaml.FullLoader)",
    "import yaml\nyaml.unsafe_load(text)",
    "from yaml import load\nload(text)",
    "import numpy as np\nnp.load(path, allow_pickle=True)",
    "import numpy as np\nnp.load(path, allow_pickle=flag)",
    "import torch\ntorch.load(path)",
    "module = __import__(name)",
    "import subprocess\nsubprocess.run(cmd, shell=True)",
    "import subprocess as sp\nsp.Popen(cmd, shell=True)",
    "from subprocess import check_output\ncheck_output(cmd, shell=True)",
    "import os\nos.system(cmd)",
]
SERVER_BAD = [
    "import keras\nkeras.models.load_model(path)",
    "from keras.models import load_model",
    "from tensorflow import keras\nmodel = keras.saving.load_model(p, safe_mode=True)",
]
GOOD = [
    "# pickle.load(f) and eval(x) in a comment",
    '"""Never pickle.loads or eval( or exec( or torch.load or yaml.load(."""',
    "text = 'yaml.load(data)'",
    "session.exec(select(Experiment))",
    "model.evaluate(x, y)",
    "my_eval(x)\nexecute(q)\nevaluate(x)",
    "import yaml\nyaml.safe_load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
    "import yaml\nyaml.load(text, Loader=yaml.CSafeLoader)",
    "import numpy as np\nnp.load(path, allow_pickle=False)",
    "import numpy as np\nnp.load(path)",
    "import json\njson.loads(text)",
    "import subprocess\nsubprocess.run(['reglab', 'serve'], check=True)",
    "import subprocess\nsubprocess.run(cmd, shell=False)",
    "import importlib\nimportlib.import_module(name)",
    "model.save(path)",
]


@pytest.mark.parametrize("source", BAD)
def test_the_matcher_finds_each_unsafe_call(source: str) -> None:
    assert unsafe_calls(source), source


@pytest.mark.parametrize("source", SERVER_BAD)
def test_the_matcher_finds_a_model_load_in_the_server(source: str) -> None:
    assert unsafe_calls(source, server=True), source
    assert unsafe_calls(source, server=False) == []  # the worker loads its own models


@pytest.mark.parametrize("source", GOOD)
def test_the_matcher_ignores_comments_strings_and_look_alikes(source: str) -> None:
    assert unsafe_calls(source, server=True) == [], source
