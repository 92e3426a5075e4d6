"""Packaging: the files that ship with minikfac, the licence, the dependency bounds.

The datasets (data/) and the blank exercise files (tutorials/exercises/) are kept
once, where docs and students expect them; setup.cfg maps the two folders into
the package (minikfac._data, minikfac._exercise_files), and
``minikfac.data.bundled_dir`` finds them in a checkout or in an installed wheel.
These tests check that lookup, the mapping it relies on, the fallback of
``minikfac check`` outside a checkout, and (slow) a wheel built offline.
"""

import configparser
import hashlib
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import zipfile
from importlib import metadata

import pytest

import minikfac
from minikfac import data
from minikfac.exercises import registry

ROOT = pathlib.Path(__file__).resolve().parent.parent
SETUP_CFG = ROOT / "setup.cfg"
PACKAGE = pathlib.Path(minikfac.__file__).resolve().parent
#: True when the minikfac under test is this repository's (an editable install or the
#: source tree), False when it is an installed wheel (the tests run against a copy).
CHECKOUT = PACKAGE == ROOT / "minikfac"
DATASET_FILES = sorted({entry[0] for entry in data._REAL.values()})
BLANK_FILES = [e.filename for e in registry.EXERCISES] + ["README.md"]
RUNTIME = ["numpy", "scipy", "matplotlib", "tqdm", "threadpoolctl"]
MAPPED = {"minikfac._data": "data", "minikfac._exercise_files": "tutorials/exercises"}


def _setup_cfg():
    config = configparser.ConfigParser(interpolation=None)
    config.read(SETUP_CFG, encoding="utf-8")
    return config


def _lines(text):
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def _mapping(text):
    return dict((part.strip() for part in line.split("=", 1)) for line in _lines(text))


def _sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _version(text):
    """'1.23.2' -> (1, 23, 2); stops at the first part that is not a number ('2.4.0rc1' -> (2, 4))."""
    numbers = []
    for part in text.split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


def _bounds():
    """{name: lower bound} from setup.cfg's install_requires (name>=X.Y)."""
    bounds = {}
    for requirement in _lines(_setup_cfg()["options"]["install_requires"]):
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)(\s*,.*)?", requirement)
        if match:
            bounds[match[1].lower()] = match[2]
    return bounds


# --------------------------------------------------------------------------- #
# The files are found, through the lookup the installed package uses
# --------------------------------------------------------------------------- #
def test_every_dataset_is_found_where_the_package_looks():
    assert data.DATA_DIR == data.bundled_dir("_data", "data")
    for filename in DATASET_FILES:
        assert (data.DATA_DIR / filename).is_file(), filename
    assert (data.DATA_DIR / "README.md").is_file()  # the datasets' credits and licences travel with them


def test_every_blank_exercise_file_is_found_where_the_package_looks():
    folder = registry.blank_dir()
    assert folder is not None
    for name in BLANK_FILES:
        assert (folder / name).is_file(), name
        if name.endswith(".py"):
            assert "raise NotImplementedError" in (folder / name).read_text(encoding="utf-8"), name


@pytest.mark.skipif(not CHECKOUT, reason="minikfac is installed from a wheel, not this checkout")
def test_in_a_checkout_the_lookup_gives_the_repository_files_and_no_copy_exists():
    assert data.DATA_DIR == ROOT / "data"
    assert registry.blank_dir() == ROOT / "tutorials" / "exercises"
    for package in MAPPED:  # a folder there would shadow the repository's files
        assert not (ROOT / package.replace(".", "/")).exists(), package
    # A checkout grades the student's own files from the repository root, never a packaged copy.
    assert all(registry.installed_blank_path(e) is None for e in registry.EXERCISES)


@pytest.mark.skipif(CHECKOUT, reason="minikfac is this checkout")
def test_an_installed_wheel_carries_the_repository_files_unchanged():
    for filename in DATASET_FILES + ["README.md"]:
        assert _sha256(data.DATA_DIR / filename) == _sha256(ROOT / "data" / filename), filename
    for name in BLANK_FILES:
        assert _sha256(registry.blank_dir() / name) == _sha256(ROOT / "tutorials" / "exercises" / name), name


def test_the_repository_holds_one_copy_of_each_dataset_and_blank_file():
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                                text=True, timeout=60, check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    names = {pathlib.PurePosixPath(path).name: [] for path in DATASET_FILES + BLANK_FILES[:-1]}
    for path in listed:
        # teaching/solutions/ holds the model answers under the same names: not copies of the blanks.
        if pathlib.PurePosixPath(path).name in names and not path.startswith("teaching/solutions/"):
            names[pathlib.PurePosixPath(path).name].append(path)
    expected = {name: ["data/" + name] for name in DATASET_FILES}
    expected.update({name: ["tutorials/exercises/" + name] for name in BLANK_FILES[:-1]})
    assert names == expected


# --------------------------------------------------------------------------- #
# bundled_dir: an installed wheel's folder first, then the checkout's
# --------------------------------------------------------------------------- #
def _fake_wheel(tmp_path, monkeypatch, with_checkout=True):
    """A fake site-packages/minikfac holding _exercise_files/ (and a data/ beside it); data.bundled_dir looks there."""
    package = tmp_path / "site" / "minikfac"
    (package / registry.PACKAGED).mkdir(parents=True)
    for name in BLANK_FILES:
        (package / registry.PACKAGED / name).write_text("raise NotImplementedError\n", encoding="utf-8")
    if with_checkout:
        (tmp_path / "site" / "tutorials" / "exercises").mkdir(parents=True)
    monkeypatch.setattr(data, "_PACKAGE_DIR", package)
    return package


def test_bundled_dir_prefers_the_installed_folder_then_the_checkout(tmp_path, monkeypatch):
    package = _fake_wheel(tmp_path, monkeypatch)
    assert data.bundled_dir(registry.PACKAGED, registry.EXERCISE_DIR) == package / registry.PACKAGED
    assert data.bundled_dir("_nothing", registry.EXERCISE_DIR) == tmp_path / "site" / "tutorials" / "exercises"
    assert data.bundled_dir("_nothing", "nowhere") is None


def test_outside_a_checkout_an_installed_package_grades_its_blank_file(tmp_path, monkeypatch, capsys):
    package = _fake_wheel(tmp_path, monkeypatch, with_checkout=False)
    monkeypatch.chdir(tmp_path)
    exercise = registry.find("3")
    assert registry.student_path(exercise) == str(package / registry.PACKAGED / exercise.filename)
    err = capsys.readouterr().err
    assert "blank file installed with minikfac" in err and "--copy" in err
    assert str(package / registry.PACKAGED) in registry.listing()  # `minikfac check --list` says where they are
    # A file under the working directory, or one given by path, still wins.
    mine = tmp_path / registry.EXERCISE_DIR / exercise.filename
    mine.parent.mkdir(parents=True)
    mine.write_text("", encoding="utf-8")
    assert registry.student_path(exercise) == os.path.join(registry.EXERCISE_DIR, exercise.filename)
    assert registry.student_path(exercise, str(mine)) == str(mine)


def test_copy_blank_files_makes_a_working_folder_and_never_overwrites(tmp_path, monkeypatch, capsys):
    target = tmp_path / "class"
    assert registry.run_copy(str(target)) == 0
    assert "cd " in capsys.readouterr().out
    folder = target / "tutorials" / "exercises"
    assert sorted(os.listdir(folder)) == sorted(BLANK_FILES)
    for name in BLANK_FILES:
        assert _sha256(folder / name) == _sha256(registry.blank_dir() / name), name
    # Grading from the copy's folder finds the copy, as in a checkout.
    monkeypatch.chdir(target)
    exercise = registry.find("3")
    assert os.path.samefile(registry.student_path(exercise), folder / exercise.filename)
    # A second copy refuses, names the file in the way and touches nothing.
    (folder / exercise.filename).write_text("# my work\n", encoding="utf-8")
    with pytest.raises(registry.UsageError, match=exercise.filename):
        registry.copy_blank_files(target)
    assert (folder / exercise.filename).read_text(encoding="utf-8") == "# my work\n"
    assert registry.run_copy(str(target)) == 2
    assert "nothing copied" in capsys.readouterr().err


# --------------------------------------------------------------------------- #
# setup.cfg: the mapping, the package list, the licence, the bounds
# --------------------------------------------------------------------------- #
def test_setup_cfg_maps_the_two_folders_that_the_lookups_use():
    options = _setup_cfg()["options"]
    assert _mapping(options["package_dir"]) == MAPPED
    assert f"minikfac.{registry.PACKAGED}" in MAPPED and MAPPED[f"minikfac.{registry.PACKAGED}"] == "tutorials/exercises"
    package_data = {name: {p.strip() for p in value.split(",")} for name, value in _setup_cfg()["options.package_data"].items()}
    assert {"*.npz", "README.md"} <= package_data["minikfac._data"]  # the .py files (convert.py, the stubs) go as modules
    assert "README.md" in package_data["minikfac._exercise_files"]


@pytest.mark.skipif(not (ROOT / "minikfac" / "__init__.py").is_file(), reason="needs the source tree")
def test_setup_cfg_lists_every_package_of_the_source_tree():
    # package_dir needs an explicit list: a new sub-package left out of it would be missing from the wheel.
    listed = set(_lines(_setup_cfg()["options"]["packages"]))
    found = {str(init.parent.relative_to(ROOT)).replace(os.sep, ".") for init in (ROOT / "minikfac").rglob("__init__.py")
             if "__pycache__" not in init.parts}
    listed -= set(MAPPED)
    assert listed == found, (f"setup.cfg [options] packages: add {sorted(found - listed)}, "
                             f"remove {sorted(listed - found)}")


def test_the_licence_is_mit_and_declared():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2025-2026 the minikfac authors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
    meta = _setup_cfg()["metadata"]
    assert meta["license"].strip() == "MIT" and meta["license_files"].strip() == "LICENSE"
    # The datasets keep their own licences, documented next to them.
    readme = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in readme and "CC BY-SA 3.0" in readme


@pytest.mark.parametrize("name", RUNTIME)
def test_every_runtime_dependency_has_a_lower_bound_that_the_installed_version_meets(name):
    bounds = _bounds()
    assert name in bounds, f"setup.cfg's install_requires has no lower bound for {name}"
    installed = metadata.version(name)
    assert _version(installed) >= _version(bounds[name]), (name, installed, bounds[name])


# --------------------------------------------------------------------------- #
# A wheel, built offline from a copy of the sources, runs outside the checkout
# --------------------------------------------------------------------------- #
SOURCES = ["setup.cfg", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "minikfac", "data",
           "tutorials/exercises"]


def _copy_sources(target):
    import shutil

    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.mark.slow
@pytest.mark.skipif(not CHECKOUT, reason="builds this checkout's sources")
def test_a_wheel_built_offline_carries_the_files_and_grades_outside_a_checkout(tmp_path):
    # --no-build-isolation: the environment's setuptools builds the wheel, no network; it needs
    # setuptools >= 70.1 (bdist_wheel built in, as the dev extras ask) or the wheel package.
    try:
        setuptools = _version(metadata.version("setuptools"))
    except metadata.PackageNotFoundError:
        pytest.skip("setuptools is not installed")
    if setuptools < (70, 1) and importlib.util.find_spec("wheel") is None:
        pytest.skip("needs setuptools >= 70.1 or the wheel package (pip install -e '.[dev]')")
    src, dist, site, elsewhere = (tmp_path / name for name in ("src", "dist", "site", "elsewhere"))
    _copy_sources(src)
    elsewhere.mkdir()
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    if built.returncode != 0 and "No module named pip" in built.stderr:
        pytest.skip("pip is not installed")
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = dist.glob("minikfac-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(site)
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = archive.read(info).decode("utf-8")
    for filename in DATASET_FILES + ["README.md", "convert.py"]:
        assert f"minikfac/_data/{filename}" in names, filename
    for name in BLANK_FILES:
        assert f"minikfac/_exercise_files/{name}" in names, name
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert "License: MIT" in meta or "License-Expression: MIT" in meta
    for name, bound in _bounds().items():
        assert f"Requires-Dist: {name}>={bound}" in meta
    # The unpacked wheel, imported from elsewhere: its own data and blank files, and `check` grades a stub.
    env = dict(os.environ, PYTHONPATH=str(site), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    code = ("import minikfac, minikfac.data as d; from minikfac.exercises import registry as r; "
            "print(minikfac.__file__); print(d.DATA_DIR); print(r.blank_dir()); print(d.load('digits'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == str(site / "minikfac" / "__init__.py")
    assert lines[1] == str(site / "minikfac" / "_data") and lines[2] == str(site / "minikfac" / "_exercise_files")
    assert "digits" in lines[3]
    done = subprocess.run([sys.executable, "-m", "minikfac", "check", "3", "--seed", "1"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "not implemented yet" in done.stdout and "0 of 5 parts passed" in done.stdout
    assert str(site / "minikfac" / "_exercise_files") in done.stdout and "--copy" in done.stderr
