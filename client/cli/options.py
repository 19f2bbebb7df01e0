"""What the client commands share: the server to talk to, JSON output, and reading spec files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from .. import Client

F = TypeVar("F", bound=Callable[..., Any])


def connection(command: F) -> F:
    """Add --url and --token: `connect(ctx)` then makes a `Client` for them."""
    command = click.option(
        "--token",
        envvar="LRTOWER_TOKEN",
        expose_value=False,
        callback=_remember,
        help="A bearer token [env LRTOWER_TOKEN].",
    )(command)
    return click.option(
        "--url",
        envvar="LRTOWER_URL",
        default="http://127.0.0.1:8000",
        show_default=True,
        expose_value=False,
        callback=_remember,
        help="The server [env LRTOWER_URL].",
    )(command)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    ctx.meta[f"lrtower.{param.name}"] = value


def connect(ctx: click.Context) -> Client:
    return ctx.with_resource(Client(ctx.meta["lrtower.url"], ctx.meta["lrtower.token"]))


as_json = click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")


def load_definition(path: Path) -> dict[str, Any]:
    """A JSON or YAML file holding one object: a run definition or a schedule spec."""
    text = path.read_text()
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="-f") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected an object, got {type(data).__name__}", param_hint="-f")
    return data
