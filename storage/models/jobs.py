"""Durable jobs' own tables (idempotency keys, dead letters, scheduler state) and push targets."""

from typing import Any

from tortoise import fields
from tortoise.models import Model


class ProcessedEvent(Model):
    """One row per (consumer, event) handled: a redelivered event is skipped, not redone."""

    id = fields.BigIntField(primary_key=True)
    consumer = fields.CharField(max_length=100)
    event_id = fields.UUIDField()
    processed_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "processed_events"
        unique_together = (("consumer", "event_id"),)


class FailedJob(Model):
    """A job that exhausted its deliveries or was refused as poison, with the last error."""

    id = fields.BigIntField(primary_key=True)
    consumer = fields.CharField(max_length=100)
    event_id = fields.UUIDField()
    type = fields.CharField(max_length=64)
    payload: fields.JSONField[Any] = fields.JSONField()
    error = fields.TextField()
    deliveries = fields.IntField()
    failed_at = fields.DatetimeField(auto_now_add=True)
    # What staff did with it (storage.jobs.retry_failed_job / discard_failed_job); None: open.
    resolution = fields.CharField(max_length=16, null=True)
    resolved_at = fields.DatetimeField(null=True)
    resolved_by: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL)

    class Meta:
        table = "failed_jobs"
        unique_together = (("consumer", "event_id"),)


class ScheduledTask(Model):
    """A periodic task's next due time; the row lock decides which worker runs it."""

    name = fields.CharField(max_length=100, primary_key=True)
    next_run_at = fields.DatetimeField()
    last_run_at = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)

    class Meta:
        table = "scheduled_tasks"


class ScheduledEvent(Model):
    """An event to put in the outbox at `due_at` (booking reminders, invoices)."""

    id = fields.BigIntField(primary_key=True)
    event_id = fields.UUIDField(unique=True)
    type = fields.CharField(max_length=64)
    payload: fields.JSONField[Any] = fields.JSONField()
    due_at = fields.DatetimeField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "scheduled_events"


class Device(Model):
    """A push token of one app install; deleted when FCM reports it gone."""

    id = fields.BigIntField(primary_key=True)
    user_id = fields.UUIDField()
    platform = fields.CharField(max_length=16)
    kind = fields.CharField(max_length=8, default="token")  # "fid" or legacy "token"
    token = fields.CharField(max_length=4096, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_seen_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "devices"


class NotificationPreference(Model):
    """The push categories a user switched off (none by default)."""

    user_id = fields.UUIDField(primary_key=True)
    disabled: fields.JSONField[list[str]] = fields.JSONField(default=list)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "notification_preferences"
