"""The shape of the code, checked so that it cannot drift back (docs/architecture.md).

- the import-linter contracts of pyproject.toml (``[tool.importlinter]``): the layers, "metrics
  imports no model module", independent families and losses, no cycles between siblings;
- no import cycle between files, function-level imports included (import-linter's acyclic
  contract compares siblings; this compares every pair of modules);
- no module under ``src/ganzoo`` imports the root package (the lazy facade);
- at most 25 function-level imports of ganzoo's own modules, each there to keep
  ``import ganzoo`` cheap or an optional extra optional;
- no function over 100 lines of code (docstrings, comments and blank lines not counted);
- the run folder's file names are spelled in ``ganzoo/rundir.py`` only;
- comments and docstrings cite what a reader can open, not private documents.

Every check reads the source with ``ast`` (nothing is imported), so it runs in a second.
"""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import tokenize
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "ganzoo"
MAX_FUNCTION_IMPORTS = 25
MAX_FUNCTION_LINES = 100


# -- reading the source -----------------------------------------------------------------------
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@lru_cache(maxsize=None)
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:``: imports for type checkers, never run."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The ganzoo modules an import statement imports (``from . import x`` -> the module x)."""
    modules = _modules()
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".") if is_package else module.split(".")[:-1]
            parts = parts[:len(parts) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
        subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
        names = subs if len(subs) == len(node.names) else [base, *subs]
    out = []
    for name in names:
        while name and name not in modules:  # ganzoo.hub.WEIGHTS_NAME -> ganzoo.hub
            name = name.rpartition(".")[0]
        if name.startswith("ganzoo"):
            out.append(name)
    return out


def _imports() -> list[tuple[str, str, int, bool]]:
    """(importer, imported, line, inside a function) for every import of a ganzoo module."""
    out = []
    for module, path in _modules().items():
        tree = _tree(path)
        skip = _type_checking_nodes(tree)
        in_function = {id(n) for f in ast.walk(tree)
                       if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip:
                for target in _targets(module, path.name == "__init__.py", node):
                    out.append((module, target, node.lineno, id(node) in in_function))
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


# -- the checks ---------------------------------------------------------------------------------
def test_import_linter_contracts():
    """``lint-imports`` with pyproject.toml's contracts, on this checkout's ``src``."""
    pytest.importorskip("importlinter", reason="import-linter is in the test extra")
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code, str(ROOT / "pyproject.toml")],
                            cwd=SRC, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout, result.stdout[-6000:]


def test_no_import_cycle_between_files():
    edges: dict[str, set[str]] = {}
    for importer, imported, _, _ in _imports():
        # A module's own packages are initialised before it whatever it imports.
        if importer != imported and not importer.startswith(imported + "."):
            edges.setdefault(importer, set()).add(imported)
    assert _cycles(edges) == []


def test_no_module_imports_the_root_package():
    """``ganzoo/__init__`` re-exports from the layers; a module importing it depends on all of
    them (the chains of every cycle the lazy facade removed)."""
    found = [f"{importer}:{line}" for importer, imported, line, _ in _imports()
             if imported == "ganzoo" and importer != "ganzoo"]
    assert found == []


def test_function_level_imports_of_own_modules():
    found = [f"{importer}:{line} -> {imported}" for importer, imported, line, inside in _imports()
             if inside]
    assert len(found) <= MAX_FUNCTION_IMPORTS, "\n".join(found)


def _code_lines(path: Path, start: int, end: int, docstrings: set[int]) -> int:
    """Lines ``start..end`` that hold code: not blank, not only a comment, not a docstring."""
    lines = path.read_text(encoding="utf-8").splitlines()[start - 1:end]
    return sum(1 for offset, line in enumerate(lines, start)
               if line.strip() and not line.strip().startswith("#") and offset not in docstrings)


def _docstring_lines(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and node.body and isinstance(node.body[0], ast.Expr) \
                and isinstance(node.body[0].value, ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            out.update(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    return out


def test_no_function_over_100_lines():
    long = []
    for module, path in _modules().items():
        tree = _tree(path)
        docstrings = _docstring_lines(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(path, node.lineno, node.end_lineno, docstrings)
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {n} lines")
    assert long == []


# The names of a run folder's files and folders (training.trainer writes them; experiments and
# the report read them); the torch hub cache's "checkpoints" folder is another thing.
RUN_NAMES = {"metrics.jsonl", "final", "samples", "checkpoints", "latest"}
NOT_A_RUN_FOLDER = {("ganzoo.hub", "checkpoints")}


def _path_literals(tree: ast.Module):
    """String constants joined into a path: an operand of ``/`` or an ``os.path.join``
    argument, and the whole of a literal such as ``"checkpoints/latest"``."""
    for node in ast.walk(tree):
        parts = []
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            parts = [node.left, node.right]
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.path.join", "join"):
            parts = node.args
        for part in parts:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                yield part.lineno, part.value
        # A whole path such as "checkpoints/latest"; prose (help texts, docstrings) has spaces.
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and ("/" in node.value or node.value == "metrics.jsonl") \
                and not any(c.isspace() for c in node.value):
            yield node.lineno, node.value


def test_run_folder_names_are_spelled_in_rundir_only():
    found = []
    for module, path in _modules().items():
        if module == "ganzoo.rundir":
            continue
        for line, value in _path_literals(_tree(path)):
            names = set(value.strip("/").split("/"))
            for name in names & RUN_NAMES:
                if (module, name) not in NOT_A_RUN_FOLDER:
                    found.append(f"{module}:{line} {value!r}")
    assert found == []


PRIVATE_SOURCES = re.compile(r"\bthe plan\b|\bthe notes\b|\bthe DCGAN log\b|\bground rules\b|"
                             r"\bplan's\b|\bgenerator plan\b", re.IGNORECASE)


def _comments_and_docstrings(path: Path):
    text = path.read_text(encoding="utf-8")
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string
    tree = _tree(path)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield node.body[0].lineno, doc


def test_comments_cite_what_a_reader_can_open():
    found = [f"{_module_name(path)}:{line}: {PRIVATE_SOURCES.search(text).group(0)!r}"
             for path in _modules().values() for line, text in _comments_and_docstrings(path)
             if PRIVATE_SOURCES.search(text)]
    # The shipped queue and config files: their comments and descriptions are read as docs.
    for path in sorted(PACKAGE.rglob("*.yaml")):
        for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if PRIVATE_SOURCES.search(text):
                found.append(f"{path.relative_to(PACKAGE)}:{line}: {text.strip()!r}")
    assert found == []
