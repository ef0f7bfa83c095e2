"""The package's shape, read from its source with `ast`: imports flow one way and no module
asks which type an architecture is except the target registry (simulator/targets.py)."""

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> installed package (pyproject's package-dir)
PACKAGES = {
    "einsim": "einsim",
    "einsum": "einsim.einsum",
    "workloads": "einsim.workloads",
    "simulator": "einsim.simulator",
    "mapper": "einsim.mapper",
    "gpu_validate": "einsim.gpu_validate",
    "sweeps": "einsim.sweeps",
    "dashboard": "einsim.dashboard",
}
# The order imports flow in (einsum <- workloads <- simulator <- mapper <- gpu_validate/sweeps
# <- dashboard and einsim's own modules (cli, model_estimate) <- the `einsim` package itself).
LAYER = {
    "einsim.einsum": 0,
    "einsim.workloads": 1,
    "einsim.simulator": 2,
    "einsim.mapper": 3,
    "einsim.gpu_validate": 4,
    "einsim.sweeps": 4,
    "einsim.dashboard": 5,
}
ARCHITECTURE_TYPES = {"Architecture", "GpuArchitecture"}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every einsim module: name -> (file, is a package's __init__)."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts]
            name = ".".join([package, *(p for p in parts if p != "__init__")])
            out[name] = (path, path.name == "__init__.py")
    return out


def _imports(tree: ast.Module, deferred: bool):
    """Import statements at module level (under `if`, `try`, ...), and with `deferred` also
    those inside functions; never those under `if TYPE_CHECKING:`."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not deferred:
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(deferred: bool) -> nx.DiGraph:
    """Module -> the einsim modules it imports (`from pkg import sub` is an edge to pkg.sub)."""
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text()), deferred):
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                    base = f"{anchor}.{node.module}" if node.module else anchor
                targets = [(base, a.name) for a in node.names]
            for base, member in targets:
                if member and f"{base}.{member}" in modules:
                    graph.add_edge(name, f"{base}.{member}")
                elif base in modules:
                    graph.add_edge(name, base)
    return graph


def _layer(module: str) -> int:
    package = ".".join(module.split(".")[:2])
    if module == "einsim":
        return 6
    return LAYER.get(package, 5)  # einsim's own modules: cli, model_estimate, ...


def test_the_graph_sees_the_imports_it_should():
    """The walker itself: known edges of each kind (absolute, relative, deferred)."""
    eager, full = import_graph(deferred=False), import_graph(deferred=True)
    assert eager.has_edge("einsim.mapper.search", "einsim.mapper.objectives")  # relative
    assert eager.has_edge("einsim.simulator.gpu.cost", "einsim.simulator.report")  # ..
    assert eager.has_edge("einsim.mapper.gpu", "einsim.simulator.gpu")  # absolute
    assert full.has_edge("einsim.mapper.search", "einsim.mapper.gpu")  # inside a function
    assert not eager.has_edge("einsim.mapper.search", "einsim.mapper.gpu")


def test_no_import_cycle_at_import_time():
    cycles = list(nx.simple_cycles(import_graph(deferred=False)))
    assert not cycles, cycles


def test_imports_flow_one_way_even_inside_functions():
    """einsum <- workloads <- simulator <- mapper <- gpu_validate/sweeps <- dashboard/cli."""
    graph = import_graph(deferred=True)
    upward = [(a, b) for a, b in graph.edges if _layer(b) > _layer(a)]
    assert not upward, upward


@pytest.mark.parametrize("package", ["simulator", "mapper", "sweeps", "workloads", "dashboard"])
def test_no_import_cycle_inside_a_package_even_inside_functions(package):
    """With deferred imports too (the old simulator/architecture -> gpu -> model ->
    architecture and mapper/gpu <-> mapper/search cycles). einsim.einsum keeps two deferred
    ones of its own: `Cascade.evaluate` calls the executor, which dispatches to the tiled one."""
    graph = import_graph(deferred=True)
    prefix = PACKAGES[package] + "."
    inside = graph.subgraph(n for n in graph if n.startswith(prefix))
    cycles = list(nx.simple_cycles(inside))
    assert not cycles, cycles


def test_the_two_targets_do_not_import_each_other():
    """simulator.spatial and simulator.gpu meet only in what they share (targets, report,
    shape, spec, lowering), deferred imports included."""
    graph = import_graph(deferred=True)
    kinds = ("einsim.simulator.spatial", "einsim.simulator.gpu")
    crossing = [
        (a, b)
        for a, b in graph.edges
        for mine, other in (kinds, kinds[::-1])
        if a.startswith(mine) and b.startswith(other)
    ]
    assert not crossing, crossing


def _type_tests(tree: ast.Module):
    """(line, type name) of each isinstance/issubclass whose class argument names an
    architecture type (alone, in a tuple, or in a union)."""
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("isinstance", "issubclass")
            and len(node.args) == 2
        ):
            continue
        for part in ast.walk(node.args[1]):
            name = part.id if isinstance(part, ast.Name) else getattr(part, "attr", None)
            if name in ARCHITECTURE_TYPES:
                yield node.lineno, name


def test_type_tests_are_found():
    code = (
        "isinstance(a, GpuArchitecture)\nisinstance(a, (int, sim.Architecture))\nisinstance(a, int)"
    )
    assert [name for _, name in _type_tests(ast.parse(code))] == [
        "GpuArchitecture",
        "Architecture",
    ]


def test_only_the_target_registry_asks_an_architecture_its_type():
    allowed = ROOT / "simulator" / "targets.py"
    files = [path for path, _ in _modules().values()] + sorted((ROOT / "benchmarks").rglob("*.py"))
    found = [
        f"{path.relative_to(ROOT)}:{line} {name}"
        for path in files
        if path != allowed
        for line, name in _type_tests(ast.parse(path.read_text()))
    ]
    assert not found, found
    assert list(_type_tests(ast.parse(allowed.read_text())))  # the one dispatcher does
