"""`spotless worker all` as its own process: relay, workers and scheduler, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from storage.models import ScheduledTask
from tests.jobs.conftest import eventually
from tests.stack import ROOT


async def test_spotless_worker_all_delivers_mail_and_stops_cleanly_on_sigterm(
        services, settings, jetstream, db, make_account):
    # given `spotless worker all` running
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "worker", "all", cwd=ROOT, env={**os.environ, **services})
    try:
        # when someone signs up
        account = make_account()
        # then their e-mail is written to the mailbox by that process, and its scheduler ran
        await eventually(lambda: any(account.email in p.read_text(errors="replace")
                                     for p in settings.mail_path.glob("*.eml")), timeout_s=60)
        await eventually(lambda: ScheduledTask.filter(name="prune_rate_limits",
                                                      last_run_at__isnull=False).exists())
        # and SIGTERM stops it cleanly
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
