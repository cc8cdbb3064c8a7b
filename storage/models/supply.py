"""Cleaner supply: the service catalogue, profiles, verification, areas, availability, presence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

from core.ids import new_id

if TYPE_CHECKING:
    from storage.models.accounts import User


class ServiceType(Model):
    id = fields.CharField(max_length=40, primary_key=True)
    name = fields.CharField(max_length=120)
    description = fields.TextField(default="")
    base_price_minor = fields.IntField()
    currency = fields.CharField(max_length=3, default="GBP")
    min_duration_minutes = fields.IntField()
    requires_photo_evidence = fields.BooleanField(default=False)  # opt-in since migration 0009
    active = fields.BooleanField(default=True)
    sort_order = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "service_types"


class CleanerProfile(Model):
    # A plain UUID key (the user's id), not a OneToOneField: Tortoise cannot write foreign keys
    # that point at a model whose primary key is itself a relation.
    user_id = fields.UUIDField(primary_key=True)
    bio = fields.TextField(default="")
    # The served photo: the images job's EXIF-free copy (never an original), with its thumbnails.
    photo_path = fields.CharField(max_length=300, null=True)
    photo_upload_key = fields.CharField(max_length=300, null=True)  # the original awaiting the job
    photo_status = fields.CharField(max_length=16, null=True)  # of the latest upload
    photo_refused_reason = fields.TextField(null=True)
    photo_content_type = fields.CharField(max_length=64, null=True)
    photo_thumbnails: Any = fields.JSONField(default=dict)  # width in pixels → key
    photo_width = fields.IntField(null=True)
    photo_height = fields.IntField(null=True)
    photo_captured_at = fields.DatetimeField(null=True)
    photo_gps_lat = fields.FloatField(null=True)
    photo_gps_lng = fields.FloatField(null=True)
    photo_processed_at = fields.DatetimeField(null=True)
    time_zone = fields.CharField(max_length=64, default="Europe/London")
    travel_buffer_minutes = fields.IntField(default=30)
    currency = fields.CharField(max_length=3, default="GBP")
    verification_status = fields.CharField(max_length=16, default="unsubmitted")
    verification_reason = fields.TextField(null=True)
    verified_at = fields.DatetimeField(null=True)
    verification_changed_at = fields.DatetimeField(auto_now_add=True)  # orders the review queue
    rating_avg = fields.DecimalField(max_digits=3, decimal_places=2, default=0)
    rating_count = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "cleaner_profiles"


class CleanerService(Model):
    id = fields.BigIntField(primary_key=True)
    cleaner: fields.ForeignKeyRelation[CleanerProfile] = fields.ForeignKeyField("models.CleanerProfile", related_name="services", on_delete=fields.CASCADE)
    service: fields.ForeignKeyRelation[ServiceType] = fields.ForeignKeyField("models.ServiceType", related_name=False, on_delete=fields.RESTRICT)
    hourly_rate_minor = fields.IntField()

    class Meta:
        table = "cleaner_services"
        unique_together = (("cleaner", "service"),)


class VerificationDocument(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    cleaner: fields.ForeignKeyRelation[CleanerProfile] = fields.ForeignKeyField("models.CleanerProfile", related_name="documents", on_delete=fields.CASCADE)
    storage_key = fields.CharField(max_length=300)
    content_type = fields.CharField(max_length=64)
    size_bytes = fields.IntField()
    sha256 = fields.CharField(max_length=64)
    status = fields.CharField(max_length=16, default="pending")
    reason = fields.TextField(null=True)
    reviewed_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField("models.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    reviewed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "verification_documents"


class ServiceArea(Model):
    cleaner: fields.OneToOneRelation[CleanerProfile] = fields.OneToOneField("models.CleanerProfile", related_name="service_area", primary_key=True,
                                   on_delete=fields.CASCADE)
    geojson: Any = fields.JSONField()
    min_lng = fields.FloatField()
    min_lat = fields.FloatField()
    max_lng = fields.FloatField()
    max_lat = fields.FloatField()
    area_km2 = fields.FloatField()
    version = fields.BigIntField(generated=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "service_areas"


class AvailabilityRule(Model):
    id = fields.BigIntField(primary_key=True)
    cleaner: fields.ForeignKeyRelation[CleanerProfile] = fields.ForeignKeyField("models.CleanerProfile", related_name="availability_rules",
                                     on_delete=fields.CASCADE)
    weekday = fields.SmallIntField()
    start_minute = fields.SmallIntField()
    end_minute = fields.SmallIntField()

    class Meta:
        table = "availability_rules"


class AvailabilityException(Model):
    id = fields.BigIntField(primary_key=True)
    cleaner: fields.ForeignKeyRelation[CleanerProfile] = fields.ForeignKeyField("models.CleanerProfile", related_name="availability_exceptions",
                                     on_delete=fields.CASCADE)
    day = fields.DateField()
    kind = fields.CharField(max_length=8)
    start_minute = fields.SmallIntField(null=True)
    end_minute = fields.SmallIntField(null=True)
    note = fields.CharField(max_length=200, default="")

    class Meta:
        table = "availability_exceptions"


class CleanerPresence(Model):
    cleaner: fields.OneToOneRelation[CleanerProfile] = fields.OneToOneField("models.CleanerProfile", related_name="presence", primary_key=True,
                                   on_delete=fields.CASCADE)
    last_seen_at = fields.DatetimeField()
    lat = fields.FloatField(null=True)
    lng = fields.FloatField(null=True)

    class Meta:
        table = "cleaner_presence"
