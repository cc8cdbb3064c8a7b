"""Content pages (FAQ, help, legal): written by staff in the admin, read by the apps."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class ContentPage(Model):
    """`body` is what staff wrote; `body_html` is its rendering, sanitised on save and served."""

    id = fields.BigIntField(primary_key=True)
    slug = fields.CharField(max_length=80, unique=True)
    title = fields.CharField(max_length=200)
    kind = fields.CharField(max_length=16, default="help")
    audience = fields.CharField(max_length=16, default="all")
    body_format = fields.CharField(max_length=16, default="markdown")
    body = fields.TextField(default="")
    body_html = fields.TextField(default="")
    published = fields.BooleanField(default=False)
    sort_order = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "content_pages"
