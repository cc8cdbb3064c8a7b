"""Background jobs in the dashboard: dead-lettered jobs with their errors (retry or discard
them), and how deep each durable consumer's queue is.

Dead letters are the `failed_jobs` rows the workers write when a job exhausts its deliveries
(the same message also sits in the dead-letter stream). Retrying re-publishes the job through
`storage.jobs.retry_failed_job` and discarding goes through `discard_failed_job`; both are
audited there. Queue depths are read from JetStream's consumer info (pending, waiting for an
ack, redelivered) over the admin's NATS link; while NATS is unreachable the page says so.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette_admin import (
    ActionSelection,
    CustomView,
    DateTimeField,
    EnumField,
    HasOne,
    IntegerField,
    JSONField,
    StringField,
    TextAreaField,
    UUIDField,
    action,
    flash,
    row_action,
)
from starlette_admin.widgets import BaseWidget, GridWidget, TableWidget, TextWidget

from admin.auth import current_staff
from admin.runtime import AdminLinks
from admin.tortoise_view import TortoiseModelView
from core.errors import Unavailable
from core.events import dead_letter_stream, jobs_stream
from core.settings import Settings
from storage import jobs
from storage.models import FailedJob

DISCARD_FORM = """
<form>
  <div class="mt-3">
    <label class="form-label" for="discard-reason">Why it will not be run (kept in the audit log)</label>
    <textarea class="form-control" id="discard-reason" name="reason" maxlength="500" rows="2"></textarea>
  </div>
</form>
"""
RESOLUTIONS = [("retried", "Retried"), ("discarded", "Discarded")]


class FailedJobView(TortoiseModelView):
    writable = False
    key = "failed-job"
    menu_label = "Dead jobs"
    display_name = "Dead job"
    icon = "fa fa-skull-crossbones"
    fields = [
        IntegerField("id", label="Id"),
        DateTimeField("failed_at", label="Failed"),
        StringField("consumer", label="Worker"),
        StringField("type", label="Event type"),
        UUIDField("event_id", label="Event id"),
        IntegerField("deliveries"),
        TextAreaField("error"),
        EnumField("resolution", choices=RESOLUTIONS),
        DateTimeField("resolved_at", label="Resolved", exclude_from_list=True),
        HasOne("resolved_by", key="user", label="Resolved by", exclude_from_list=True),
        JSONField("payload", exclude_from_list=True),
    ]
    searchable_fields = ["id", "consumer", "type", "error", "resolution", "failed_at"]
    sortable_fields = ["id", "failed_at", "consumer", "type", "deliveries"]
    fields_default_sort = [("failed_at", True), ("id", True)]
    row_actions = ["view", "retry", "discard"]
    actions = ["retry", "discard"]

    def __init__(self, links: AdminLinks) -> None:
        super().__init__(FailedJob)
        self.links = links

    async def repr(self, obj: Any, request: Request) -> str:
        return f"{obj.type} for {obj.consumer} ({obj.event_id})"

    async def is_row_action_allowed_for_obj(self, request: Request, name: str, obj: Any) -> bool:
        if name in ("retry", "discard"):
            return obj.resolution is None  # the action checks it again under a row lock
        return await super().is_row_action_allowed_for_obj(request, name, obj)

    @row_action(name="retry", text="Retry", icon_class="fa fa-redo",
                confirmation="Put this job back in its queue? Workers that already handled the "
                             "event skip it.", submit_btn_text="Retry")
    async def retry_one(self, request: Request, pk: Any) -> None:
        await self._retry(request, [pk])

    @row_action(name="discard", text="Discard", icon_class="fa fa-trash",
                confirmation="Discard this job? It will not be run.", submit_btn_text="Discard",
                form=DISCARD_FORM)
    async def discard_one(self, request: Request, pk: Any) -> None:
        await self._discard(request, [pk])

    @action(name="retry", text="Retry jobs", confirmation="Put the selected jobs back in their queues?",
            submit_btn_text="Retry")
    async def retry_selected(self, request: Request, selection: ActionSelection) -> None:
        await self._retry(request, await selection.pks())

    @action(name="discard", text="Discard jobs", confirmation="Discard the selected jobs?",
            submit_btn_text="Discard", form=DISCARD_FORM)
    async def discard_selected(self, request: Request, selection: ActionSelection) -> None:
        await self._discard(request, await selection.pks())

    async def _retry(self, request: Request, pks: list[Any]) -> None:
        js = await self.links.jetstream()
        for pk in pks:
            await jobs.retry_failed_job(self._key(pk), actor=current_staff(request), js=js,
                                        prefix=self.links.settings.jetstream_prefix)
        flash(request, f"Queued {len(pks)} job{'s' if len(pks) != 1 else ''} again.", "success")

    async def _discard(self, request: Request, pks: list[Any]) -> None:
        async with request.form() as form:
            reason = str(form.get("reason") or "")
        for pk in pks:
            await jobs.discard_failed_job(self._key(pk), actor=current_staff(request), reason=reason)
        flash(request, f"Discarded {len(pks)} job{'s' if len(pks) != 1 else ''}.", "success")


class QueuesView(CustomView):
    """Depth of every durable consumer of this deployment's job and dead-letter streams."""

    def __init__(self, settings: Settings, links: AdminLinks) -> None:
        super().__init__(menu_label="Queues", icon="fa fa-stream", path="/queues", widget=self.widgets,
                         route_name="queues")
        self.settings = settings
        self.links = links

    async def widgets(self, request: Request) -> BaseWidget:
        prefix = self.settings.jetstream_prefix
        try:
            jsm = await self.links.jetstream_manager()
            rows: list[list[Any]] = []
            streams = {s.config.name: s for s in await jsm.streams_info()}
            for name in (jobs_stream(prefix), dead_letter_stream(prefix)):
                if name in streams:
                    for info in sorted(await jsm.consumers_info(name), key=lambda c: c.name or ""):
                        rows.append([name, info.name, info.num_pending, info.num_ack_pending,
                                     info.num_redelivered, info.num_waiting])
        except Unavailable as exc:
            return TextWidget(content=f"NATS unreachable: {exc.detail}. Queue depths appear when "
                                      "the connection is back.", card=True)
        except Exception as exc:  # JetStream answered with an error, or timed out
            return TextWidget(content=f"NATS unreachable: JetStream did not answer ({type(exc).__name__}).",
                              card=True)
        messages = [[name, s.state.messages, s.state.bytes] for name, s in sorted(streams.items())
                    if name in (jobs_stream(prefix), dead_letter_stream(prefix))]
        return GridWidget(children=[
            TableWidget(title="Durable consumers",
                        columns=["Stream", "Consumer", "Pending", "Waiting for ack", "Redelivered",
                                 "Pull requests waiting"],
                        rows_callback=_rows(rows)),
            TableWidget(title="Streams", columns=["Stream", "Messages", "Bytes"],
                        rows_callback=_rows(messages)),
        ])


def _rows(rows: list[list[Any]]) -> Any:
    async def get(request: Request) -> list[list[Any]]:
        return rows
    return get
