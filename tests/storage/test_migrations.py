"""The SQL migrations and the Tortoise models describe the same schema."""

from tortoise import Tortoise, connections

from storage.migrate import discover, migrate

TABLES_WITHOUT_MODELS = {"rate_limit_hits", "schema_migrations"}


async def columns_of_database() -> dict[str, dict[str, bool]]:
    rows = await connections.get("default").execute_query_dict(
        """SELECT table_name, column_name, is_nullable = 'YES' AS nullable
           FROM information_schema.columns WHERE table_schema = 'public'""")
    tables: dict[str, dict[str, bool]] = {}
    for row in rows:
        tables.setdefault(row["table_name"], {})[row["column_name"]] = row["nullable"]
    return tables


async def test_every_model_column_exists_with_the_same_nullability(db):
    database = await columns_of_database()
    models = Tortoise.apps["models"].values()
    for model in models:
        table = model._meta.db_table
        assert table in database, f"model {model.__name__} has no table {table}"
        expected = {}
        for name, field in model._meta.fields_map.items():
            if field.has_db_field:
                expected[field.source_field or name] = field.null
            elif getattr(field, "source_field", None) and name in model._meta.fk_fields | model._meta.o2o_fields:
                expected[field.source_field] = field.null
        assert expected == database[table], f"{table}: models {expected} vs database {database[table]}"
    modelled = {m._meta.db_table for m in models}
    assert set(database) - modelled == TABLES_WITHOUT_MODELS


async def test_migrating_again_applies_nothing(services):
    assert await migrate(services["DATABASE_URL"]) == []
    versions = [m.version for m in discover()]
    assert versions == sorted(versions) and versions[0] == 1
