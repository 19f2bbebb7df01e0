from __future__ import annotations

from collections.abc import Iterator

import pytest

from databases import BACKENDS, database
from servers import launch


@pytest.fixture(scope="module", params=BACKENDS)
def tower(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real server per module and backend, for tests that each use runs of their own."""
    home = tmp_path_factory.mktemp("tower")
    with database(request, home) as url:
        server = launch(home, url)
        yield server.url
        server.stop()
