"""The layering holds: core imports no CLI library or backend, no import cycles, no backend
imports another, and the README's option table matches the schema."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from timmx.core.job import CommonOptions
from timmx.core.options import specs

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "timmx"
README = SRC.parent / "README.md"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(name: str, *, module_level_only: bool) -> set[str]:
    """timmx modules that ``name`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in MODULES else base)
            if module_level_only:
                if isinstance(node, ast.If | ast.Try | ast.With):
                    children = [*node.body, *getattr(node, "orelse", [])]
                    children += [*getattr(node, "finalbody", [])]
                    for handler in getattr(node, "handlers", []):
                        children += handler.body
                    visit(children)
            elif hasattr(node, "body") or isinstance(node, ast.AST):
                visit(list(ast.iter_child_nodes(node)))

    visit(tree.body)
    return {m for m in found if m in MODULES and m != name}


def test_no_module_level_import_cycles():
    graph = {name: imported_modules(name, module_level_only=True) for name in MODULES}
    cycles = []
    state: dict[str, int] = {}

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                dfs(nxt, stack)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            dfs(name, [])
    assert not cycles, "module-level import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _backend_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 3 and parts[:2] == ["timmx", "backends"] and not parts[2].startswith("_"):
        return parts[2]
    return None


def test_backends_import_no_other_backend():
    wrong = []
    for name in MODULES:
        own = _backend_of(name)
        if own is None:
            continue
        for target in imported_modules(name, module_level_only=False):
            other = _backend_of(target)
            if other is not None and other != own:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "backends import each other:\n" + "\n".join(wrong)


def test_core_imports_no_cli_and_no_backend():
    wrong = []
    for name in MODULES:
        if not name.startswith("timmx.core"):
            continue
        for target in imported_modules(name, module_level_only=False):
            if target.startswith(("timmx.cli", "timmx.backends.")) and not target.startswith(
                "timmx.backends._"
            ):
                wrong.append(f"{name} imports {target}")
    assert not wrong, "core depends on the CLI or a backend:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    "code",
    [
        "import timmx.core.pipeline",
        "import timmx; timmx.backends()",
        "import timmx.core.registry as r; r.default_registry().get('onnx')",
    ],
)
def test_core_and_registry_load_no_typer_or_rich(code):
    probe = (
        f"{code}\nimport sys\n"
        "print(','.join(m for m in ('typer', 'rich', 'click', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{code!r} loaded {out.stdout.strip()}"


def test_readme_option_table_matches_the_schema():
    text = README.read_text(encoding="utf-8")
    section = text.split("### Options every format shares", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(--[a-z0-9-]+)", section))
    declared = set()
    for spec in specs(CommonOptions):
        declared.add(spec.flag)
    missing = declared - documented
    unknown = documented - declared - {"--no-verify", "--no-reparam"}
    assert not missing, f"shared options missing from the README table: {sorted(missing)}"
    assert not unknown, f"README table names options that do not exist: {sorted(unknown)}"
