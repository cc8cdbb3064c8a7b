"""The operations dashboard: a starlette-admin app over the Tortoise models."""
