"""Both installers check their target root in the shared lib.sh, before touching anything."""

import subprocess
from pathlib import Path

import pytest

INSTALL = Path(__file__).resolve().parents[2] / "provisioning" / "install"


@pytest.mark.parametrize("script", ["install-terminal.sh", "install-server.sh"])
def test_a_missing_target_root_is_refused_in_german_and_english(tmp_path, script):
    missing = tmp_path / "missing"
    done = subprocess.run(
        ["bash", str(INSTALL / script), "--root", str(missing), "--no-apt", "--no-venv"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"Wurzelverzeichnis fehlt / root folder missing: {missing}" in done.stderr
    assert not missing.exists()
