"""Account rules: roles, e-mail normalisation, password strength, token format. Pure, no I/O."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from enum import StrEnum

from core.errors import Invalid


class Role(StrEnum):
    CLIENT = "client"
    CLEANER = "cleaner"
    ADMIN = "admin"


SELF_SERVICE_ROLES = frozenset({Role.CLIENT, Role.CLEANER})


class AccountError(StrEnum):
    EMAIL_TAKEN = "email_taken"
    WEAK_PASSWORD = "weak_password"
    BAD_CREDENTIALS = "bad_credentials"
    TOKEN_INVALID = "token_invalid"
    ACCOUNT_SUSPENDED = "account_suspended"
    WRONG_ROLE = "wrong_role"
    OAUTH_REJECTED = "oauth_rejected"
    OAUTH_UNCONFIGURED = "oauth_unconfigured"
    LINK_REQUIRES_VERIFIED_EMAIL = "link_requires_verified_email"


_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
MAX_EMAIL_LENGTH = 254
MAX_PASSWORD_LENGTH = 256
MAX_NAME_LENGTH = 120

# A short list of the passwords that top every breach corpus; the length rule catches the rest.
COMMON_PASSWORDS = frozenset(
    """password password1 password12 password123 password1234 passw0rd 1234567890 12345678910
    123456789a qwertyuiop qwerty1234 qwerty12345 1q2w3e4r5t 1qaz2wsx3edc iloveyou123 letmein123
    welcome123 administrator changeme123 abcdefghij abc1234567 0987654321 1111111111 0000000000
    aaaaaaaaaa football123 baseball123 superman123 trustno1234 sunshine123 princess123 dragon1234
    monkey12345 spotless123 cleaning123""".split()
)


def normalise_email(raw: str) -> str:
    """Trim, NFC-normalise and lower-case an address; raise Invalid when it is not one."""
    email = unicodedata.normalize("NFC", raw.strip()).lower()
    invisible = any(unicodedata.category(ch)[0] in "CZ" for ch in email)
    if invisible or len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        raise Invalid("must be a valid e-mail address", field="email")
    return email


def check_name(raw: str) -> str:
    name = unicodedata.normalize("NFC", raw).strip()
    if not name:
        raise Invalid("must not be empty", field="name")
    if len(name) > MAX_NAME_LENGTH:
        raise Invalid(f"must be at most {MAX_NAME_LENGTH} characters", field="name")
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} for ch in name):
        raise Invalid("must not contain control or invisible characters", field="name")
    return name


def check_password(password: str, *, email: str, name: str = "", min_length: int = 10) -> None:
    """Raise Invalid(field="password", code=weak_password) saying what is wrong with a password."""

    def weak(message: str) -> Invalid:
        return Invalid(message, field="password", code=AccountError.WEAK_PASSWORD)

    if "\x00" in password:
        raise weak("must not contain NUL characters")
    if len(password) < min_length:
        raise weak(f"must be at least {min_length} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise weak(f"must be at most {MAX_PASSWORD_LENGTH} characters long")
    folded = password.casefold()
    if folded in COMMON_PASSWORDS:
        raise weak("is one of the most common passwords; choose another")
    if len(set(folded)) < 4:
        raise weak("must use at least 4 different characters")
    local = email.split("@", 1)[0].casefold()
    if len(local) >= 4 and local in folded:
        raise weak("must not contain your e-mail address")
    for part in name.casefold().split():
        if len(part) >= 4 and part in folded and len(folded) - len(part) < 6:
            raise weak("must not be mostly your name")


# --- personal access tokens, as Laravel Sanctum makes them: "<id>|<secret>" ---

def hash_token_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(raw: str) -> tuple[int, str]:
    """Split a bearer token into its id and secret; raise Invalid when it is malformed."""
    token_id, sep, secret = raw.partition("|")
    if not sep or not token_id.isascii() or not token_id.isdigit() or len(token_id) > 18:
        raise Invalid("malformed token", code=AccountError.TOKEN_INVALID)
    if not (20 <= len(secret) <= 128) or not secret.isascii():
        raise Invalid("malformed token", code=AccountError.TOKEN_INVALID)
    return int(token_id), secret


def token_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token_secret(secret), stored_hash)


def token_can(abilities: list[str], ability: str) -> bool:
    return "*" in abilities or ability in abilities


def may_link_social_identity(*, provider_email_verified: bool) -> bool:
    """A social identity links to an existing account only through a provider-verified e-mail."""
    return provider_email_verified
