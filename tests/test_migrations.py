from storage import migrate
from storage.db import Database


async def test_models_and_migrations_agree(database: Database) -> None:
    assert await migrate.current_revision(database) == migrate.head_revision()
    assert await migrate.schema_differences(database) == []


async def test_upgrade_twice_changes_nothing(database: Database) -> None:
    await migrate.upgrade(database)
    assert await migrate.schema_differences(database) == []
