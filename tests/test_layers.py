"""Imports go one way: records -> models -> tasks -> feedback -> reward -> optimize -> domains -> loop -> faces.

Every ``rlhfkit`` import in ``src/`` (at the top of a module or inside a function) is read from the source and
checked against the layer of the module that makes it: a module may import its own layer and the layers below,
never a layer above (docs/architecture.md draws them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "rlhfkit"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("records", ("types", "feedback_records", "errors", "checks", "files", "nets", "__init__")),
    ("models", ("models",)),
    ("tasks", ("tasks",)),
    ("feedback", ("feedback",)),
    ("reward", ("reward",)),
    ("optimize", ("optimize",)),
    ("domains", ("domains",)),
    ("loop", ("loop", "config", "config_layout")),
    ("faces", ("app", "cli", "report", "report_samples", "__main__", "experiments")),
]
"""Bottom first; a name is a module (``loop``) or a package (``feedback``) directly under rlhfkit."""


def layer_of(module: str) -> int:
    """The layer index of ``rlhfkit.<...>``."""
    top = module.split(".")[1] if module.count(".") else "__init__"
    for i, (_, names) in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to docs/architecture.md)")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def rlhfkit_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of an rlhfkit module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    inside = path.is_relative_to(SRC)
    package = (
        "" if not inside else _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("rlhfkit.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level and not inside:
                continue
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            if name == "rlhfkit":  # from rlhfkit import x: x is a module
                found += [(node.lineno, f"rlhfkit.{a.name}") for a in node.names]
            elif name.startswith("rlhfkit."):
                found.append((node.lineno, name))
    return found


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        own = layer_of(module)
        for line, target in rlhfkit_imports(path):
            if layer_of(target) > own:
                bad.append(
                    f"{path.relative_to(SRC.parent)}:{line}: {LAYERS[own][0]} imports {target} "
                    f"({LAYERS[layer_of(target)][0]})"
                )
    return bad


def test_imports_go_one_way() -> None:
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The reader finds imports at the top, inside functions and relative ones, and the check would flag them."""
    path = tmp_path / "mod.py"
    path.write_text(
        "from rlhfkit.loop import Run\n"
        "def f():\n    import rlhfkit.app.server\n    from rlhfkit import report\n"
        "from . import x\n",
        encoding="utf-8",
    )
    found = [m for _, m in rlhfkit_imports(path)]
    assert found[:3] == ["rlhfkit.loop", "rlhfkit.app.server", "rlhfkit.report"]
    assert layer_of("rlhfkit.loop") > layer_of("rlhfkit.feedback.store") > layer_of("rlhfkit.types")
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("rlhfkit.somewhere_new")
