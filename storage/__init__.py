"""The system of record: Tortoise models on PostgreSQL, migrations, and each domain's actions."""
