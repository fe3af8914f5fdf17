"""Concurrent calls joined into one: questions answered at the same time share one encoder pass
and one LLM batch. No Ray, no added wait: while one batch is in flight the next one gathers.

A thread that finds no batch in flight becomes the leader: it takes every waiting request, makes
one call with all their items, hands each caller its share, and leads again if more arrived
meanwhile. A lone question therefore pays nothing, and sixteen concurrent questions make a
handful of calls instead of sixteen (one handle call costs milliseconds of CPU on each side, and
a forward pass over 16 short texts costs about four times one text's).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Out = TypeVar("Out")


class JoinedCalls(Generic[Item, Out]):
    """`calls(items)` returns `fn(items)`, made as one `fn` call with the items of concurrent callers.

    `fn` takes a list of items and returns one output per item, in order (a list or an array).
    A caller with more than `max_items` items calls `fn` alone.
    """

    def __init__(self, fn: Callable[[list[Item]], Sequence[Out]], max_items: int = 64):
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.fn = fn
        self.max_items = max_items
        self._lock = threading.Lock()
        self._waiting: list[tuple[list[Item], Future]] = []
        self._leading = False
        self.calls = 0
        """How many times `fn` ran (a test and a benchmark read it)."""

    def __call__(self, items: list[Item]) -> list[Out]:
        items = list(items)
        if len(items) > self.max_items:
            self.calls += 1
            return list(self.fn(items))
        mine: Future = Future()
        with self._lock:
            self._waiting.append((items, mine))
            lead = not self._leading
            self._leading = self._leading or lead
        if lead:
            self._lead()
        return mine.result()

    def _lead(self) -> None:
        while True:
            with self._lock:
                batch = self._take()
                if not batch:
                    self._leading = False
                    return
            joined = [item for items, _ in batch for item in items]
            try:
                self.calls += 1
                outs = list(self.fn(joined))
                if len(outs) != len(joined):
                    raise RuntimeError(f"a joined call returned {len(outs)} outputs for {len(joined)} items")
            except BaseException as exc:  # every caller of the batch gets the error
                for _, future in batch:
                    future.set_exception(exc)
                continue
            start = 0
            for items, future in batch:
                future.set_result(outs[start : start + len(items)])
                start += len(items)

    def _take(self) -> list[tuple[list[Item], Future]]:
        """Waiting requests, oldest first, up to max_items in all (always at least one)."""
        batch, count = [], 0
        while self._waiting and (not batch or count + len(self._waiting[0][0]) <= self.max_items):
            request = self._waiting.pop(0)
            batch.append(request)
            count += len(request[0])
        return batch
