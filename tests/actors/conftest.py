"""Factories for actor tests: cleaners with areas, made through the storage actions."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from core.settings import Settings
from storage.accounts import create_user
from storage.models import User
from storage.service_areas import AreaChange, set_service_area
from tests.conftest import STRONG_PASSWORD, unique_email


async def new_cleaner(settings: Settings) -> User:
    return await create_user(email=unique_email("cleaner"), password=STRONG_PASSWORD, name="Area Cleaner",
                             role="cleaner", settings=settings)


async def cleaner_with_area(settings: Settings, geojson: dict[str, Any]) -> tuple[User, AreaChange]:
    user = await new_cleaner(settings)
    _, change = await set_service_area(actor=user, geojson=geojson, settings=settings)
    return user, change


@pytest.fixture
def shard_prefix() -> str:
    """A name prefix of this test's own shards, apart from the edge's and other tests'."""
    return f"test-{secrets.token_hex(4)}"
