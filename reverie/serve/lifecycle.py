"""`reverie serve` in operation: it starts, says when each deployment is ready, notes itself in the
home for the CLI, and stops cleanly on SIGTERM (systemd, Docker, Kubernetes) or Ctrl-C.

Stopping, at any moment: refuse new requests (503), let those in flight finish within
`shutdown_grace_s`, take the app down, close the store (its index lock and owner note), stop the
Ray that `reverie serve` started, print one line, exit 0. A signal that comes while Ray itself is
starting waits for `ray.init` to return, since leaving it halfway would orphan Ray's processes.
Ray's native failure handler (which prints a stack dump on SIGTERM) is turned off for this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator

from ray import serve

from reverie.client import ServerNote, forget_server
from reverie.config import Settings

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stop(BaseException):
    """A stop signal, raised in the main thread (a BaseException, as KeyboardInterrupt is, so no
    `except Exception` on the way swallows it)."""


class Signals:
    """SIGTERM and SIGINT as Stop. The first one counts; later ones are ignored while stopping."""

    def __init__(self):
        self.received: str | None = None
        self._deferring = False

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            return
        self.received = signal.Signals(signum).name
        if not self._deferring:
            raise Stop(self.received)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A signal during the block is acted on when the block ends."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
            self.install()  # ray.init sets a SIGTERM handler of its own in the driver
        if self.received is not None:
            raise Stop(self.received)


def say(text: str) -> None:
    print(text, flush=True)


def serve_until_stopped(settings: Settings, insecure: bool = False) -> str:
    """`reverie serve`: serve until a stop signal; returns the URL it served on. A host other
    machines can reach needs an API key, or `insecure` (a ReverieError before anything starts).
    Errors while starting (a home another process holds) stop what was started, then reach the CLI."""
    from reverie.actors import init_ray, ray_summary
    from reverie.serve.app import start
    from reverie.serve.guard import exposure

    reach = exposure(settings.host, settings.api_key, insecure)

    os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] = "1"  # read when Ray's core worker starts
    signals = Signals()
    signals.install()
    url, began = "", time.monotonic()
    try:
        with signals.deferred():
            init_ray(settings)
        say(ray_summary(settings))
        say("Starting Reverie's deployments (the LLM and the encoders load now, so the first question is not slower):")
        url = start(settings, say=say)
        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # its routers' INFO lines are not the user's
        ServerNote(
            url, os.getpid(), socket.gethostname(), settings.api_key, settings.max_body_bytes, time.time()
        ).write(settings.paths.server)
        say(
            f"Reverie is serving on {url} (web page: {url}/ui/, OpenAPI page: {url}/docs); {reach}; "
            f"ready in {time.monotonic() - began:.1f} s; Ctrl-C stops it"
        )
        while True:
            time.sleep(3600)
    except BaseException:
        # A Stop raised while Ray's C code waits (ray.get while starting) reaches here wrapped, as
        # a SystemError; the signal that came is what counts.
        if signals.received is None:
            with contextlib.suppress(BaseException):
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                shut_down(settings, serving=False, grace_s=0)
            raise
        finished, left = shut_down(settings, serving=bool(url), grace_s=settings.shutdown_grace_s)
        in_flight = f"{finished} request{'s' * (finished != 1)} in flight finished"
        if left:
            in_flight += f", {left} cut off after {settings.shutdown_grace_s:g} s"
        say(f"Reverie stopped on {signals.received}: {in_flight}, the store closed, Ray stopped")
    return url


def shut_down(settings: Settings, serving: bool, grace_s: float) -> tuple[int, int]:
    """Drain, take the app down, close the store, stop Ray: (requests finished, requests cut off)."""
    import ray

    from reverie.serve.app import APP_NAME

    finished = left = 0
    if serving:
        with contextlib.suppress(Exception):
            ingress = serve.get_app_handle(APP_NAME)
            finished = left = ingress.drain.remote().result(timeout_s=10)
            deadline = time.monotonic() + grace_s
            while left and time.monotonic() < deadline:
                time.sleep(0.1)
                left = ingress.in_flight.remote().result(timeout_s=10)
            finished -= left
    if ray.is_initialized():
        with contextlib.suppress(Exception):
            _close_store(settings)
        if settings.address:  # a cluster this server joined keeps running, without the app
            with contextlib.suppress(Exception):
                serve.shutdown()
        # On the local Ray it started, ray.shutdown ends Serve's processes with the rest; Serve's
        # own shutdown would only add its controller's retry warnings to the one line printed.
    forget_server(settings.paths.server, os.getpid())
    with contextlib.suppress(Exception):
        ray.shutdown()
    return finished, left


def _close_store(settings: Settings) -> None:
    """Close the home's store if this server made it (releasing the index's lock and owner note)."""
    import ray

    from reverie.actors import NAMESPACE, home_tag

    try:
        store = ray.get_actor(f"graph-store-{home_tag(settings)}", namespace=NAMESPACE)
    except ValueError:
        return
    ray.get(store.close.remote(), timeout=30)
