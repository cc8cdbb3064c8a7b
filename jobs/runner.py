"""`spotless worker`: runs the job loops until SIGTERM/SIGINT, finishing the batch in hand."""

from __future__ import annotations

import asyncio
import logging
import signal

from core.settings import Settings
from jobs import email
from storage.db import close_database, open_database

log = logging.getLogger("spotless.jobs")

KINDS = ("email",)


async def run_workers(settings: Settings, *, kinds: list[str], poll_s: float = 1.0) -> None:
    wanted = set(KINDS) if "all" in kinds else set(kinds)
    unknown = wanted - set(KINDS)
    if unknown:
        raise SystemExit(f"spotless worker: unknown kind(s) {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(KINDS)} or all")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await open_database(settings)
    try:
        while not stop.is_set():
            if "email" in wanted:
                try:
                    sent = await email.deliver_pending(settings)
                    if sent:
                        log.info("delivered %d e-mail(s) to %s", sent, settings.mail_path)
                        continue
                except Exception:  # one bad batch must not stop the worker; it is retried
                    log.exception("e-mail delivery failed; retrying")
            try:
                await asyncio.wait_for(stop.wait(), poll_s)
            except TimeoutError:
                pass
    finally:
        await close_database()
