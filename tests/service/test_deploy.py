"""The scale-out example in deploy/ hangs together: migrations once, replicas after them, and
every replica behind the proxy. (No container engine runs here; CI lints the Dockerfile.)"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_compose_example_migrates_once_then_runs_replicas_behind_nginx() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    replicas = sorted(name for name in services if name.startswith("lrtower-"))
    assert len(replicas) == 3
    assert services["migrate"]["command"] == ["lrtower", "db", "upgrade"]
    for name in replicas:
        service = services[name]
        assert service["command"][:2] == ["lrtower", "serve"] and "0.0.0.0" in service["command"]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["environment"]["LRTOWER_DATABASE_URL"].startswith("postgresql+psycopg://")
    upstream = re.findall(r"server (lrtower-\d):8000", (DEPLOY / "nginx.conf").read_text())
    assert sorted(upstream) == replicas
    assert set(services["nginx"]["depends_on"]) == set(replicas)
