from core.ids import new_id, new_secret


def test_ids_are_uuid7_and_sort_by_creation():
    ids = [new_id() for _ in range(200)]
    assert all(i.version == 7 for i in ids)
    assert len(set(ids)) == 200
    assert [i.int >> 80 for i in ids] == sorted(i.int >> 80 for i in ids)


def test_secrets_are_long_and_distinct():
    assert len(new_secret()) == 40
    assert new_secret() != new_secret()
