"""The course site's sources and the notebooks: what can be checked without building the site.

Building the site (``make docs``) executes every tutorial and takes minutes, and
checking it needs a browser (``make docs-check``); here are the fast parts: a
tutorial executes as a notebook in a Jupyter kernel with its figures under
``report/``, the build's page writer and link rewriter do what they say, and
the study path lists the whole course.
"""

import base64
import importlib.util
import os
import pathlib
import re
import shutil
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def build_site():
    return _load("build_site")


def test_a_tutorial_executes_as_a_notebook_with_its_figures_under_report(tmp_path, monkeypatch):
    """A notebook server runs a notebook in its folder: tutorials/. Its figures go to report/tutorials/."""
    jupytext = pytest.importorskip("jupytext", reason="jupytext comes with the dev extra")
    nbclient = pytest.importorskip("nbclient", reason="nbclient comes with the dev extra")
    pytest.importorskip("ipykernel", reason="ipykernel comes with the dev extra")
    tutorial = ROOT / "tutorials" / "02_layers_and_caches.py"
    folder = tmp_path / "tutorials"
    folder.mkdir()
    shutil.copy(tutorial, folder)
    notebook = jupytext.read(folder / tutorial.name)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.delenv("MINIKFAC_FIGURES", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    shown = [output for output in outputs if "image/png" in output.get("data", {})]
    saved = sorted(path.name for path in (tmp_path / "report" / "tutorials").glob("*.png"))
    assert shown, "the notebook shows its figures below the cells"
    assert len(saved) == len(shown), (saved, len(shown))
    assert not (folder / "report").exists(), "no stray figures inside tutorials/"
    png = base64.b64decode(shown[0]["data"]["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_default_to_report_beside_the_tutorials_folder(tmp_path):
    from minikfac.plot.notebook import DEFAULT_FIGURES, default_folder

    assert default_folder(tmp_path / "tutorials") == os.path.join(str(tmp_path), DEFAULT_FIGURES)
    assert default_folder(tmp_path / "elsewhere") == DEFAULT_FIGURES


def test_the_page_of_a_notebook_has_its_text_code_output_and_figures(build_site, tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the dev extra")
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 99. A title\n\nWith $x^2$."),
        nbformat.v4.new_code_cell("print(1)", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="1\n[figure saved: report/tutorials/a.png]\n")]),
        nbformat.v4.new_code_cell("show()", outputs=[
            nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure size 640x480>"}),
            nbformat.v4.new_output("execute_result", data={"text/plain": "'report/tutorials/99_name.png'"},
                                   execution_count=2)]),
    ])
    text = build_site.notebook_markdown(notebook, "99_name", tmp_path)
    assert "# 99. A title\n\nWith $x^2$." in text
    assert "```python\nprint(1)\n```" in text
    assert "``` { .text .output }\n1\n```" in text, "printed output kept, the figure-saved line dropped"
    assert "![A figure of tutorial 99, drawn by the code above](99_name_2_0.png)" in text
    assert (tmp_path / "99_name_2_0.png").read_bytes() == b"\x89PNG\r\n\x1a\n fake"
    assert "99_name.png'" not in text, "the path plot.show returns is not echoed on the page"
    assert build_site.title_of(text, "fallback") == "99. A title"
    notebook.cells[1].outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[]))
    with pytest.raises(RuntimeError, match="99_name: cell 1 raised ValueError: bad"):
        build_site.notebook_markdown(notebook, "99_name", tmp_path)


def test_links_of_copied_pages_point_into_the_site(build_site):
    text = ("See [the design](design.md), [the guide](../tutorials/exercises/README.md#grading), "
            "[tutorial 4](../tutorials/04_the_fisher_three_ways.py), [the code](../minikfac/data.py), "
            "[`LICENSE`](../LICENSE), [a paper](https://arxiv.org/abs/1503.05671) and ![a figure](demo/spectra.png).")
    out = build_site.site_links(text, "docs/references.md")
    assert "[the design](design.md)" in out
    assert "[the guide](teachers.md#grading)" in out
    assert "[tutorial 4](tutorials/04_the_fisher_three_ways.md)" in out
    assert "the code (`minikfac/data.py`)" in out
    assert "`LICENSE`" in out and "](../LICENSE)" not in out
    assert "[a paper](https://arxiv.org/abs/1503.05671)" in out
    assert "![a figure](demo/spectra.png)" in out


def test_the_api_reference_covers_every_public_module(build_site):
    modules = set(build_site.api_modules())
    packages = {path.parent.relative_to(ROOT).as_posix().replace("/", ".")
                for path in (ROOT / "minikfac").rglob("__init__.py")}
    assert packages <= modules, packages - modules
    assert {"minikfac.curvature.kron", "minikfac.optim.kfac", "minikfac.nn.conv"} <= modules
    assert not [name for name in modules if "._" in name or "__" in name]


def test_the_study_path_lists_every_tutorial_and_exercise():
    from minikfac.exercises.registry import EXERCISES

    text = (ROOT / "docs" / "site" / "study-path.md").read_text(encoding="utf-8")
    linked = re.findall(r"\]\(((?:tutorials|exercises)/[^)]+)\.md\)", text)
    tutorials = [f"tutorials/{path.stem}" for path in sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))]
    exercises = [f"exercises/{exercise.name}" for exercise in EXERCISES]
    assert sorted(name for name in linked if name.startswith("tutorials/")) == tutorials
    assert sorted(name for name in linked if name.startswith("exercises/")) == exercises
    minutes = [int(m) for m in re.findall(r"\| (\d+) min \|", text)]
    assert len(minutes) == len(linked) + 1, "every step (and the demo) has a time"


DEMO_REPORT = ROOT / "docs" / "demo" / "summary.json"


@pytest.fixture(scope="module")
def demo_report():
    import json

    if not DEMO_REPORT.exists():
        pytest.fail("docs/demo/summary.json is missing: copy it from a full `minikfac demo` run with its figures")
    return json.loads(DEMO_REPORT.read_text(encoding="utf-8"))


def test_the_readme_quotes_the_demo_run_whose_report_docs_demo_holds(demo_report):
    """Every deterministic number of the README's demo section is the committed run's (seconds vary)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Two commands"):readme.index("## Ten lines")]
    errors = demo_report["comparison"]["errors"]
    for name, error in errors.items():
        row = f"| {name if name != 'block-diagonal' else 'exact block-diagonal'} | {error['total']:.3f} | " + \
              " | ".join(f"{error['layers'][i]:.3f}" for i in (0, 2, 5)) + " |"
        row = row.replace("| 0.000 | 0.000 | 0.000 |", "| 0 | 0 | 0 |")
        assert row in section, f"README's error table lacks the demo's row {row}"
    for name, result in demo_report["race"]["problems"].items():
        kfac = result["runs"][result["best"]["kfac"]]
        adam = result["runs"][result["best"]["adam"]]
        row = next(line for line in section.splitlines()
                   if line.startswith("| ") and f"| {result['problem']['target_loss']:g} |" in line)
        assert f"step {kfac['steps_to_target']}," in row, (name, row)
        assert f"step {adam['steps_to_target']:,}," in row, (name, row)
        assert f"{result['kfac_vs']['adam']['iterations']:.2f}" in row, (name, row)
        if kfac["test"].get("accuracy") is not None:
            assert f"{100 * kfac['test']['accuracy']:.2f}% test" in row, (name, row)
            assert f"{100 * adam['test']['accuracy']:.2f}%" in row, (name, row)
    means = demo_report["comparison"]["inverse_block_means"]
    diagonal = [means[i][i] for i in range(len(means))]
    assert f"{min(diagonal):.2f}–{max(diagonal):.2f} on the diagonal blocks" in section


def test_the_demo_page_is_the_summary_of_that_run(demo_report):
    from minikfac.jobs.demo_summary import markdown

    page = (ROOT / "docs" / "demo" / "summary.md").read_text(encoding="utf-8")
    assert page.startswith(markdown(demo_report).split("## Appendix")[0].split("## Time")[0])
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page):
        assert (ROOT / "docs" / "demo" / name).is_file(), f"docs/demo/summary.md shows {name}, which is missing"
