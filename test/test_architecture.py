"""Guards of the package structure (docs/architecture.md): the core never loads rclpy, and no import
cycle runs between minivln_core's subpackages, counting imports inside functions."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_importing_every_core_module_leaves_rclpy_unloaded() -> None:
    code = """
import importlib, pkgutil, sys
import minivln_core
names = [m.name for m in pkgutil.walk_packages(minivln_core.__path__, "minivln_core.")
         if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
ros = sorted(m for m in sys.modules if m == "rclpy" or m.startswith(("rclpy.", "rosidl_", "rcl_interfaces")))
print(len(names), ros)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    count, loaded = out.stdout.split(" ", 1)
    assert int(count) > 100                 # every module was imported
    assert loaded.strip() == "[]", f"importing minivln_core loaded ROS modules: {loaded}"


def test_no_import_cycle_between_core_subpackages() -> None:
    ig = _import_graph()
    graph = ig.module_imports()
    units = ig.unit_graph(graph)
    assert {"agent", "train", "distill", "experiments", "commands", "frames", "robot", "sim"} <= set(units)
    cycles = [" -> ".join(ig.cycle_path(units, c)) for c in ig.find_cycles(units)]
    assert not cycles, f"import cycles between subpackages: {cycles}"


def test_no_import_cycle_between_core_modules() -> None:
    ig = _import_graph()
    graph = ig.module_imports()
    cycles = [" -> ".join(ig.cycle_path(graph, c)) for c in ig.find_cycles(graph)]
    assert not cycles, f"import cycles between modules: {cycles}"


def test_the_cycle_finder_sees_lazy_imports(tmp_path) -> None:
    """A cycle made only by an import inside a function is found (the guard can fail)."""
    ig = _import_graph()
    pkg = tmp_path / "minivln_core"
    for sub, text in {"a": "from minivln_core.b.y import f\n",
                      "b": "def f():\n    from minivln_core.a.x import g\n    return g\n"}.items():
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
        (pkg / sub / ("x.py" if sub == "a" else "y.py")).write_text(text + "def g():\n    pass\n")
    (pkg / "__init__.py").write_text("")
    units = ig.unit_graph(ig.module_imports(tmp_path))
    assert units == {"minivln_core": set(), "a": {"b"}, "b": {"a"}}
    assert ig.find_cycles(units) == [["a", "b"]]


def test_training_never_imports_distillation() -> None:
    units = _import_graph().unit_graph(_import_graph().module_imports())
    assert "distill" not in units["train"]
    assert units["commands"] >= {"experiments"} and "commands" not in set().union(
        *(deps for name, deps in units.items() if name not in ("commands", "cli", "__main__")))
