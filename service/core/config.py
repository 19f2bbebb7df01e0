"""Settings: from `LRTOWER_*` environment variables (or a `.env` file), unknown keys refused."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///lrtower.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LRTOWER_", env_file=".env", extra="forbid")

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: sqlite:///path.db (the embedded default) or postgresql+psycopg://...",
    )
    auth: str | None = Field(
        None,
        pattern="^(required|off)$",
        description="Bearer tokens required, or off. Unset: required, except that `lrtower serve` "
        "turns it off when it listens on loopback only",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        ["localhost", "127.0.0.1", "::1"],
        description="Without tokens, the only `Host` names answered (comma-separated; `*.example.org` "
        "for a domain's hosts, `*` for any), against DNS rebinding; others get 400",
    )
    read_timeout: float = Field(
        30,
        gt=0,
        le=3600,
        description="Seconds a request may take to arrive whole (headers and body) from its first byte; "
        "a slower one is closed (408), so that trickling clients cannot hold connections",
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="The largest request body accepted; larger ones get 413"
    )
    cache_runs: int = Field(
        10_000, ge=1, description="Runs each server process keeps compiled in memory for the hot path"
    )
    run_cache_mib: int = Field(
        256, ge=1, le=65536, description="Memory those compiled runs may hold, in MiB, as estimated per run"
    )
    response_cache_mib: int = Field(
        64,
        ge=0,
        le=65536,
        description="Memory of the hot-path answers each server process keeps, in MiB (keys, bodies "
        "and each entry's overhead)",
    )
    max_ahead: int = Field(
        10_000,
        ge=1,
        le=2**53,
        description="How many steps past a run's high-water mark one request may serve (and so freeze)",
    )
    mark_reserve: int = Field(
        0,
        ge=0,
        le=100_000,
        description="Steps past the one asked that each raise of a run's mark reserves, so that the "
        "next ones are answered without a commit; every change then lands up to that many steps later",
    )
    mark_window_ms: float | None = Field(
        None,
        ge=0,
        le=100,
        description="How long a group commit of marks waits for more raises after its first. Unset: "
        "none on SQLite, 1 ms on PostgreSQL, as measured (docs/performance.md)",
    )
    max_work: float = Field(
        400_000,
        ge=1,
        description="The most work one request may ask: steps x param groups x the schedule's "
        "evaluation cost (a plain cosine costs 1; see docs/performance.md)",
    )
    write_rate: float = Field(
        100, ge=0, description="Writes per second each token may make, per server process (0: no limit)"
    )
    write_burst: int = Field(1000, ge=1, description="Writes a token may make at once above write_rate")
    create_rate: float = Field(
        60, ge=0, description="Runs per minute each token may create, per server process (0: no limit)"
    )
    create_burst: int = Field(500, ge=1, description="Runs a token may create at once above create_rate")
    pool_size: int = Field(
        10, ge=1, le=1000, description="PostgreSQL: connections each server process keeps open"
    )
    pool_overflow: int = Field(
        20, ge=0, le=1000, description="PostgreSQL: connections it may open beyond pool_size under load"
    )
    sqlite_synchronous: str = Field(
        "FULL",
        pattern="^(FULL|NORMAL)$",
        description="SQLite's `synchronous` in WAL mode: FULL survives power loss, NORMAL only a crash",
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return (
            [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        )
