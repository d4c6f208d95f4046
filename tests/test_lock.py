"""``requirements/lock.py``, which ``make setup`` runs after installing: the environment must be the lock."""

import subprocess
import sys
from importlib import metadata
from pathlib import Path

LOCK_TOOL = Path(__file__).resolve().parents[1] / "requirements" / "lock.py"


def run_lock_tool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LOCK_TOOL), *map(str, args)], capture_output=True, text=True)


def written_lock(tmp_path) -> Path:
    lock = tmp_path / "lock.txt"
    assert run_lock_tool("write", "--lock", lock).returncode == 0
    return lock


def test_a_lock_written_from_this_environment_checks_and_pins_every_package(tmp_path):
    lock = written_lock(tmp_path)
    assert run_lock_tool("check", "--lock", lock).returncode == 0
    assert f"numpy=={metadata.version('numpy')}\n" in lock.read_text()
    assert "fastvideo-hf==" not in lock.read_text() and "\npip==" not in lock.read_text()


def test_another_version_a_missing_and_an_extra_package_fail_the_check(tmp_path):
    lock = written_lock(tmp_path)
    text = lock.read_text().replace(f"numpy=={metadata.version('numpy')}", "numpy==0.0.1")
    text = text.replace(f"pyarrow=={metadata.version('pyarrow')}\n", "") + "not-a-package==1.0\n"
    lock.write_text(text)
    result = run_lock_tool("check", "--lock", lock)
    assert result.returncode == 1
    assert "numpy: locked 0.0.1, installed" in result.stderr
    assert "pyarrow:" in result.stderr and "installed, not in the lock" in result.stderr
    assert "not-a-package: locked 1.0, not installed" in result.stderr


def test_a_lock_made_on_another_python_tolerates_marker_packages_but_not_other_versions(tmp_path):
    lock = written_lock(tmp_path)
    text = lock.read_text().replace("# environment: python", "# environment: python2.7-elsewhere ")
    lock.write_text(text + "tomli==2.0.0\n")  # what a Python 3.10 tree holds through a marker
    result = run_lock_tool("check", "--lock", lock)
    assert result.returncode == 0, result.stderr
    assert "tomli: locked 2.0.0, not installed" in result.stdout
    lock.write_text(lock.read_text().replace(f"numpy=={metadata.version('numpy')}", "numpy==0.0.1"))
    assert run_lock_tool("check", "--lock", lock).returncode == 1
