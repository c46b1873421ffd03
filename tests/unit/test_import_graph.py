"""The layout of src/dpunet: no import circles, nothing from tests, the CNI shim alone.

Every import counts, including those inside functions and `if TYPE_CHECKING:` blocks: a
lazy import that closes a circle is still a circle (move the shared piece to a lower
module instead).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping, Set
from pathlib import Path

import dpunet

PACKAGE_DIR = Path(dpunet.__file__).parent
SRC = PACKAGE_DIR.parent
TESTS = Path(__file__).parents[1]
CNI = PACKAGE_DIR / "cni"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """(level, dotted name) of every import in the file, wherever it stands."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield 0, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            for alias in node.names:
                yield node.level, f"{base}.{alias.name}" if base else alias.name


def _absolute(module: str, level: int, name: str) -> str:
    """`name` of a `from ... import` with `level` dots, seen from `module`."""
    if level == 0:
        return name
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    anchor = package.split(".")[: len(package.split(".")) - (level - 1)]
    return ".".join([*anchor, name])


def _known_module(name: str) -> str | None:
    """The longest prefix of `name` that is a module of dpunet (`pkg.mod.Class` -> `pkg.mod`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _packages_of(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:n]) for n in range(1, len(parts))}


def imports_of(module: str) -> set[str]:
    """The dpunet modules that importing `module` runs: those it names and the packages
    holding them (apart from its own packages, already being imported)."""
    out: set[str] = set()
    for level, name in _imported_names(MODULES[module]):
        target = _known_module(_absolute(module, level, name))
        if target is None or target == module:
            continue
        out |= {target, *_packages_of(target)} - _packages_of(module) - {module}
    return out


def find_cycle(graph: Mapping[str, Set[str]]) -> list[str] | None:
    """One import circle of `graph` as a path `[a, b, ..., a]`, or None."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path = [root]
        on_path = {root}
        stack = [iter(sorted(graph[root]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                stack.pop()
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt in done or nxt not in graph:
                continue
            path.append(nxt)
            on_path.add(nxt)
            stack.append(iter(sorted(graph[nxt])))
    return None


GRAPH = {module: imports_of(module) for module in MODULES}


def test_the_scan_sees_every_kind_of_import() -> None:
    # host.daemon imports deviceplugin under TYPE_CHECKING, podresources in a function
    assert {"dpunet.host.kubelet.deviceplugin", "dpunet.host.kubelet.podresources"} <= GRAPH[
        "dpunet.host.daemon"
    ]
    relative = _absolute("dpunet.controller.api", 1, "auth.Principal")
    assert _known_module(relative) == "dpunet.controller.auth"
    assert _absolute("dpunet.cni", 2, "logs.event") == "dpunet.logs.event"
    # importing a module runs the packages holding it
    assert "dpunet.controller.k8s" in GRAPH["dpunet.controller.app"]


def test_find_cycle_reports_the_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"b", "d"}, "d": set()}
    assert find_cycle(graph) == ["b", "c", "b"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circles() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def _component(module: str) -> str:
    """The top-level package (or module) of dpunet that `module` belongs to."""
    return ".".join(module.split(".")[:2])


def test_no_import_circles_between_components() -> None:
    # `python -m` entry points (`__main__`) sit above every component
    graph: dict[str, set[str]] = {_component(module): set() for module in MODULES}
    for module, targets in GRAPH.items():
        if module.endswith(".__main__"):
            continue
        graph[_component(module)] |= {_component(t) for t in targets} - {
            "dpunet",
            _component(module),
        }
    cycle = find_cycle(graph)
    assert cycle is None, "components in a circle: " + " -> ".join(cycle or [])


def test_src_never_imports_tests() -> None:
    test_modules = {path.stem for path in TESTS.rglob("*.py")} | {"tests", "conftest"}
    offenders = [
        f"{module} imports {name}"
        for module, path in MODULES.items()
        for level, name in _imported_names(path)
        if level == 0 and name.split(".")[0] in test_modules
    ]
    assert offenders == []


def test_no_test_fakes_in_the_product() -> None:
    fakes = [m for m in MODULES if m.rpartition(".")[2].startswith(("fake", "mock"))]
    assert fakes == []


def test_cni_shim_and_wire_import_only_the_standard_library() -> None:
    # both are copied onto nodes as a package of their own (dpunet.cni.install): the shim
    # may import the wire module, relatively, and nothing else of dpunet
    allowed = sys.stdlib_module_names | {"__future__"}
    foreign = [
        f"{path.name}: {name}"
        for path in (CNI / "shim.py", CNI / "wire.py")
        for level, name in _imported_names(path)
        if not (level == 0 and name.split(".")[0] in allowed)
        and not (level == 1 and path.name == "shim.py" and name.startswith("wire."))
    ]
    assert foreign == []


DAEMON_PACKAGES = {"dpunet.controller", "dpunet.host", "dpunet.node", "dpunet.dpu"}


def test_daemons_never_import_one_another() -> None:
    # the processes of docs/architecture.md section 2 meet at their APIs, whose models and
    # client live in contract/, never in one another's code
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _component(module) in DAEMON_PACKAGES
        and _component(target) in DAEMON_PACKAGES - {_component(module)}
    )
    assert offenders == []


def test_the_linux_layer_stands_alone() -> None:
    # netlink, netns, ethtool: below every component, importing none of them
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module.startswith("dpunet.linux")
        for target in targets
        if not target.startswith("dpunet.linux")
    )
    assert offenders == []
