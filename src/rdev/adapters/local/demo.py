"""The `demo` project that `rdev serve --demo` creates: a small git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

from rdev.adapters.local.backend import settings_file

README = """# demo

A small project created by `rdev serve --demo`. Try:

    curl -X POST localhost:8080/projects/demo/git -H "Authorization: Bearer $KEY" \\
         -H 'Content-Type: application/json' -d '{"args": ["log", "--oneline"]}'
"""

CONFIG = """description = "Demo project created by rdev serve --demo"
max_concurrent_commands = 5
allowed_commands = ["claude", "shell", "git"]
"""


def ensure_demo_project(root: Path) -> Path:
    folder = root / "demo"
    if (folder / ".git").is_dir():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(README)
    config = settings_file(root, "demo")  # beside the workspace, never in it (backend.py)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG)
    (folder / "hello.py").write_text('print("hello from the rdev demo project")\n')
    env = {
        "GIT_AUTHOR_NAME": "rdev",
        "GIT_AUTHOR_EMAIL": "rdev@localhost",
        "GIT_COMMITTER_NAME": "rdev",
        "GIT_COMMITTER_EMAIL": "rdev@localhost",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(folder),
    }
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["commit", "-q", "-m", "demo: first commit"],
    ):
        subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True)
    return folder
