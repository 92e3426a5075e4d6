"""Every tutorial runs top to bottom as a script, ends with checks of its claims,
and opens as a notebook.

The tutorials are the project's teaching material (``tutorials/NN_name.py``,
jupytext percent format). Each run here is a subprocess with the headless Agg
backend and one BLAS thread, exactly like ``make tutorials``; a tutorial whose
closing ``assert`` fails, or that raises anywhere, fails its test with the
script's own output.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
#: A tutorial's budget is 60 s on 2 cores; the test allows twice that for a loaded CI machine.
TIME_LIMIT = 120


def test_there_are_thirteen_numbered_tutorials():
    numbers = [int(path.name[:2]) for path in TUTORIALS]
    assert numbers == list(range(len(numbers))), f"tutorials must be numbered 00, 01, 02, ...: {numbers}"
    assert len(numbers) >= 13, f"expected at least 13 tutorials (00 to 12), found {len(numbers)}"


@pytest.mark.parametrize("path", TUTORIALS, ids=[path.stem for path in TUTORIALS])
def test_tutorial_has_the_expected_shape(path):
    text = path.read_text(encoding="utf-8")
    assert "format_name: percent" in text.split("# %%")[0], "the jupytext header must declare the percent format"
    assert text.count("# %% [markdown]") >= 3, "a tutorial explains itself in Markdown cells"
    assert re.search(r"^assert ", text, re.MULTILINE), "a tutorial ends by asserting the claim it made"
    assert "plot.show(" in text, "a tutorial draws at least one figure (saved with minikfac.plot.show)"


@pytest.mark.parametrize("path", TUTORIALS, ids=[path.stem for path in TUTORIALS])
def test_tutorial_runs_as_a_script(path, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", MINIKFAC_FIGURES=str(tmp_path),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    try:
        done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=TIME_LIMIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{path.name} ran for more than {TIME_LIMIT} s")
    output = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, f"{path.name} failed (exit {done.returncode}):\n{output}"
    figures = list(tmp_path.glob("*.png"))
    assert figures, f"{path.name} saved no figure:\n{output}"


@pytest.mark.parametrize("path", TUTORIALS, ids=[path.stem for path in TUTORIALS])
def test_tutorial_opens_as_a_notebook(path):
    jupytext = pytest.importorskip("jupytext", reason="jupytext comes with the dev extra")
    notebook = jupytext.read(path)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds.count("markdown") >= 3 and kinds.count("code") >= 3, kinds
    assert notebook.cells[0].cell_type == "markdown", "a tutorial opens with its title and what the reader will see"


def test_show_saves_the_figure_and_refuses_a_path_as_name(tmp_path, monkeypatch, capsys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minikfac import plot

    monkeypatch.setenv(plot.FIGURES_ENV, str(tmp_path / "figures"))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = plot.show(fig, "01_line")
    assert path == str(tmp_path / "figures" / "01_line.png")
    assert pathlib.Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number), "a script's figure is closed once saved"
    assert "[figure saved:" in capsys.readouterr().out
    explicit = plot.show(plt.subplots()[0], "02_empty", out=tmp_path / "elsewhere")
    assert pathlib.Path(explicit).is_file()
    for bad in ("", "sub/name", None):
        with pytest.raises(ValueError, match="name must be a non-empty file name"):
            plot.show(plt.subplots()[0], bad)
