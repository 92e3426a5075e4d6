"""The layout of the package: dependencies point one way, and everything public is reachable.

docs/design.md draws the house: backend ← nn ← curvature ← optim ← training ←
studies ← jobs ← cli, with matplotlib (plot) used only by the jobs and the
command line. These tests read every module's imports (also those inside
functions) and fail when one points the wrong way.
"""

import ast
import pathlib

import pytest

import minikfac as mk

PACKAGE = pathlib.Path(mk.__file__).parent
#: Each part of the package and its floor: a module may import parts of its own rank or below only.
RANK = {"backend": 0, "threads": 0, "fakegpu": 0,
        "nn": 1, "data": 1, "gradcheck": 1, "models": 1,
        "curvature": 2, "optim": 3, "laplace": 3, "influence": 3, "continual": 3, "training": 4, "checkpoint": 4,
        "studies": 5, "exercises": 5, "plot": 6, "jobs": 6, "cli": 7, "__main__": 8}


def part_of(module):
    """'minikfac.curvature.kron' -> 'curvature'; the package itself -> None."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else None


def imports(path):
    """The minikfac modules a file imports, anywhere in it: ['minikfac.nn.module', 'minikfac', ...]."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("minikfac"):
            if node.module != "minikfac":
                names.append(node.module)
            else:  # the package's __version__ is a name, not a part
                names += [f"minikfac.{a.name}" for a in node.names if a.name != "__version__"]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.startswith("minikfac")]
    return names


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        if name != "minikfac" and part_of(name) not in ("_data", "_exercise_files"):  # a wheel's package data
            yield name, path


@pytest.mark.parametrize("name, path", list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_point_down_the_house(name, path):
    mine = part_of(name)
    assert mine in RANK, f"{name}: a new part of the package needs a rank in this test and in docs/design.md"
    for imported in imports(path):
        theirs = part_of(imported)
        assert theirs is not None, f"{name} imports the package minikfac itself (import the part it needs)"
        assert RANK[theirs] <= RANK[mine], f"{name} (rank {RANK[mine]}) imports {imported} (rank {RANK[theirs]})"


def test_only_jobs_and_the_command_line_draw():
    for name, path in modules():
        if part_of(name) not in ("jobs", "cli", "plot"):
            assert not any(part_of(m) == "plot" for m in imports(path)), f"{name} imports minikfac.plot"
            assert "matplotlib" not in path.read_text(), f"{name} mentions matplotlib"


def test_the_mathematics_keeps_no_clocks_logs_or_files():
    """curvature/ is arrays in, arrays out: no timing, printing or writing (studies and jobs do that)."""
    for path in (PACKAGE / "curvature").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                    for a in node.names} | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not imported & {"time", "logging", "os", "json", "tqdm"}, f"{path.name} imports {imported}"
        calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Name)}
        assert not calls & {"print", "open"}, f"{path.name} calls {calls & {'print', 'open'}}"


@pytest.mark.parametrize("name", ["nn", "optim", "curvature", "studies", "training", "checkpoint", "data",
                                  "models", "gradcheck", "jobs", "plot", "exercises"])
def test_every_part_is_reachable_from_import_minikfac(name):
    assert getattr(mk, name).__name__ == f"minikfac.{name}"


def test_the_readme_names_resolve():
    """The functions the README and the tutorials call through ``mk.`` exist where they are named."""
    for dotted in ("jobs.train.fit", "training.train", "training.evaluate", "checkpoint.save", "checkpoint.load",
                   "curvature.input_factor", "curvature.grad_factor", "curvature.homogeneous_inputs",
                   "curvature.damping.factored_pi", "curvature.KFACBlockDiagonal", "studies.compare",
                   "studies.figure_matrices", "studies.kfc_assumptions.kfc_stages", "models.mlp"):
        target = mk
        for piece in dotted.split("."):
            target = getattr(target, piece)
        assert callable(target), dotted


def test_module_names_are_not_hidden_by_functions():
    """A package exporting a function under the name of one of its modules makes that module unreachable
    as an attribute (``curvature.fisher`` once was both)."""
    for package in (mk.curvature, mk.studies, mk.jobs, mk.optim, mk.nn, mk.plot, mk.cli):
        folder = pathlib.Path(package.__file__).parent
        for path in folder.glob("*.py"):
            if path.stem == "__init__":
                continue
            attribute = getattr(package, path.stem, None)
            assert attribute is None or type(attribute).__name__ == "module", \
                f"{package.__name__}.{path.stem} is a {type(attribute).__name__}, not the module {path.name}"


def test_the_readme_code_runs_as_shown():
    """The README's Python blocks, run in order in one namespace (each builds on the one before)."""
    import re

    readme = (PACKAGE.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 3
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    P = mk.curvature.flatten(namespace["net"]).shape[0]
    assert namespace["F"].shape == (P, P) and namespace["step"].shape == (P,)
