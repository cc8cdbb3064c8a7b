"""Account rules on their own: e-mail normalisation, password strength, token format."""

import pytest

from core.accounts import (
    check_name,
    check_password,
    hash_token_secret,
    normalise_email,
    parse_token,
    token_matches,
)
from core.errors import Invalid


@pytest.mark.parametrize("raw, expected", [
    ("  Alice@Example.COM ", "alice@example.com"),
    ("bob+tag@sub.example.co.uk", "bob+tag@sub.example.co.uk"),
    ("ZOË@example.com", "zoë@example.com"),
])
def test_emails_are_trimmed_and_lower_cased(raw, expected):
    assert normalise_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "no-at-sign", "a@b", "a@-bad-.com", "a b@example.com",
                                 "x" * 65 + "@example.com", "a@" + "b" * 250 + ".com", "nul\x00@example.com",
                                 "' OR 1=1 --@example.com"])
def test_malformed_emails_are_refused_naming_the_field(raw):
    with pytest.raises(Invalid) as caught:
        normalise_email(raw)
    assert caught.value.errors[0].field == "email"


@pytest.mark.parametrize("password, reason", [
    ("short1", "at least 10"),
    ("password123", "common"),
    ("aaaaaaaaaaaa", "4 different"),
    ("alice.smith-2024!", "e-mail"),
    ("x" * 300, "at most"),
    ("with\x00nul-character", "NUL"),
])
def test_weak_passwords_are_refused_with_the_reason(password, reason):
    with pytest.raises(Invalid) as caught:
        check_password(password, email="alice.smith@example.com", name="Alice Smith")
    assert caught.value.code == "weak_password"
    assert reason in caught.value.errors[0].message


def test_a_long_passphrase_is_accepted():
    check_password("correct horse battery staple", email="alice@example.com", name="Alice")


def test_names_refuse_control_and_invisible_characters():
    assert check_name("  Zoë O'Brien ") == "Zoë O'Brien"
    for bad in ["", "   ", "evil\u202eeman", "bell\x07", "x" * 121]:
        with pytest.raises(Invalid):
            check_name(bad)


def test_tokens_parse_as_sanctum_does_and_compare_by_hash():
    token_id, secret = parse_token("42|" + "s" * 40)
    assert token_id == 42 and secret == "s" * 40
    assert token_matches(secret, hash_token_secret(secret))
    assert not token_matches(secret + "x", hash_token_secret(secret))
    for bad in ["42", "|" + "s" * 40, "abc|" + "s" * 40, "42|short", "-1|" + "s" * 40, "٤٢|" + "s" * 40]:
        with pytest.raises(Invalid):
            parse_token(bad)


@pytest.mark.parametrize("raw", ["\u202e@example.com", "a\u200b@example.com", "a\u00a0b@example.com"])
def test_invisible_and_format_characters_make_an_email_invalid(raw):
    with pytest.raises(Invalid):
        normalise_email(raw)
