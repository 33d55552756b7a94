import re

from roost.queue.queueid import ALPHABET, ID_LENGTH, QueueIdSource, is_queue_id


def test_ids_have_no_look_alike_characters():
    assert not set("01OILU") & set(ALPHABET)
    ids = [QueueIdSource().next() for _ in range(50)]
    for queue_id in ids:
        assert re.fullmatch(f"[{ALPHABET}]{{{ID_LENGTH}}}", queue_id)
        assert is_queue_id(queue_id)


def test_ids_are_unique_and_increase_within_one_second():
    source = QueueIdSource(clock=lambda: 1_800_000_000.5)
    ids = [source.next() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_ids_are_time_ordered():
    now = [1_800_000_000.0]
    source = QueueIdSource(clock=lambda: now[0])
    first = source.next()
    now[0] += 1
    second = source.next()
    now[0] += 86400 * 365
    third = source.next()
    assert first < second < third


def test_is_queue_id_rejects_paths():
    assert not is_queue_id("../../etc/x")
    assert not is_queue_id("")
    assert not is_queue_id("ABCDEFGHJK.tmp")
