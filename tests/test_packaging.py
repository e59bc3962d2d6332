"""Packaging tripwires: every package folder is listed, every command has help."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPING = {
    "hcard": "hcard",
    "hcard.server": "server",
    "hcard.terminal": "terminal",
    "hcard.provisioning": "provisioning",
}


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == MAPPING
    found = set()
    for name, folder in MAPPING.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found <= set(config["packages"]), sorted(found - set(config["packages"]))
