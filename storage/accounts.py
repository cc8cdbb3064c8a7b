"""Account actions: register, sign in, tokens, e-mail verification, password reset, social links.

Each write validates first (raising core.errors), then writes in one transaction together with
its audit and outbox rows. Plain-text secrets are returned once and never stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from uuid import UUID

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core.accounts import (
    SELF_SERVICE_ROLES,
    AccountError,
    Role,
    check_name,
    check_password,
    hash_token_secret,
    may_link_social_identity,
    normalise_email,
    parse_token,
    token_matches,
)
from core.batching import Coalescer
from core.clock import utcnow
from core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from core.events import EventType
from core.ids import new_secret
from core.pagination import decode_cursor, encode_cursor
from core.settings import Settings
from storage import audit, outbox
from storage.models import OneTimeToken, PersonalAccessToken, SocialIdentity, User
from storage.passwords import hash_password, verify_password

LAST_USED_RESOLUTION = timedelta(seconds=60)
log = logging.getLogger("spotless.accounts")


@dataclass(frozen=True)
class Session:
    """A user signed in through one personal access token."""

    user: User
    token: PersonalAccessToken


@dataclass(frozen=True)
class IssuedToken:
    token: PersonalAccessToken
    plain_text: str  # "<id>|<secret>", shown to the client once


def _role(raw: str, *, allowed: frozenset[Role] = SELF_SERVICE_ROLES) -> Role:
    try:
        role = Role(raw)
    except ValueError:
        raise Invalid(f"must be one of: {', '.join(sorted(allowed))}", field="role") from None
    if role not in allowed:
        raise Invalid(f"must be one of: {', '.join(sorted(allowed))}", field="role")
    return role


async def _issue_token(
    user: User, *, name: str, settings: Settings, using: Any, abilities: list[str] | None = None
) -> IssuedToken:
    secret = new_secret(40)
    expires_at = utcnow() + timedelta(days=settings.token_ttl_days) if settings.token_ttl_days else None
    token = await PersonalAccessToken.create(
        user=user,
        name=(name.strip() or "unnamed device")[:120],
        token_hash=hash_token_secret(secret),
        abilities=abilities or ["*"],
        expires_at=expires_at,
        using_db=using,
    )
    return IssuedToken(token, f"{token.id}|{secret}")


async def _new_one_time_token(user: User, *, purpose: str, ttl_s: int, using: Any) -> tuple[str, datetime]:
    secret = new_secret(48)
    expires_at = utcnow() + timedelta(seconds=ttl_s)
    await OneTimeToken.create(
        user=user, purpose=purpose, token_hash=hash_token_secret(secret), expires_at=expires_at, using_db=using
    )
    return secret, expires_at


async def _enqueue_verification(user: User, *, settings: Settings, using: Any) -> None:
    secret, expires_at = await _new_one_time_token(
        user, purpose="email_verification", ttl_s=settings.email_verification_ttl_s, using=using
    )
    await outbox.enqueue(
        EventType.EMAIL_VERIFICATION_REQUESTED,
        {"user_id": str(user.id), "email": user.email, "name": user.name, "token": secret,
         "expires_at": expires_at.isoformat()},
        using=using,
    )


async def register_user(
    *, email: str, password: str, name: str, role: str, device_name: str, settings: Settings
) -> tuple[User, IssuedToken]:
    """Create a client or cleaner account and its first token; ask for e-mail verification."""
    email = normalise_email(email)
    name = check_name(name)
    chosen = _role(role)
    check_password(password, email=email, name=name, min_length=settings.password_min_length)
    if await User.filter(email=email).exists():
        raise Conflict("an account with this e-mail already exists", code=AccountError.EMAIL_TAKEN)
    password_hash = await hash_password(password, settings)
    try:
        async with in_transaction() as tx:
            user = await User.create(
                email=email, name=name, role=str(chosen), password_hash=password_hash, using_db=tx
            )
            issued = await _issue_token(user, name=device_name, settings=settings, using=tx)
            await audit.record(actor_id=user.id, action="user.registered", entity_type="user",
                               entity_id=user.id, after={"email": email, "role": str(chosen)}, using=tx)
            await outbox.enqueue(EventType.USER_REGISTERED,
                                 {"user_id": str(user.id), "role": str(chosen)}, using=tx)
            await _enqueue_verification(user, settings=settings, using=tx)
    except IntegrityError:
        raise Conflict("an account with this e-mail already exists", code=AccountError.EMAIL_TAKEN) from None
    return user, issued


async def log_in(*, email: str, password: str, device_name: str, settings: Settings) -> tuple[User, IssuedToken]:
    """Check a password and issue a token for the named device."""
    try:
        email = normalise_email(email)
    except Invalid:
        email = ""
    user = await User.get_or_none(email=email) if email else None
    ok = await verify_password(password, user.password_hash if user else None, settings)
    if user is None or not ok:
        raise Unauthenticated("e-mail or password is wrong", code=AccountError.BAD_CREDENTIALS)
    if user.suspended_at is not None:
        raise Unauthenticated("this account is suspended", code=AccountError.ACCOUNT_SUSPENDED)
    async with in_transaction() as tx:
        issued = await _issue_token(user, name=device_name, settings=settings, using=tx)
    return user, issued


async def resolve_token(raw: str) -> Session:
    """The session a bearer token belongs to; Unauthenticated when it is unknown, expired or revoked.

    Every request asks PostgreSQL (so a revoked token or a suspended account stops at once), but
    the lookups of one loop tick share one query (`_token_lookups`)."""
    try:
        token_id, secret = parse_token(raw)
    except Invalid:
        raise Unauthenticated("the access token is malformed", code=AccountError.TOKEN_INVALID) from None
    found: Session | None = await _token_lookups().call(0, "tokens", token_id)
    if found is None or not token_matches(secret, found.token.token_hash):
        raise Unauthenticated("the access token is not valid", code=AccountError.TOKEN_INVALID)
    token, user = found.token, found.user
    now = utcnow()
    if token.expires_at is not None and token.expires_at <= now:
        raise Unauthenticated("the access token has expired", code=AccountError.TOKEN_INVALID)
    if user.suspended_at is not None:
        raise Unauthenticated("this account is suspended", code=AccountError.ACCOUNT_SUSPENDED)
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        # Recorded beside the request, not in its way: the touches of a loop tick share one
        # UPDATE, and none waits for the commit (a request that waited would wait on the disk's
        # flush, and a minute after a burst of sign-ins every token falls due at once).
        token.last_used_at = now
        _token_lookups().call(0, "touch", token.id).add_done_callback(_touch_failed)
    return found


def _touch_failed(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.warning("recording tokens' last use failed: %r", exc)


_lookups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Coalescer] = weakref.WeakKeyDictionary()


def _token_lookups() -> Coalescer:
    """This event loop's batcher of account lookups (a Coalescer's futures belong to one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _lookups:
        _lookups[loop] = Coalescer(_look_up, max_inflight=4)
    return _lookups[loop]


async def _look_up(_shard: int, method: str, items: list[Any]) -> list[Any]:
    if method == "touch":
        await connections.get("default").execute_query(
            "UPDATE personal_access_tokens SET last_used_at = $2 WHERE id = ANY($1::bigint[])",
            [sorted(set(items)), utcnow()])
        return [None] * len(items)
    if method != "tokens":
        raise ValueError(method)
    return await _sessions_of(items)


@cache
def _session_query() -> str:
    def columns(model: Any, alias: str) -> str:
        return ", ".join(f'{alias}."{c}" AS "{alias}__{c}"' for c in sorted(model._meta.db_fields))
    return (f"SELECT {columns(PersonalAccessToken, 't')}, {columns(User, 'u')} "
            "FROM personal_access_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ANY($1::bigint[])")


async def _sessions_of(token_ids: list[int]) -> list[Session | None]:
    """One query for a batch of token ids: (token, user) per id, None where there is none. The
    columns are the models' own, turned into model instances the way Tortoise does after a select."""
    rows = await connections.get("default").execute_query_dict(_session_query(), [sorted(set(token_ids))])
    found: dict[int, Session] = {}
    for row in rows:
        parts: dict[str, dict[str, Any]] = {"t": {}, "u": {}}
        for key, value in row.items():
            alias, _, column = key.partition("__")
            parts[alias][column] = value
        token = PersonalAccessToken._init_from_db(**parts["t"])
        user = User._init_from_db(**parts["u"])
        object.__setattr__(token, "_user", user)  # as select_related("user") leaves it
        found[token.id] = Session(user=user, token=token)
    return [found.get(token_id) for token_id in token_ids]


async def _revoke(user_id: UUID, *, reason: str, using: Any, token_id: int | None = None,
                  delete: bool = True) -> list[int]:
    """Revoke a user's tokens (one, or all) in the open transaction `using`, with the outbox
    event that closes the sockets they authorised (edge/realtime/hub.py); the ids revoked.
    A suspension keeps the tokens (`delete=False`): they work again on reinstatement, but the
    sockets opened with them are closed all the same."""
    query = PersonalAccessToken.filter(user_id=user_id).using_db(using)
    if token_id is not None:
        query = query.filter(id=token_id)
    found: list[Any] = await query.values_list("id", flat=True)
    ids = [int(i) for i in found]
    if delete and ids:
        await PersonalAccessToken.filter(id__in=ids).using_db(using).delete()
    if ids:
        await outbox.enqueue(EventType.ACCESS_REVOKED, {"user_id": str(user_id), "token_ids": sorted(ids),
                                                        "reason": reason, "at": time.time()}, using=using)
    return ids


async def revoke_token(*, actor: User, token_id: int) -> None:
    if not 0 < token_id < 2**63:  # outside a bigint it names no token, and PostgreSQL would refuse it
        raise NotFound("no such token")
    async with in_transaction() as tx:
        if not await _revoke(actor.id, reason="signed_out", token_id=token_id, using=tx):
            raise NotFound("no such token")


async def revoke_all_tokens(*, actor: User) -> int:
    async with in_transaction() as tx:
        return len(await _revoke(actor.id, reason="signed_out", using=tx))


async def list_tokens(*, actor: User, cursor: str | None, limit: int,
                      current: PersonalAccessToken | None = None) -> tuple[list[PersonalAccessToken], str | None]:
    """A page of the user's tokens, newest first. `current`, the token of the request asking,
    lends its last use to its row: `resolve_token` records that beside the request, so the
    database may not hold it yet."""
    after = decode_cursor(cursor)
    query = PersonalAccessToken.filter(user_id=actor.id)
    if after is not None:
        if not isinstance(after, int):
            raise Invalid("cursor is not one this API issued", field="cursor")
        query = query.filter(id__lt=after)
    rows = await query.order_by("-id").limit(limit + 1)
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    if current is not None and current.last_used_at is not None:
        for row in rows:
            if row.id == current.id and (row.last_used_at is None or row.last_used_at < current.last_used_at):
                row.last_used_at = current.last_used_at
    return rows[:limit], next_cursor


async def request_email_verification(*, actor: User, settings: Settings) -> None:
    if actor.email_verified_at is not None:
        raise Conflict("this e-mail address is already verified", code="already_verified")
    async with in_transaction() as tx:
        await _enqueue_verification(actor, settings=settings, using=tx)


async def _consume_one_time_token(secret: str, *, purpose: str, using: Any) -> OneTimeToken:
    if not isinstance(secret, str) or not 20 <= len(secret) <= 128:
        raise Invalid("the link is not valid", field="token", code=AccountError.TOKEN_INVALID)
    token = (
        await OneTimeToken.filter(token_hash=hash_token_secret(secret), purpose=purpose)
        .using_db(using).select_for_update().first()
    )
    if token is None or token.used_at is not None or token.expires_at <= utcnow():
        raise Invalid("the link is not valid, was already used, or has expired", field="token",
                      code=AccountError.TOKEN_INVALID)
    token.used_at = utcnow()
    await token.save(update_fields=["used_at"], using_db=using)
    return token


async def verify_email(*, token: str) -> User:
    async with in_transaction() as tx:
        ott = await _consume_one_time_token(token, purpose="email_verification", using=tx)
        user = await User.filter(id=ott.user_id).using_db(tx).get()
        if user.email_verified_at is None:
            user.email_verified_at = utcnow()
            await user.save(update_fields=["email_verified_at", "updated_at"], using_db=tx)
            await audit.record(actor_id=user.id, action="user.email_verified", entity_type="user",
                               entity_id=user.id, using=tx)
    return user


async def request_password_reset(*, email: str, settings: Settings) -> None:
    """Send a reset link when the account exists; say nothing either way (no account probing)."""
    try:
        email = normalise_email(email)
    except Invalid:
        return
    user = await User.get_or_none(email=email)
    if user is None or user.suspended_at is not None:
        return
    async with in_transaction() as tx:
        secret, expires_at = await _new_one_time_token(
            user, purpose="password_reset", ttl_s=settings.password_reset_ttl_s, using=tx
        )
        await outbox.enqueue(
            EventType.PASSWORD_RESET_REQUESTED,
            {"user_id": str(user.id), "email": user.email, "name": user.name, "token": secret,
             "expires_at": expires_at.isoformat()},
            using=tx,
        )


async def reset_password(*, token: str, password: str, settings: Settings) -> User:
    """Set a new password through a reset link; every existing token is revoked."""
    async with in_transaction() as tx:
        ott = await _consume_one_time_token(token, purpose="password_reset", using=tx)
        user = await User.filter(id=ott.user_id).using_db(tx).get()
        check_password(password, email=user.email, name=user.name, min_length=settings.password_min_length)
        user.password_hash = await hash_password(password, settings)
        # The link proved control of the mailbox.
        user.email_verified_at = user.email_verified_at or utcnow()
        await user.save(update_fields=["password_hash", "email_verified_at", "updated_at"], using_db=tx)
        await _revoke(user.id, reason="password_reset", using=tx)
        await audit.record(actor_id=user.id, action="user.password_reset", entity_type="user",
                           entity_id=user.id, using=tx)
        await outbox.enqueue(EventType.PASSWORD_CHANGED, {"user_id": str(user.id), "email": user.email,
                                                          "name": user.name}, using=tx)
    return user


@dataclass(frozen=True)
class ProviderIdentity:
    """What a social provider vouched for, after its token was verified."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None


async def sign_in_with_identity(
    identity: ProviderIdentity, *, role: str, device_name: str, settings: Settings
) -> tuple[User, IssuedToken, bool]:
    """Sign in (or up) through a verified provider identity; returns (user, token, created)."""
    chosen = _role(role)
    async with in_transaction() as tx:
        link = await (
            SocialIdentity.filter(provider=identity.provider, subject=identity.subject)
            .using_db(tx).select_related("user").first()
        )
        created = False
        user: User | None
        if link is not None:
            user = link.user
        else:
            email = normalise_email(identity.email) if identity.email else None
            user = await User.filter(email=email).using_db(tx).first() if email else None
            if user is not None and not may_link_social_identity(provider_email_verified=identity.email_verified):
                raise Conflict(
                    "an account with this e-mail exists; sign in with your password to link this provider",
                    code=AccountError.LINK_REQUIRES_VERIFIED_EMAIL,
                )
            if user is None:
                if email is None:
                    raise Invalid("the provider did not share an e-mail address", field="token",
                                  code=AccountError.OAUTH_REJECTED)
                name = check_name(identity.name or email.split("@", 1)[0])
                user = await User.create(
                    email=email, name=name, role=str(chosen), password_hash=None,
                    email_verified_at=utcnow() if identity.email_verified else None, using_db=tx,
                )
                created = True
                await outbox.enqueue(EventType.USER_REGISTERED,
                                     {"user_id": str(user.id), "role": str(chosen)}, using=tx)
            elif user.email_verified_at is None and identity.email_verified:
                user.email_verified_at = utcnow()
                await user.save(update_fields=["email_verified_at", "updated_at"], using_db=tx)
            await SocialIdentity.create(user=user, provider=identity.provider, subject=identity.subject,
                                        email=email, using_db=tx)
            await audit.record(actor_id=user.id, action="user.social_linked", entity_type="user",
                               entity_id=user.id, after={"provider": identity.provider}, using=tx)
        if user.suspended_at is not None:
            raise Unauthenticated("this account is suspended", code=AccountError.ACCOUNT_SUSPENDED)
        issued = await _issue_token(user, name=device_name, settings=settings, using=tx)
    return user, issued, created


async def make_admin(*, email: str, actor: User | None = None) -> User:
    """Give an account the admin role (the CLI's `spotless users make-admin`)."""
    email = normalise_email(email)
    async with in_transaction() as tx:
        user = await User.filter(email=email).using_db(tx).select_for_update().first()
        if user is None:
            raise NotFound(f"no account with e-mail {email}")
        if user.role == Role.ADMIN:
            return user
        before = user.role
        user.role = str(Role.ADMIN)
        await user.save(update_fields=["role", "updated_at"], using_db=tx)
        await audit.record(actor_id=actor.id if actor else None, action="user.made_admin",
                           entity_type="user", entity_id=user.id,
                           before={"role": before}, after={"role": "admin"}, using=tx)
    return user


async def set_suspended(*, user_id: UUID, suspended: bool, actor: User, reason: str = "") -> User:
    """Suspend or reinstate an account. A suspended user's tokens stop working at once, and the
    sockets they authorised are closed."""
    if actor.role != Role.ADMIN:
        raise Forbidden("only staff may suspend accounts")
    async with in_transaction() as tx:
        user = await User.filter(id=user_id).using_db(tx).select_for_update().first()
        if user is None:
            raise NotFound("no such user")
        if (user.suspended_at is not None) == suspended:
            return user
        user.suspended_at = utcnow() if suspended else None
        await user.save(update_fields=["suspended_at", "updated_at"], using_db=tx)
        if suspended:
            await _revoke(user.id, reason="suspended", delete=False, using=tx)
        await audit.record(actor_id=actor.id, action="user.suspended" if suspended else "user.reinstated",
                           entity_type="user", entity_id=user.id,
                           before={"suspended": not suspended}, after={"suspended": suspended, "reason": reason},
                           using=tx)
    return user


async def create_user(
    *, email: str, password: str, name: str, role: str, settings: Settings, verified: bool = False,
    using: Any = None,
) -> User:
    """Create an account of any role without a session (seeding, staff tools)."""
    email = normalise_email(email)
    name = check_name(name)
    chosen = _role(role, allowed=frozenset(Role))
    check_password(password, email=email, name=name, min_length=settings.password_min_length)
    password_hash = await hash_password(password, settings)
    try:
        return await User.create(
            email=email, name=name, role=str(chosen), password_hash=password_hash,
            email_verified_at=utcnow() if verified else None, using_db=using,
        )
    except IntegrityError:
        raise Conflict("an account with this e-mail already exists", code=AccountError.EMAIL_TAKEN) from None
