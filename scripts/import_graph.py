#!/usr/bin/env python3
"""The import graph of `minivln_core`, read from the source (no module is imported).

Every `import` / `from ... import` anywhere in a file counts, including the ones inside functions
(lazy imports are still dependencies). Used by the cycle guard in `test/test_architecture.py` and
by `docs/architecture.md`'s picture:

    python scripts/import_graph.py                 # prints subpackage edges and any cycle
    python scripts/import_graph.py --png docs/img/architecture.png
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "minivln_core"
ROS_PACKAGE = "minivln_ros"   # the thin rclpy layer: drawn as one unit on top of the core


def module_name(path: Path, root: Path = ROOT) -> str:
    """`minivln_core/train/finetune.py` -> `minivln_core.train.finetune` (packages end at the folder)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from X import ...` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def module_imports(root: Path = ROOT, packages: tuple[str, ...] = (PACKAGE,)) -> dict[str, set[str]]:
    """Each module of `packages` -> the modules of `packages` it imports (anywhere in the file).

    `from pkg import name` counts as importing `pkg.name` when that is a module, else `pkg`. A string
    constant that names one of the modules counts too: `importlib.import_module(NAME)` (how the CLI
    loads its commands) is an import.
    """
    files = sorted(f for package in packages for f in (root / package).rglob("*.py"))
    modules = {module_name(f, root): f for f in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, name, path.name == "__init__.py")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value \
                    and node.value in modules:
                targets = [node.value]
            else:
                continue
            for target in targets:
                # `import a.b.c` depends on the deepest module of ours it names.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def unit_of(module: str, package: str = PACKAGE) -> str:
    """The architectural unit of a module: its subpackage, or the root module itself.

    `minivln_core.train.finetune` -> `train`; `minivln_core.errors` -> `errors`;
    `minivln_core.data.synth.world` -> `data` (nested packages belong to their top subpackage);
    every module of the ROS layer is the one unit `minivln_ros`.
    """
    if module == ROS_PACKAGE or module.startswith(ROS_PACKAGE + "."):
        return ROS_PACKAGE
    rest = module[len(package) + 1:] if module.startswith(package + ".") else module
    return rest.split(".")[0] if rest else "__init__"


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Subpackage-level edges (self-loops dropped)."""
    units: dict[str, set[str]] = {}
    for module, deps in graph.items():
        u = unit_of(module)
        units.setdefault(u, set())
        for d in deps:
            if unit_of(d) != u:
                units[u].add(unit_of(d))
    return units


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle inside a strongly connected component: a -> b -> ... -> a."""
    members = set(component)
    start = component[0]
    # Breadth-first from start back to start, staying in the component.
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start] + path[::-1][1:] + [start] if len(path) > 1 else [start, v, start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return component


def layers(units: dict[str, set[str]]) -> dict[str, int]:
    """Longest-path depth of each unit in the (acyclic) unit graph: 0 = depends on nothing."""
    depth: dict[str, int] = {}

    def d(u: str, seen: tuple[str, ...] = ()) -> int:
        if u in depth:
            return depth[u]
        if u in seen:  # a cycle: report it elsewhere, do not loop here
            return 0
        depth[u] = 1 + max((d(v, seen + (u,)) for v in units.get(u, ())), default=-1)
        return depth[u]

    for u in units:
        d(u)
    return depth


def transitive_reduction(units: dict[str, set[str]]) -> dict[str, set[str]]:
    """The edges not implied by a longer path (the picture draws only these; the graph is acyclic)."""
    def reach(u: str, seen: set[str]) -> set[str]:
        for v in units.get(u, ()):
            if v not in seen:
                seen.add(v)
                reach(v, seen)
        return seen

    return {u: {v for v in deps if not any(v in reach(w, set()) for w in deps if w != v)}
            for u, deps in units.items()}


def draw(units: dict[str, set[str]], out: Path) -> None:
    """A layered picture of the unit graph: bottom modules at the bottom, arrows point down.

    Only the transitive reduction is drawn (an arrow a -> c implied by a -> b -> c is left out)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    units = {u: {v for v in deps if v != PACKAGE} for u, deps in units.items() if u not in (PACKAGE, "__main__")}
    depth = layers(units)
    edges = transitive_reduction(units)
    rows: dict[int, list[str]] = {}
    for u in sorted(units):
        rows.setdefault(depth[u], []).append(u)
    width = max(len(r) for r in rows.values())
    pos = {name: ((i + 0.5) * width / len(names), level) for level, names in rows.items()
           for i, name in enumerate(names)}
    bottom = {u for u in units if not units[u] or units[u] <= {"errors", "io_utils", "paths"}}
    fig, ax = plt.subplots(figsize=(8, 0.62 * (len(rows) + 1)))
    for u, deps in edges.items():
        for v in deps:
            ax.add_patch(FancyArrowPatch(pos[u], pos[v], arrowstyle="-|>", mutation_scale=9, color="0.45",
                                         lw=0.8, shrinkA=10, shrinkB=13, connectionstyle="arc3,rad=0.05", zorder=4))
    for name, (x, y) in pos.items():
        colour = "#f3e9d2" if name in bottom else "#dfeaf8"
        ax.text(x, y, name, ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.3", fc=colour, ec="#4a6fa5"))
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-0.6, max(rows) + 0.6)
    ax.axis("off")
    ax.set_title("minivln_core subpackages and the ROS layer: who imports whom\n"
                 "(arrows point down; arrows implied by a longer path are not drawn; generated by "
                 "scripts/import_graph.py)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--png", type=Path, help="write the layered picture here")
    parser.add_argument("--modules", action="store_true", help="module-level cycles as well")
    args = parser.parse_args(argv)
    graph = module_imports(packages=(PACKAGE, ROS_PACKAGE))
    units = unit_graph(graph)
    depth = layers(units)
    for u in sorted(units, key=lambda u: (depth[u], u)):
        print(f"[{depth[u]}] {u} -> {', '.join(sorted(units[u])) or '-'}")
    cycles = find_cycles(units)
    if args.modules:
        cycles += find_cycles(graph)
    for comp in cycles:
        g = units if comp[0] in units else graph
        print("CYCLE: " + " -> ".join(cycle_path(g, comp)))
    if args.png:
        draw(units, args.png)
        print(f"wrote {args.png}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
