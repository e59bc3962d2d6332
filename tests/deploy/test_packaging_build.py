"""A wheel and an editable install (what `make demo`'s `pip install -e .` builds) are built
for real from a copy of the source, with the setuptools in .venv: no warning that a data
folder is "absent from the `packages` configuration" (the till's locale/ folder printed ~150
lines of them at the first `make demo`), and every file the code loads at run time is in the
wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE = ("hcard", "server", "terminal", "provisioning", "pyproject.toml", "README.md")
DATA = (
    "hcard/server/web/templates/public/balance.html",
    "hcard/server/web/static/office.css",
    "hcard/server/db/migrations/script.py.mako",
    "hcard/terminal/app/layout.kv",
    "hcard/locale/hcard.pot",
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    copy = tmp_path / "src"
    for name in SOURCE:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.mo")
            )
        else:
            copy.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    return copy


def _build(source: Path, hook: str, out: Path) -> tuple[Path, str]:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, setuptools.build_meta as b; print(b.{hook}(sys.argv[1]))",
            str(out),
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out / done.stdout.strip().splitlines()[-1], done.stdout + done.stderr


@pytest.mark.parametrize("hook", ["build_wheel", "build_editable"])
def test_build_warns_about_no_data_folder(source: Path, tmp_path: Path, hook: str):
    _wheel, output = _build(source, hook, tmp_path / "out")
    assert "absent from the `packages` configuration" not in output, output
    assert "Package would be ignored" not in output


def test_the_wheel_holds_the_data_files_and_every_catalogue(source: Path, tmp_path: Path):
    wheel, _output = _build(source, "build_wheel", tmp_path / "out")
    names = set(zipfile.ZipFile(wheel).namelist())
    catalogues = [str(po.relative_to(REPO)) for po in (REPO / "hcard/locale").rglob("*.po")]
    assert len(catalogues) >= 2  # de and en
    for name in (*DATA, *catalogues):
        assert name in names, name
