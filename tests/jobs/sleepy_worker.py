"""A worker process whose handler never finishes: `python -m tests.jobs.sleepy_worker KIND TYPE MARKER`.

It touches MARKER when a job starts, so a test knows the job is in hand before killing it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from core.settings import get_settings
from jobs.runner import connect_nats
from jobs.worker import Job, Worker, WorkerKind
from storage.db import open_database


async def main(kind: str, event_type: str, marker: Path) -> None:
    settings = get_settings()
    await open_database(settings)
    nc = await connect_nats(settings, name="sleepy-worker")

    async def never_finishes(job: Job) -> None:
        await asyncio.to_thread(marker.write_text, str(job.event_id))
        await asyncio.sleep(3600)

    await Worker(nc, settings, WorkerKind(kind, {event_type: never_finishes})).run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
