"""Where uploaded files live: a small key-value interface, and a local-disk implementation.

Keys are made here (`<prefix>/<yyyy>/<mm>/<uuid7><ext>`), never from a client's file name, so
nothing a client sends becomes part of a path. An object store (S3 and the like) implements the
same `FileStore` protocol later; callers only ever see keys. `judge_upload` is how every
upload is checked by its content before it is stored.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from core.clock import utcnow
from core.errors import NotFound
from core.ids import new_id
from core.settings import Settings
from core.supply import check_upload

_PREFIX = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_EXTENSION = re.compile(r"^(\.[a-z0-9]{1,8})?$")
_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}/\d{4}/\d{2}/[0-9a-f]{32}(\.[a-z0-9]{1,8})?$")



async def judge_upload(data: bytes, *, allowed: frozenset[str], max_bytes: int, settings: Settings,
                       field: str) -> str:
    """The upload's content type, judged by its bytes (core.supply.check_upload). Pillow's
    verify is CPU work, so it runs in a thread: it must not stall the event loop."""
    return await asyncio.to_thread(check_upload, data, allowed=allowed, max_bytes=max_bytes,
                                   max_pixels=settings.upload_max_image_pixels, field=field)

class FileStore(Protocol):
    async def put(self, data: bytes, *, prefix: str, extension: str = "") -> str:
        """Store `data` under a new key and return the key."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes stored under `key`; NotFound when there are none."""
        ...

    async def delete(self, key: str) -> None:
        """Forget `key`; nothing happens when it is already gone."""
        ...


def new_key(*, prefix: str, extension: str = "") -> str:
    if not _PREFIX.match(prefix) or not _EXTENSION.match(extension):
        raise ValueError("file key prefix or extension has characters we do not allow")
    now = utcnow()
    return f"{prefix}/{now:%Y}/{now:%m}/{new_id().hex}{extension}"


class LocalFileStore:
    """Files on a local disk (or a mounted volume) under one root directory, private to us."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, key: str) -> Path:
        if not _KEY.match(key):
            raise NotFound("no such file")
        return self.root / key

    async def put(self, data: bytes, *, prefix: str, extension: str = "") -> str:
        key = new_key(prefix=prefix, extension=extension)
        await asyncio.to_thread(self._write, self.path_of(key), data)
        return key

    async def get(self, key: str) -> bytes:
        path = self.path_of(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound("no such file") from None

    async def delete(self, key: str) -> None:
        if _KEY.match(key):  # a key we never made names nothing of ours
            await asyncio.to_thread(self.path_of(key).unlink, missing_ok=True)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        # Written to a temporary file and renamed, so a reader never sees half a file.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def file_store(settings: Settings) -> FileStore:
    """The store the settings point at (today always the local disk)."""
    return LocalFileStore(settings.file_storage_path)
