"""The server extra in pyproject.toml lists exactly what server code imports: each package
is imported by a module of `server/` (or is the driver SQLAlchemy loads), and every
third-party module `server/` imports comes with the server extra or the core."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "server"
#: listed but not imported by name: loaded by SQLAlchemy for `postgresql+psycopg://` URLs, and
#: by FastAPI for the office's form bodies (`Form(...)`, `request.form()`)
LOADED_BY_URL = {"psycopg", "python-multipart"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _imported_modules() -> set[str]:
    found: set[str] = set()
    for path in SERVER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"hcard", "__future__"}


def _distributions(module: str) -> set[str]:
    names = importlib.metadata.packages_distributions().get(module, [module])
    return {_name(name) for name in names}


def test_every_server_package_is_imported_by_server_code():
    listed = {_name(r) for r in _project()["optional-dependencies"]["server"]}
    imported = set().union(*(_distributions(m) for m in _imported_modules()))
    unused = listed - imported - LOADED_BY_URL
    assert not unused, f"in the server extra but imported by no server code: {sorted(unused)}"


def test_every_import_of_server_code_is_installed_with_the_server():
    project = _project()
    listed = {_name(r) for r in project["optional-dependencies"]["server"]}
    listed |= {_name(r) for r in project["dependencies"]}
    # what the listed packages bring themselves (pydantic and starlette come with fastapi)
    brought = {
        _name(requirement)
        for package in listed
        for requirement in importlib.metadata.requires(package) or []
        if "extra ==" not in requirement
    }
    missing = {
        module for module in _imported_modules() if not _distributions(module) & (listed | brought)
    }
    assert not missing, f"imported by server code, not in the server extra: {sorted(missing)}"
