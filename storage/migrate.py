"""Schema changes go through Alembic only; these are the calls the CLI and the tests use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from storage.db import Database
from storage.models import Base

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


async def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (default: the newest).

    SQLite changes a constraint by copying the table (Alembic's batch mode), which its foreign
    keys would refuse: they are off during the upgrade (the pragma works only outside a
    transaction) and checked whole before they are on again, as SQLite's documentation says.
    """
    async with database.engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        raw: Any = (await connection.get_raw_connection()).driver_connection
        if sqlite:
            await raw.execute("PRAGMA foreign_keys=OFF")
        try:
            async with connection.begin():
                await connection.run_sync(_run_upgrade, database.url, revision)
                if sqlite:
                    broken = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
                    if broken:
                        raise RuntimeError(f"the upgrade left {len(broken)} broken references")
        finally:
            if sqlite:
                await raw.execute("PRAGMA foreign_keys=ON")


def _run_upgrade(connection: Connection, url: str, revision: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def current_revision(database: Database) -> str | None:
    async with database.engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision())


async def schema_differences(database: Database) -> list[Any]:
    """What autogenerate would change: empty when the models and the migrations agree."""
    async with database.engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(
                sync, opts={"compare_type": True}), Base.metadata))
