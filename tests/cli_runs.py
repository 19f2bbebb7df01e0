"""The `lrtower` command line, invoked in-process against a server, as the CLI tests use it."""

from __future__ import annotations

from click.testing import CliRunner, Result

from lrtower.cli.commands import lrtower


def cli(server: str, *args: str) -> Result:
    """`lrtower ARGS` against `server`, with no token from the environment."""
    return CliRunner().invoke(lrtower, [*args], env={"LRTOWER_URL": server, "LRTOWER_TOKEN": None})


def ok(server: str, *args: str) -> str:
    """Its output, once it has succeeded."""
    result = cli(server, *args)
    assert result.exit_code == 0, result.output
    return result.output
