"""kanzoo's imports run one way: errors/io → layers → weights/recipes → models → (compat, hub, peft, export, profile,
metrics) → workflows → cli. Read from the source with ``ast``, so the rule stays true as the code changes."""
import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

import kanzoo

PACKAGE = Path(kanzoo.__file__).parent

#: tier of each top-level part of the package; a module may import its own tier or lower ones
TIERS: Dict[str, int] = {
    "kanzoo._version": 0, "kanzoo.errors": 0, "kanzoo.io": 0,
    "kanzoo.layers": 1,
    "kanzoo.weights": 2, "kanzoo.recipes": 2,
    "kanzoo.models": 3,
    "kanzoo.compat": 4, "kanzoo.hub": 4, "kanzoo.peft": 4, "kanzoo.export": 4, "kanzoo.profile": 4,
    "kanzoo.metrics": 4,
    "kanzoo.workflows": 5,
    "kanzoo.cli": 6, "kanzoo.__main__": 6,
}
#: the package's front door and deprecated aliases: they may import anything, and nothing imports them
ENTRY_POINTS = {"kanzoo", "kanzoo.segmentation", "kanzoo.hub.download", "kanzoo.models.unet_kan"}
#: function-level imports of first-party code allowed outside the CLI (each defers something heavy)
MAX_DEFERRED = 10


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(module: str, node: ast.AST, is_package: bool, known: Set[str]) -> List[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "kanzoo"]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "kanzoo":
        return []
    out = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        out.append(sub if sub in known else target)
    return out


def _imports() -> List[Tuple[str, str, int, bool]]:
    """(importer, imported, line, inside a function) for every first-party import."""
    modules = _modules()
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
        for node in ast.walk(tree):
            targets = _targets(name, node, path.name == "__init__.py", set(modules))
            if not targets:
                continue
            up, in_function = node, False
            while up in parents:
                up = parents[up]
                if isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    in_function = True
                    break
            found += [(name, t, node.lineno, in_function) for t in targets]
    return found


def _tier(module: str) -> int:
    for prefix in sorted(TIERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return TIERS[prefix]
    raise AssertionError(f"{module} is in no tier: add its top-level part to TIERS")


def test_every_module_has_a_tier():
    for name in _modules():
        if name not in ENTRY_POINTS:
            _tier(name)


def test_no_module_imports_a_higher_tier():
    upward = [f"{a} (tier {_tier(a)}) imports {b} (tier {_tier(b)}) at line {line}"
              for a, b, line, _ in _imports() if a not in ENTRY_POINTS and b not in ENTRY_POINTS
              and _tier(b) > _tier(a)]
    assert not upward, "\n".join(upward)


def test_nothing_imports_the_entry_points():
    offenders = [f"{a} imports {b} at line {line}" for a, b, line, _ in _imports()
                 if b in ENTRY_POINTS and a not in ENTRY_POINTS and b != "kanzoo"]
    offenders += [f"{a} imports the kanzoo package itself at line {line}" for a, b, line, _ in _imports()
                  if b == "kanzoo" and a not in ENTRY_POINTS]
    assert not offenders, "\n".join(offenders)


def test_imports_form_no_cycle():
    graph: Dict[str, Set[str]] = {}
    for a, b, _, _ in _imports():
        if a != b and not b.startswith(a + "."):  # a package importing its own submodules is not a cycle
            graph.setdefault(a, set()).add(b)
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_first_party_imports_are_at_module_level():
    deferred = [f"{a}:{line} imports {b}" for a, b, line, inside in _imports()
                if inside and _tier(a) < TIERS["kanzoo.cli"] and a not in ENTRY_POINTS]
    assert len(deferred) <= MAX_DEFERRED, "\n".join(deferred)


@pytest.mark.parametrize("tier_name", ["kanzoo.layers", "kanzoo.weights", "kanzoo.models"])
def test_lower_tiers_never_import_upward_even_by_name(tier_name):
    """No string-based import (importlib) sneaks an upward dependency into the lower tiers."""
    for name, path in _modules().items():
        if name.startswith(tier_name):
            text = path.read_text(encoding="utf-8")
            assert "import_module(" not in text and "__import__(" not in text, name
