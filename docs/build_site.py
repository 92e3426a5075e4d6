"""Build the course site: ``python docs/build_site.py`` (``make docs``) writes ``site/``.

What it does, in order:

1. **Executes every tutorial** ``tutorials/NN_name.py`` as a notebook (jupytext
   reads the percent format, nbclient runs it in a Jupyter kernel), so the site
   shows the outputs and figures of a real run. A tutorial that raises stops the
   build with its error. Executed notebooks are cached under
   ``build/notebooks/`` by the hash of the tutorial and of the package's source;
   an unchanged tutorial is not run again (``--fresh`` runs everything).
2. **Writes the pages** into a staging folder ``build/site-src/``: each tutorial
   as Markdown (its text, its code, the code's printed output, its figures as
   PNG files) with the executed ``.ipynb`` to download; one page per exercise
   from the student file and the exercise registry; the hand-written pages of
   ``docs/site/``, ``docs/*.md`` and the teacher's guide; one API page per module
   (mkdocstrings reads the docstrings); and the assets, MathJax among them
   (``docs/site/assets/mathjax/``), so that the pages typeset their math with no
   network.
3. **Runs** ``mkdocs build --strict`` (configuration: ``mkdocs.yml``), which
   refuses a broken link between pages.

Everything is generated from the repository: nothing here downloads.
"""

import argparse
import concurrent.futures
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
STAGE = ROOT / "build" / "site-src"
CACHE = ROOT / "build" / "notebooks"
FIGURES = ROOT / "report" / "tutorials"
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
#: A tutorial is budgeted 60 s on 2 cores; a kernel gets five times that before the build gives up.
CELL_TIMEOUT = 300


# --------------------------------------------------------------------------- tutorials
def source_hash(tutorial):
    """A tutorial's cache key: the tutorial's text and every file of the package it runs."""
    digest = hashlib.sha256(tutorial.read_bytes())
    for path in sorted((ROOT / "minikfac").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def kernel_environment():
    """The environment of the kernels: this interpreter first on PATH, inline figures, one BLAS thread."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("MPLBACKEND", None)  # the kernel's inline backend puts each figure into the notebook
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONHASHSEED="0",
               MINIKFAC_FIGURES=str(FIGURES))
    return env


def execute(tutorial, fresh=False):
    """Run ``tutorial`` as a notebook (or take it from the cache); returns (notebook, seconds or None)."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    cached = CACHE / f"{tutorial.stem}-{source_hash(tutorial)}.ipynb"
    if cached.exists() and not fresh:
        return nbformat.read(cached, as_version=4), None
    notebook = jupytext.read(tutorial)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    start = time.perf_counter()
    # The kernel inherits os.environ; kernel_environment() is set once in main().
    # The kernel's log stays quiet (its warning about TCP without encryption, on localhost, repeats
    # for every tutorial); a cell's error still comes back in the notebook and stops the build.
    NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                   extra_arguments=["--IPKernelApp.log_level=ERROR"],
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    seconds = time.perf_counter() - start
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob(f"{tutorial.stem}-*.ipynb"):
        old.unlink()
    nbformat.write(notebook, cached)
    return notebook, seconds


def notebook_markdown(notebook, stem, folder):
    """The page of an executed notebook: Markdown cells as they are, code in fences, outputs below it.

    Figures (``image/png`` outputs) are written next to the page as
    ``<stem>_<cell>_<k>.png``. Returns the Markdown text.
    """
    import base64

    download = [f"[Download this tutorial as a notebook]({stem}.ipynb){{ .md-button }} "
                f"or run it as a script: `python tutorials/{stem}.py`", ""]
    lines = []
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            lines += [cell.source, ""] + (download if number == 0 else [])
            continue
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        lines += ["```python", cell.source, "```", ""]
        for k, output in enumerate(cell.get("outputs", [])):
            if output.output_type == "error":
                raise RuntimeError(f"{stem}: cell {number} raised {output.ename}: {output.evalue}")
            data = output.get("data", {})
            if output.output_type == "execute_result" and re.fullmatch(r"'[^']*\.png'", data.get("text/plain", "")):
                continue  # the path plot.show returns, echoed by the kernel: the figure itself is shown
            if "image/png" in data:
                name = f"{stem}_{number}_{k}.png"
                (folder / name).write_bytes(base64.b64decode(data["image/png"]))
                lines += [f"![A figure of tutorial {stem[:2]}, drawn by the code above]({name})", ""]
            elif output.output_type == "stream" or "text/plain" in data:
                text = output.get("text", data.get("text/plain", ""))
                text = "".join(text) if isinstance(text, list) else text
                text = re.sub(r"\[figure saved: [^\]]*\]\n?", "", text).rstrip()
                if text:
                    lines += ['``` { .text .output }', text, "```", ""]
    return "\n".join(lines)


def title_of(text, fallback):
    """The first Markdown heading ``# ...`` of ``text``."""
    match = re.search(r"^# (.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else fallback


def build_tutorials(jobs, fresh, log):
    """Execute (or reuse) every tutorial and write its page; returns [(page path, title)]."""
    folder = STAGE / "tutorials"
    folder.mkdir(parents=True)
    FIGURES.mkdir(parents=True, exist_ok=True)
    pages = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {tutorial: pool.submit(execute, tutorial, fresh) for tutorial in TUTORIALS}
        for tutorial in TUTORIALS:
            notebook, seconds = futures[tutorial].result()
            log(f"  {tutorial.name}: " + (f"executed in {seconds:.0f} s" if seconds is not None else "cached"))
            import nbformat

            nbformat.write(notebook, folder / f"{tutorial.stem}.ipynb")
            text = notebook_markdown(notebook, tutorial.stem, folder)
            (folder / f"{tutorial.stem}.md").write_text(text, encoding="utf-8")
            pages.append((f"tutorials/{tutorial.stem}.md", title_of(notebook.cells[0].source, tutorial.stem)))
    return pages


# --------------------------------------------------------------------------- exercises
def docstring_markdown(text):
    """A student file's docstring as Markdown: RST ``code`` becomes `code`; indented blocks stay code."""
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def build_exercises():
    """One page per exercise (task, parts, the blank file) and the index; returns [(page, title)]."""
    import ast

    from minikfac.exercises.registry import EXERCISES

    folder = STAGE / "exercises"
    folder.mkdir(parents=True)
    pages = []
    for exercise in EXERCISES:
        path = ROOT / "tutorials" / "exercises" / exercise.filename
        source = path.read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(source)) or ""
        body = doc.split("\n", 1)[1].strip() if "\n" in doc else ""
        title = f"Exercise {exercise.number}: {exercise.title}"
        lines = [f"# {title}", "",
                 f"**Teaches:** {exercise.teaches}  ",
                 *([] if "Read first" in body else [f"**Read first:** tutorial {exercise.tutorial}  "]),
                 f"**Time:** about {exercise.minutes} min  ",
                 f"**The file:** [`tutorials/exercises/{exercise.filename}`]({exercise.filename}) "
                 f"(download it, or `minikfac check --copy DIR` writes every blank file)", "",
                 docstring_markdown(body), "", "## Parts", "", "| part | function | what to write |", "|---|---|---|"]
        lines += [f"| {part.number} | `{part.function}` | {part.task} |" for part in exercise.parts]
        lines += ["", "## Check your answer", "", "```", f"minikfac check {exercise.number}",
                  f"minikfac check {exercise.number} path/to/{exercise.filename} --hints 2",
                  f"python tutorials/exercises/{exercise.filename}", "```", "",
                  f"`minikfac check {exercise.number}` grades `tutorials/exercises/{exercise.filename}` under the "
                  "folder you run it from (the repository, or the folder `minikfac check --copy` filled); give a "
                  "path to grade another file. `--hints 2` shows the formula when the nudge is not enough.", "",
                  "The checker runs each function on random inputs and compares it with the library's own "
                  "result; on a failure it shows the first failing case and, where it recognises one, "
                  "the mistake.", "", "## The blank file", "", "```python", source.rstrip(), "```", ""]
        (folder / f"{exercise.name}.md").write_text("\n".join(lines), encoding="utf-8")
        shutil.copy(path, folder / exercise.filename)
        pages.append((f"exercises/{exercise.name}.md", title))
    index = ["# Exercises", "",
             "Each exercise is one Python file whose functions you write in NumPy; `minikfac check N` grades "
             "it on random inputs against the library. Teachers: see the [teacher's guide](../teachers.md).", "",
             "| # | exercise | read first | time |", "|---|---|---|---|"]
    index += [f"| {e.number} | [{e.title}]({e.name}.md) | tutorial {e.tutorial} | {e.minutes} min |"
              for e in EXERCISES]
    (folder / "index.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    return [("exercises/index.md", "All exercises")] + pages


# --------------------------------------------------------------------------- API reference
def api_modules():
    """Every public module of the package, as dotted names (no private ``_name`` modules)."""
    modules = []
    for path in sorted((ROOT / "minikfac").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts):
            continue
        modules.append(".".join(parts))
    return modules


def build_api():
    """One page per module (``::: minikfac.x.y`` for mkdocstrings) and an index; returns the nav entries."""
    folder = STAGE / "api"
    folder.mkdir(parents=True)
    nav, index = [], ["# API reference", "",
                      "Generated from the docstrings. Shapes are in the docstrings; the conventions "
                      "(vec order, Fisher normalisation, backends) are in the [design](../design.md).", ""]
    for module in api_modules():
        name = module.removeprefix("minikfac.") if module != "minikfac" else "minikfac"
        (folder / f"{name}.md").write_text(f"# `{module}`\n\n::: {module}\n", encoding="utf-8")
        nav.append((f"api/{name}.md", module))
        index.append(f"- [`{module}`]({name}.md)")
    (folder / "index.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    return [("api/index.md", "Index")] + nav


# --------------------------------------------------------------------------- the rest
#: Hand-written pages, from where they live in the repository to where they go on the site.
PAGES = {
    "docs/site/index.md": "index.md",
    "docs/site/study-path.md": "study-path.md",
    "docs/demo/summary.md": "demo/index.md",
    "docs/answers.md": "answers.md",
    "docs/references.md": "references.md",
    "docs/design.md": "design.md",
    "tutorials/exercises/README.md": "teachers.md",
}
#: Image folders the pages show, copied as they are.
ASSETS = {"docs/demo": "demo", "docs/screenshots": "screenshots"}


def copy_pages():
    """Copy the hand-written pages and their images; links to repository files become code spans."""
    for source, target in PAGES.items():
        text = (ROOT / source).read_text(encoding="utf-8")
        if not source.startswith("docs/site/"):  # docs/site/ pages link in the site's own terms already
            text = site_links(text, source)
        (STAGE / target).parent.mkdir(parents=True, exist_ok=True)
        (STAGE / target).write_text(text, encoding="utf-8")
    for source, target in ASSETS.items():
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, STAGE / target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.md", "*.json"))


def site_links(text, source):
    """Rewrite the Markdown links of a page copied from ``source`` for the site.

    Links to pages the site has keep working (mapped to their site name); links
    to files of the repository that are not pages (code, data) become the path
    in a code span; web links are left alone.
    """
    here = (ROOT / source).parent
    pages = {(ROOT / src).resolve(): dst for src, dst in PAGES.items()}
    pages.update({path.resolve(): f"tutorials/{path.stem}.md" for path in TUTORIALS})
    site_dir = pathlib.PurePosixPath(PAGES[source]).parent

    def rewrite(match):
        label, target = match.group(1), match.group(2)
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        path, _, anchor = target.partition("#")
        resolved = (here / path).resolve()
        if resolved in pages:
            new = os.path.relpath(pages[resolved], site_dir).replace(os.sep, "/")
            return f"[{label}]({new}{'#' + anchor if anchor else ''})"
        if path.startswith(("demo/", "screenshots/")) or resolved.parent.name in ("demo", "screenshots"):
            return match.group(0)
        relative = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else target
        return f"{label} (`{relative}`)" if label.strip("`") != relative else f"`{relative}`"

    return re.sub(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)", rewrite, text)


def copy_assets():
    """The site's own assets: its stylesheet, MathJax's configuration and MathJax itself (bundled, no CDN)."""
    shutil.copytree(ROOT / "docs" / "site" / "assets", STAGE / "assets", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.md"))


def nav_yaml(tutorials, exercises, api):
    """The ``nav:`` of mkdocs.yml, written into the staged configuration."""
    def entries(items, indent):
        return "".join(f'{" " * indent}- "{title}": {page}\n' for page, title in items)

    return ("nav:\n  - Home: index.md\n  - Study path: study-path.md\n"
            "  - Tutorials:\n" + entries(tutorials, 4)
            + "  - Exercises:\n" + entries(exercises, 4)
            + "  - The demo, explained: demo/index.md\n"
            + "  - For teachers:\n      - Teacher's guide: teachers.md\n      - 'Answers to \"Try this\"': answers.md\n"
            + "  - Reading list: references.md\n  - Design: design.md\n"
            + "  - API reference:\n" + entries(api, 4))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="tutorials executed at once (default: the number of cores)")
    parser.add_argument("--fresh", action="store_true", help="execute every tutorial again, ignoring the cache")
    parser.add_argument("--no-build", action="store_true", help="stage the pages but do not run mkdocs")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    start = time.perf_counter()
    os.environ.update(kernel_environment())
    if STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    print(f"executing {len(TUTORIALS)} tutorials ({args.jobs} at a time; figures also in {FIGURES.relative_to(ROOT)}/)",
          flush=True)
    tutorials = build_tutorials(args.jobs, args.fresh, lambda line: print(line, flush=True))
    exercises = build_exercises()
    api = build_api()
    copy_pages()
    copy_assets()
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    staged = STAGE.parent / "mkdocs.yml"
    staged.write_text(config + "\n" + nav_yaml(tutorials, exercises, api), encoding="utf-8")
    print(f"staged {sum(1 for _ in STAGE.rglob('*.md'))} pages in {STAGE.relative_to(ROOT)}/", flush=True)
    if not args.no_build:
        # NO_MKDOCS_2_WARNING: mkdocs-material's banner about its end of life (docs/design.md, "The site").
        subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(staged)], check=True,
                       env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
        print(f"site/ written in {time.perf_counter() - start:.0f} s: open site/index.html", flush=True)


if __name__ == "__main__":
    main()
