"""The package's shape: modules in the README's order, imports pointing down, public names that resolve."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tlhelpers

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tlhelpers"


def _readme_order() -> list[str]:
    """The modules of the README's module table, top to bottom."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| Module | What it does |") :].split("\n\n")[0]
    return re.findall(r"^\| `([\w.]+)` \|", table, re.M)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if _module_name(p) != ""}


def _imported_modules(name: str, path: Path) -> set[str]:
    """The package's modules ``name`` imports, anywhere in it (inside functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("tlhelpers"):
                target = node.module.removeprefix("tlhelpers").lstrip(".")
            else:
                continue
            candidates = [target] if target else []
            candidates += [f"{target}.{alias.name}".lstrip(".") for alias in node.names]  # from . import core
            found.update(c for c in candidates if c in MODULES)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tlhelpers."):
                    found.add(alias.name.removeprefix("tlhelpers."))
    found.discard(name)
    return found


def test_every_module_is_in_the_readme_table_once():
    order = _readme_order()
    assert len(order) == len(set(order))
    assert sorted(order) == sorted(MODULES), "the README's module table and the package's modules differ"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_imports_only_modules_above_it_in_the_readme_table(name):
    order = _readme_order()
    above = set(order[: order.index(name)])
    upward = sorted(_imported_modules(name, MODULES[name]) - above)
    assert not upward, f"{name} imports {upward}, listed below it in the README's module table"


def test_the_import_rule_is_checked_for_real():
    """The check above sees imports inside functions and relative imports of every form."""
    assert _imported_modules("kit.__main__", MODULES["kit.__main__"]) >= {"core", "kit", "kit.build"}
    assert "decode" in _imported_modules("scan", MODULES["scan"])  # imported inside a function
    assert "models" in _imported_modules("features", MODULES["features"])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_about_500_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= 520, f"{name} has {lines} lines: split it by job"


def test_every_public_name_resolves_and_all_lists_them():
    exports = tlhelpers._EXPORTS
    assert tlhelpers.__all__ == sorted(exports)
    for name, module in exports.items():
        value = getattr(tlhelpers, name)
        assert getattr(value, "__module__", f"tlhelpers.{module}") == f"tlhelpers.{module}", name
    for name in tlhelpers._SUBMODULES:
        assert getattr(tlhelpers, name).__name__ == f"tlhelpers.{name}"
    with pytest.raises(AttributeError, match="no attribute 'pad_batch'"):
        tlhelpers.pad_batch  # noqa: B018  (kept in its module: no notebook uses it)


def test_editors_see_the_same_names_as_the_lazy_table():
    """The TYPE_CHECKING block imports exactly the names of the lazy export table, from the same modules."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    block = next(n for n in ast.walk(tree) if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    seen = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert seen == tlhelpers._EXPORTS


def test_importing_the_package_imports_no_tensorflow():
    code = "import sys, tlhelpers as tl; tl.core; tl.kit; tl.scan; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_another_modules_private_names(name):
    """Names a module shares with others are public; a leading underscore means "this module's own"."""
    private = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(ast.parse(MODULES[name].read_text()))
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("tlhelpers"))
        for alias in node.names
        if alias.name.startswith("_") and alias.name not in MODULES  # the private modules (_tf, _cpu) serve the package
    ]
    assert not private, f"{name} imports private names of other modules: {private}"
