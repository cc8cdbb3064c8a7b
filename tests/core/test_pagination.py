import pytest

from core.errors import Invalid
from core.pagination import MAX_LIMIT, decode_cursor, encode_cursor, parse_limit


def test_cursors_round_trip():
    assert decode_cursor(encode_cursor([3, "2026-01-01"])) == [3, "2026-01-01"]
    assert decode_cursor(None) is None


@pytest.mark.parametrize("bad", ["!!!", "x" * 600, "bm90IGpzb24"])
def test_foreign_cursors_are_refused(bad):
    with pytest.raises(Invalid) as caught:
        decode_cursor(bad)
    assert caught.value.errors[0].field == "cursor"


def test_limits_are_bounded():
    assert parse_limit(None) == 20
    assert parse_limit("5") == 5
    for bad in ["0", str(MAX_LIMIT + 1), "-1", "1e3", "abc", "١٢"]:
        with pytest.raises(Invalid):
            parse_limit(bad)
