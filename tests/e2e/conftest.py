"""E2E fixtures: a running rdev on SQLite (and on PostgreSQL where a test asks for it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from rdev.config import Settings
from tests.support import Running, make_project, serve


@pytest.fixture
async def rdev(settings_factory: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Running]:
    settings = settings_factory()
    make_project(settings.workspace_root, "demo", 'description = "demo"\n')
    async with serve(settings) as running:
        yield running
