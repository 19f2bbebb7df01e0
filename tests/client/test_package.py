"""The client package's surface: what `import` gives without torch, one version everywhere."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import lrtower
from lrtower_server.api.app import create_app
from lrtower_server.core.config import Settings

NO_TORCH = "import sys; sys.modules['torch'] = None  # as if torch were not installed\n"


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_star_import_works_without_torch_and_names_the_torch_parts_with_it() -> None:
    without = _python(
        NO_TORCH + "from lrtower import *\nprint(sorted(n for n in dir() if not n.startswith('_')))"
    )
    assert "Client" in without and "Unset" in without and "RemoteScheduler" not in without
    loaded = "import lrtower, sys\nprint([m for m, v in sys.modules.items() if 'torch' in m and v])"
    assert _python(NO_TORCH + loaded).strip() == "[]"
    with_torch = _python("from lrtower import *\nprint(RemoteScheduler.__name__, from_torch.__name__)")
    assert with_torch.split() == ["RemoteScheduler", "from_torch"]


def test_every_public_name_is_importable_and_unset_is_among_them() -> None:
    for name in lrtower.__all__:
        assert getattr(lrtower, name) is not None, name
    assert repr(lrtower.UNSET) == "UNSET" and isinstance(lrtower.UNSET, lrtower.Unset)


def test_one_version_everywhere(tmp_path: Path) -> None:
    assert lrtower.__version__ == version("lrtower")
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/v.db"))
    assert app.openapi()["info"]["version"] == lrtower.__version__
    assert lrtower.Client()._core.headers["user-agent"] == f"lrtower-client/{lrtower.__version__}"
