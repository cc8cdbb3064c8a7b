"""Users and what authenticates them: access tokens, one-time tokens, social identities."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from tortoise import fields
from tortoise.models import Model

from core.ids import new_id


class User(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    email = fields.CharField(max_length=254, unique=True)
    name = fields.CharField(max_length=120)
    phone = fields.CharField(max_length=32, null=True)
    role = fields.CharField(max_length=16)
    password_hash = fields.TextField(null=True)
    email_verified_at = fields.DatetimeField(null=True)
    suspended_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "users"

    def public(self) -> dict[str, Any]:
        """What the user may see of themselves."""
        return {
            "id": str(self.id),
            "email": self.email,
            "name": self.name,
            "phone": self.phone,
            "role": self.role,
            "email_verified": self.email_verified_at is not None,
            "suspended": self.suspended_at is not None,
            "created_at": self.created_at.isoformat(),
        }


class PersonalAccessToken(Model):
    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="tokens", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=120)
    token_hash = fields.CharField(max_length=64, unique=True)
    abilities: Any = fields.JSONField(default=lambda: ["*"])
    last_used_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "personal_access_tokens"

    def public(self, *, current_id: int | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "abilities": self.abilities,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "created_at": self.created_at.isoformat(),
            "current": self.id == current_id,
        }


class OneTimeToken(Model):
    user_id: UUID  # the foreign key's column, which Tortoise adds beside `user`
    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="one_time_tokens", on_delete=fields.CASCADE
    )
    purpose = fields.CharField(max_length=32)
    token_hash = fields.CharField(max_length=64, unique=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "one_time_tokens"


class SocialIdentity(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="social_identities", on_delete=fields.CASCADE
    )
    provider = fields.CharField(max_length=16)
    subject = fields.CharField(max_length=255)
    email = fields.CharField(max_length=254, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "social_identities"
        unique_together = (("provider", "subject"),)
