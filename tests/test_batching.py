"""Concurrent calls joined into one (reverie/batching.py), without Ray."""

import threading
import time

import pytest

from reverie.batching import JoinedCalls


def test_a_lone_call_is_made_at_once_and_returns_its_own_outputs():
    joined = JoinedCalls(lambda items: [x * 10 for x in items])
    assert joined([1, 2, 3]) == [10, 20, 30]
    assert joined.calls == 1


def test_concurrent_callers_share_calls_and_each_gets_its_share():
    batches = []

    def slow(items):
        batches.append(list(items))
        time.sleep(0.05)  # one call in flight while the others arrive
        return [f"{x}!" for x in items]

    joined = JoinedCalls(slow, max_items=64)
    results = {}
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, joined([k, k + 100]))) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: [f"{k}!", f"{k + 100}!"] for k in range(16)}
    assert joined.calls == len(batches) < 16  # joined: fewer calls than callers
    assert sorted(x for b in batches for x in b) == sorted(x for k in range(16) for x in (k, k + 100))


def test_a_batch_never_exceeds_max_items_and_a_large_request_goes_alone():
    sizes = []

    def record(items):
        sizes.append(len(items))
        time.sleep(0.02)
        return list(items)

    joined = JoinedCalls(record, max_items=5)
    threads = [threading.Thread(target=joined, args=([k, k],)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(sizes) <= 5 and sum(sizes) == 24
    assert joined(list(range(9))) == list(range(9)) and sizes[-1] == 9


def test_an_error_reaches_every_caller_of_its_batch_and_the_next_batch_still_runs():
    def fail_on_minus(items):
        time.sleep(0.02)
        if -1 in items:
            raise ValueError("bad item")
        return list(items)

    joined = JoinedCalls(fail_on_minus)
    with pytest.raises(ValueError, match="bad item"):
        joined([-1])
    assert joined([4]) == [4]


def test_a_wrong_number_of_outputs_is_an_error_not_a_misaligned_reply():
    joined = JoinedCalls(lambda items: items[:-1])
    with pytest.raises(RuntimeError, match="returned 1 outputs for 2 items"):
        joined([1, 2])
    with pytest.raises(ValueError):
        JoinedCalls(list, max_items=0)


def test_a_caller_leads_at_most_one_batch_and_then_returns():
    leaders = []

    def slow(items):
        leaders.append(threading.get_ident())
        time.sleep(0.01)
        return list(items)

    joined = JoinedCalls(slow, max_items=2)  # small batches: the queue outlasts any one batch
    threads = [threading.Thread(target=joined, args=([k],)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(leaders) >= 10 and len(set(leaders)) == len(leaders)
