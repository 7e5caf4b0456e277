"""lib/ is plain Python in layers: no import cycle, no Dagster, every module importable.

The import graph is read statically from every ``import`` statement, including those inside
functions (an import deferred to break a cycle is still a cycle in the design).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "agent_pipeline" / "lib"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in sorted(LIB.rglob("*.py"))}


def _imports(path: Path, module: str) -> set[str]:
    """Every module named by an import in ``path`` (absolute, resolved from relative imports)."""
    out = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: {d for d in _imports(p, m) if d in modules and d != m} for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_lib_has_no_import_cycle():
    graph = import_graph()
    assert "agent_pipeline.lib.router.model" in graph and graph["agent_pipeline.lib.router.model"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in lib/: " + " -> ".join(cycle)


def test_lib_imports_neither_dagster_nor_the_dagster_layer():
    bad = []
    for module, path in _modules().items():
        for dep in _imports(path, module):
            if dep.split(".")[0] == "dagster" or dep.startswith(("agent_pipeline.defs", "agent_pipeline.cli")):
                bad.append(f"{module} imports {dep}")
    assert not bad, "\n".join(bad)


def test_every_lib_module_imports_in_a_fresh_interpreter():
    """Every module imports in a new interpreter, in name order (nothing relies on a test's imports)."""
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    proc = subprocess.run([sys.executable, "-c", code, *sorted(_modules())], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_lib_does_not_read_the_environment():
    """Settings come in as arguments (resources, the CLI): lib/ never reads os.environ / os.getenv."""
    # One exception: OpenTelemetry is configured by its standard OTEL_* variables (the SDK reads
    # them itself); lib/core/telemetry.py follows that convention.
    allowed = {LIB / "core" / "telemetry.py"}
    bad = []
    for path in (p for p in _modules().values() if p not in allowed):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("environ", "getenv")
                and getattr(node.value, "id", "") == "os"
            ):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "lib/ reads the environment at:\n" + "\n".join(bad)


def test_files_are_replaced_only_by_the_atomic_write_helper():
    """One atomic-write helper (lib/core/files.py): no other module of the package renames a
    temporary file over its target itself (``os.replace``/``os.rename``, ``Path.replace``/``rename``
    with a path argument). ``agent_pipeline/_home.py`` is the one exception: it runs at interpreter
    start and imports nothing of the package."""
    allowed = {LIB / "core" / "files.py", ROOT / "agent_pipeline" / "_home.py"}
    bad = []
    for path in sorted((ROOT / "agent_pipeline").rglob("*.py")):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name, owner = node.func.attr, getattr(node.func.value, "id", "")
            if (owner == "os" and name in ("replace", "rename")) or (
                name in ("replace", "rename") and len(node.args) == 1 and not node.keywords
            ):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "files replaced outside lib/core/files.py at:\n" + "\n".join(bad)
