"""Concurrent calls joined into one: questions answered at the same time share one encoder pass
and one LLM batch. No Ray, no added wait: while one batch is in flight the next one gathers.

The oldest waiting caller leads: it takes every waiting request (up to a size), makes one call
with all their items, hands each caller its share, and passes the lead to the oldest caller still
waiting. A lone question therefore pays nothing, sixteen concurrent questions make a handful of
calls instead of sixteen (one handle call costs milliseconds of CPU on each side, and a forward
pass over 16 short texts costs about four times one text's), and no caller leads more than one
batch, so none waits behind a queue that keeps refilling.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Out = TypeVar("Out")


class _Request:
    __slots__ = ("items", "outs", "error", "finished", "lead", "wake")

    def __init__(self, items: list):
        self.items = items
        self.outs: list = []
        self.error: BaseException | None = None
        self.finished = False
        self.lead = False
        self.wake = threading.Event()  # set when finished, or when handed the lead


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
        self._waiting: list[_Request] = []
        self._leading = False
        self.calls = 0
        """How many times `fn` ran (a test and a benchmark read it)."""

    def __call__(self, items: list[Item]) -> list[Out]:
        items = list(items)
        if len(items) > self.max_items:
            self.calls += 1
            return list(self.fn(items))
        request = _Request(items)
        with self._lock:
            self._waiting.append(request)
            if not self._leading:
                self._leading = request.lead = True
        while True:
            if request.lead and not request.finished:
                request.lead = False
                self._lead_one_batch()
            if request.finished:
                break
            request.wake.wait()
            request.wake.clear()
        if request.error is not None:
            raise request.error
        return request.outs

    def _lead_one_batch(self) -> None:
        with self._lock:
            batch = self._take()
        joined = [item for request in batch for item in request.items]
        try:
            self.calls += 1
            outs = list(self.fn(joined))
            if len(outs) != len(joined):
                raise RuntimeError(f"a joined call returned {len(outs)} outputs for {len(joined)} items")
        except BaseException as exc:  # every caller of the batch gets the error
            for request in batch:
                request.error = exc
        else:
            start = 0
            for request in batch:
                request.outs = outs[start : start + len(request.items)]
                start += len(request.items)
        with self._lock:
            for request in batch:
                request.finished = True
                request.wake.set()
            if self._waiting:  # the oldest caller still waiting leads the next batch
                self._waiting[0].lead = True
                self._waiting[0].wake.set()
            else:
                self._leading = False

    def _take(self) -> list[_Request]:
        """Waiting requests, oldest first, up to max_items in all (always at least one)."""
        batch, count = [], 0
        while self._waiting and (not batch or count + len(self._waiting[0].items) <= self.max_items):
            request = self._waiting.pop(0)
            batch.append(request)
            count += len(request.items)
        return batch
