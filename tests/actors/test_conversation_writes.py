"""The conversation shard's record of its batch statements (`_Writes`), which its stats report."""

import time

from actors.conversations import SLOW_WRITE_MS, _Writes


def test_only_statements_over_the_threshold_are_remembered_with_when_they_ended():
    writes = _Writes()
    before = time.time()
    writes.add(SLOW_WRITE_MS / 1000 / 2, 4)
    writes.add(SLOW_WRITE_MS / 1000 * 3, 25)
    assert writes.count == 2
    assert abs(writes.seconds - SLOW_WRITE_MS / 1000 * 3.5) < 1e-9
    [(ended, ms, messages)] = writes.slow
    assert before <= ended <= time.time()
    assert abs(ms - SLOW_WRITE_MS * 3) < 1e-6
    assert messages == 25


def test_the_slow_ones_kept_are_the_latest_and_bounded():
    writes = _Writes()
    for n in range(600):
        writes.add(1.0, n)
    assert len(writes.slow) == 512
    assert writes.slow[0][2] == 88 and writes.slow[-1][2] == 599
