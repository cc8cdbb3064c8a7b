"""The columns every uploaded image shares (evidence photos, chat attachments): what was stored,
and what the images job read and made of it. One abstract model, so the job treats all alike."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class UploadedImage(Model):
    """`storage_key` is the original until processed, then its EXIF-free, upright copy."""

    storage_key = fields.CharField(max_length=300)
    content_type = fields.CharField(max_length=64)
    size_bytes = fields.IntField()
    sha256 = fields.CharField(max_length=64)
    status = fields.CharField(max_length=16, default="processing")
    refused_reason = fields.TextField(null=True)
    width = fields.IntField(null=True)
    height = fields.IntField(null=True)
    captured_at = fields.DatetimeField(null=True)
    gps_lat = fields.FloatField(null=True)
    gps_lng = fields.FloatField(null=True)
    thumbnails: Any = fields.JSONField(default=dict)
    processed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        abstract = True
