"""A data folder that cannot be written stops `rdev serve` with one line naming the folder and
RDEV_DATA_DIR, and a non-zero exit, instead of a traceback from deep inside start-up.

The tests run as root, for whom permission bits do not stop writes; so the folders here are
unwritable for reasons root cannot override (a regular file in the path), and one case runs
rdev as an unprivileged user (`setpriv`, as the image runs it, uid 10001 there)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdev.config import ConfigError, Settings, check_data_dir
from tests.support import free_port

SRC = Path(__file__).resolve().parents[2] / "src"
NOBODY = 65534


def _serve(env: dict[str, str], *, cwd: Path, argv: list[str] | None = None) -> tuple[int, str]:
    full = {**os.environ, **env, "PORT": str(free_port())}
    result = subprocess.run(
        [*(argv or [sys.executable]), "-m", "rdev", "serve", "--host", "127.0.0.1"],
        env=full, cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip  # a server that did start is killed by the timeout, and the test fails
    return result.returncode, result.stderr


def _assert_one_line_naming(stderr: str, folder: Path, reason: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert str(folder) in lines[0]
    assert "RDEV_DATA_DIR" in lines[0]
    assert reason in lines[0]


def test_a_data_folder_under_a_regular_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    folder = blocker / "data"
    code, stderr = _serve({"RDEV_DATA_DIR": str(folder)}, cwd=tmp_path)
    assert code == 2
    _assert_one_line_naming(stderr, folder, "Not a directory")


def test_a_data_folder_that_is_a_regular_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.write_text("not a folder")
    code, stderr = _serve({"RDEV_DATA_DIR": str(folder)}, cwd=tmp_path)
    assert code == 2
    _assert_one_line_naming(stderr, folder, "File exists")


def test_a_relative_data_folder_is_named_in_full(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    code, stderr = _serve({"RDEV_DATA_DIR": "blocker/data"}, cwd=tmp_path)
    assert code == 2
    _assert_one_line_naming(stderr, tmp_path / "blocker" / "data", "Not a directory")


@pytest.fixture
def unprivileged() -> Iterator[tuple[list[str], Path]]:
    """argv prefix that runs Python with rdev importable as an unprivileged user, and a folder
    owned by root (0755) that this user can enter but not write."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run rdev as another user")
    home = Path(tempfile.mkdtemp(prefix="rdev-ro-"))
    home.chmod(0o755)
    try:
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "env",
                  f"PYTHONPATH={SRC}{os.pathsep}{_site_packages()}"]  # fmt: skip
        for python in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin")):
            if python and _can_import_rdev([*prefix, python], home):
                yield [*prefix, python], home
                return
        pytest.skip("no Python this user may run can import rdev (checkout under /root?)")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _site_packages() -> str:
    return next(p for p in sys.path if p.endswith("site-packages") and ".venv" in p)


def _can_import_rdev(argv: list[str], cwd: Path) -> bool:
    probe = [*argv, "-c", "import rdev.cli"]
    return subprocess.run(probe, cwd=cwd, capture_output=True, timeout=60).returncode == 0


def test_a_folder_the_service_user_may_not_write_stops_start_up_with_one_line(
    unprivileged: tuple[list[str], Path],
) -> None:
    argv, home = unprivileged
    folder = home / "data"
    code, stderr = _serve({"RDEV_DATA_DIR": str(folder)}, cwd=home, argv=argv)
    assert code == 2
    _assert_one_line_naming(stderr, folder, "Permission denied")
    assert not folder.exists()


def test_check_data_dir_makes_a_missing_folder_and_leaves_nothing_in_it(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b" / "data"
    check_data_dir(Settings(data_dir=folder))
    assert folder.is_dir()
    assert list(folder.iterdir()) == []


def test_check_data_dir_refuses_a_path_through_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="RDEV_DATA_DIR"):
        check_data_dir(Settings(data_dir=tmp_path / "f" / "data"))
