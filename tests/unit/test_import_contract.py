"""Import contracts over every module of ``auren_core`` (static, from the source).

For each module, the packages it loads *at import time* (module-level imports,
followed transitively through auren_core; imports inside functions and under
``if TYPE_CHECKING:`` are lazy by design and do not count):

- the engine never loads the UI (``textual``, ``rich``, ``auren_tui``);
- only the agent-side modules (the CrewAI integration with its scripted LLM, the CrewAI
  memory adapters, the ChromaDB tier, the demo) may load ``crewai`` / ``chromadb``,
  so ``auren top`` and the servers never pay for them;
- only ``auren_core.otlp`` may load ``grpc``;
- module-level imports inside auren_core form no cycle.

A negative control runs the same checker on a small synthetic package that breaks
each rule, so a checker that sees nothing cannot pass.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "auren_core"
UI = {"textual", "rich", "auren_tui"}
AGENT_SIDE = {"crewai", "chromadb"}
AGENT_SIDE_MODULES = (
    "auren_core.integrations.",
    "auren_core.memory.crewai_",
    "auren_core.memory._crewai_common",
    "auren_core.memory._chroma_tier",
    "auren_core.demo.",
)
GRPC_MODULES = ("auren_core.otlp",)


def module_names(root: Path, package: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [package, *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def top_level_imports(name: str, path: Path, is_package: bool) -> set[str]:
    """Modules imported at module level (absolute names, relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = name if is_package else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(body: Iterable[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join([*base, node.module] if node.module else base)
                else:
                    mod = node.module or ""
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names)  # submodules imported
            elif isinstance(node, ast.If) and not _type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return found


def graph(root: Path, package: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(internal edges, external top-level packages) per module."""
    mods = module_names(root, package)
    internal: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for name, path in mods.items():
        imps = top_level_imports(name, path, path.name == "__init__.py")
        internal[name] = set()
        external[name] = set()
        for imp in imps:
            if imp.split(".")[0] == package:
                # the module itself, or the package whose attribute was imported
                target = imp if imp in mods else imp.rsplit(".", 1)[0]
                if target in mods and target != name:
                    internal[name].add(target)
                    # importing a.b.c runs a/__init__ and a/b/__init__ first
                    parts = target.split(".")
                    for i in range(1, len(parts)):
                        parent = ".".join(parts[:i])
                        if parent in mods and parent != name:
                            internal[name].add(parent)
            else:
                external[name].add(imp.split(".")[0])
    return internal, external


def loaded_by(name: str, internal: dict[str, set[str]], external: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    out: set[str] = set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        out |= external.get(m, set())
        todo.extend(internal.get(m, ()))
    return out


def cycles(internal: dict[str, set[str]]) -> list[list[str]]:
    """Elementary cycles found by DFS (one per back edge), package-init edges excluded."""
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def edges(m: str) -> set[str]:  # a package importing its own submodule is not a cycle
        return {t for t in internal.get(m, ()) if not t.startswith(m + ".")} - {
            p for p in internal.get(m, ()) if m.startswith(p + ".")
        }

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges(m)):
            if state.get(t) == 1:
                found.append([*stack[stack.index(t) :], t])
            elif t not in state:
                dfs(t)
        stack.pop()
        state[m] = 2

    for m in sorted(internal):
        if m not in state:
            dfs(m)
    return found


def violations(root: Path, package: str) -> list[str]:
    internal, external = graph(root, package)
    out: list[str] = []
    for name in sorted(internal):
        loaded = loaded_by(name, internal, external)
        if loaded & UI:
            out.append(f"{name} loads the UI: {sorted(loaded & UI)}")
        agent_side = name.startswith(AGENT_SIDE_MODULES) or name in {
            m.rstrip(".") for m in AGENT_SIDE_MODULES
        }
        if loaded & AGENT_SIDE and not agent_side:
            out.append(f"{name} loads agent-side packages: {sorted(loaded & AGENT_SIDE)}")
        if "grpc" in loaded and not name.startswith(GRPC_MODULES):
            out.append(f"{name} loads grpc")
    out.extend("import cycle: " + " -> ".join(c) for c in cycles(internal))
    return out


MODULES = sorted(module_names(ROOT, "auren_core"))
_VIOLATIONS = violations(ROOT, "auren_core")


def test_every_module_is_checked() -> None:
    assert len(MODULES) > 50 and "auren_core.state" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_import_contract(module: str) -> None:
    mine = [
        v
        for v in _VIOLATIONS
        if v.startswith(module + " ") or (v.startswith("import cycle: " + module + " "))
    ]
    assert not mine, mine


def test_no_import_cycles() -> None:
    assert not [v for v in _VIOLATIONS if v.startswith("import cycle")]


def test_negative_control(tmp_path: Path) -> None:
    """The checker finds each kind of violation in a package built to have them."""
    pkg = tmp_path / "fake"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "ui.py").write_text("from . import helper\n")
    (pkg / "helper.py").write_text("import rich.console\nimport crewai\n")
    (pkg / "lazy.py").write_text("def f():\n    import textual\n")
    (pkg / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import textual\n"
    )
    (pkg / "sub" / "a.py").write_text("from .b import x\n")
    (pkg / "sub" / "b.py").write_text("from fake.sub.a import y\n")
    found = violations(pkg, "fake")
    assert "fake.ui loads the UI: ['rich']" in found
    assert "fake.ui loads agent-side packages: ['crewai']" in found
    assert not any(v.startswith(("fake.lazy ", "fake.typed ")) for v in found)
    assert any(v.startswith("import cycle: fake.sub.a -> fake.sub.b -> fake.sub.a") for v in found)
