"""The package reads as the pipeline: every import goes down the layers below, and no module imports itself in a
circle. Imports inside functions count too (they are dependencies all the same); only the strings that
``secateurs.registry`` and ``secateurs.plugins`` import by name do not, which is how lower layers load the
integrations and built-in entries that register into them."""

from __future__ import annotations

import ast
import pathlib
from collections import defaultdict

import secateurs

ROOT = pathlib.Path(secateurs.__file__).parent

#: lowest first; a unit (top-level module or package of secateurs) may import only units of lower layers
LAYERS: list[tuple[str, ...]] = [
    ("_version", "errors"),
    ("registry", "timing", "_plotting", "plugins", "targets", "progress"),
    ("config",),
    ("plan_checks", "plan_codec"),
    ("plans",),
    ("graph",),
    ("calibration",),
    ("surgery",),
    ("scoring",),
    ("selection",),
    ("depth",),
    ("planning",),
    ("verification",),
    ("rotation",),
    ("compensation",),
    ("sparsity",),
    ("reporting",),
    ("quantization",),
    ("io",),
    ("export",),
    ("api",),
    ("recovery",),
    ("sheared",),
    ("integrations", "testing"),
    ("outofcore",),  # reads Hugging Face checkpoints; the same stages run part by part
    ("__init__",),  # the facade: lazy verbs over everything above
    ("cli",),
    ("__main__",),
]
LEVEL = {unit: i for i, names in enumerate(LAYERS) for unit in names}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _edges(mods: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
                target = ".".join(base + [node.module] if node.module else base) if node.level else (node.module or "")
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                found = subs if len(subs) == len(node.names) else [target, *subs]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                continue
            edges[name].update(t for t in found if t in mods and t != name)
    return edges


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in _modules()}
    missing = sorted(units - set(LEVEL))
    assert not missing, f"add {missing} to LAYERS in tests/test_layers.py (and to docs/architecture.md)"


def test_imports_go_down_the_layers():
    mods = _modules()
    upward = []
    for a, targets in _edges(mods).items():
        for b in targets:
            ua, ub = _unit(a), _unit(b)
            if ua != ub and LEVEL.get(ub, -1) >= LEVEL.get(ua, -1):
                upward.append(f"{a} -> {b}")
    assert not upward, "imports that go up or sideways:\n" + "\n".join(sorted(upward))


def test_no_import_circles():
    mods = _modules()
    edges = _edges(mods)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for m in mods:
        if m not in index:
            visit(m)
    assert not circles, f"import circles: {circles}"


def test_the_checker_sees_an_upward_import(tmp_path):
    """The checker itself: a graph module importing the API is reported."""
    fake = {"secateurs.graph.x": tmp_path / "x.py", "secateurs.api": tmp_path / "api.py"}
    (tmp_path / "x.py").write_text("def f():\n    from secateurs.api import prune\n")
    (tmp_path / "api.py").write_text("")
    edges = _edges(fake)
    assert edges["secateurs.graph.x"] == {"secateurs.api"}
    assert LEVEL[_unit("secateurs.api")] > LEVEL[_unit("secateurs.graph.x")]
