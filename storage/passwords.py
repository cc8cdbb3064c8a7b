"""Password hashing with argon2id, off the event loop (it is deliberately slow and memory-hard)."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.settings import Settings


@lru_cache(maxsize=4)
def _hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)


def hasher_for(settings: Settings) -> PasswordHasher:
    return _hasher(settings.password_hash_time_cost, settings.password_hash_memory_kib)


async def hash_password(password: str, settings: Settings) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, hasher_for(settings).hash, password)


async def verify_password(password: str, password_hash: str | None, settings: Settings) -> bool:
    """True when `password` matches; spends the same time when there is no hash to check."""
    hasher = hasher_for(settings)
    target = password_hash or _dummy_hash(settings.password_hash_time_cost, settings.password_hash_memory_kib)

    def check() -> bool:
        try:
            return hasher.verify(target, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.get_running_loop().run_in_executor(None, check)


@lru_cache(maxsize=4)
def _dummy_hash(time_cost: int, memory_kib: int) -> str:
    return _hasher(time_cost, memory_kib).hash("spotless-timing-equaliser")
