"""The package's layering, checked on its source: what a second model family relies on staying true.

- No import circle among the modules of ``src/fastvideo_hf``, counting imports inside functions and
  ``TYPE_CHECKING`` blocks (a lazy import still ties two modules together).
- ``preprocess/`` and ``training/`` never import each other; ``models/`` imports neither, nor ``tools/`` or ``vsa/``.
- Outside ``models/`` no module names a family's classes (Wan's pipelines, transformer, VAE, text encoder), so that
  adding a family is one module under ``models/`` and not an edit of twenty; the tiny offline models that tests and
  the demo build (``tools/tiny_models.py``, ``testing.py``) are the exception by design.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = "fastvideo_hf"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE
FAMILY_CLASS_NAMES = re.compile(r"\b(Wan[A-Z]\w*|AutoencoderKLWan|UMT5\w*|LTX2\w*|AutoencoderKLLTX2\w*)\b")
FAMILY_NAME_EXEMPT = {"tools/tiny_models.py", "testing.py"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in its body, resolved to known module names."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in SOURCE.rglob("*.py")}
    modules = set(paths)
    return {module: _imports(path, module, modules) for module, path in paths.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a list of modules, first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module], _ = 1, stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        state[module], _ = 2, stack.pop()
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def _room(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def test_no_import_circle_in_the_package():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_rooms_import_only_downward():
    forbidden = {
        "preprocess": {"training", "tools"},
        "training": {"preprocess", "tools"},
        "models": {"preprocess", "training", "tools", "vsa"},
        "vsa": {"preprocess", "training", "tools"},
    }
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if _room(target) in forbidden.get(_room(module), set())
    ]
    assert not wrong, wrong


def test_no_module_outside_models_names_a_family_class():
    named = []
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE).as_posix()
        if relative.startswith("models/") or relative in FAMILY_NAME_EXEMPT:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if FAMILY_CLASS_NAMES.search(line):
                named.append(f"{relative}:{number}: {line.strip()}")
    assert not named, "\n".join(named)


def test_the_checks_see_a_circle_and_a_class_name():
    """The checks above would fail on what they look for (a check that cannot fail proves nothing)."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert FAMILY_CLASS_NAMES.search("from diffusers import WanPipeline")
    assert not FAMILY_CLASS_NAMES.search("Wan2.2 A14B has two experts; wan_qkv_projections")
