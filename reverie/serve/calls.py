"""How a route calls the deployments behind the ingress: their handles, which the ingress keeps on
the app's state; a reply awaited for the user's error rather than Ray's wrapper; a read sent once
more when the replica that had it died."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.handle import DeploymentHandle

from reverie.config import Settings


class Readiness:
    """Whether every deployment of the app has its replicas up (models loaded), as Serve's controller
    reports it; once it has, the answer stays yes, and /healthz becomes a liveness check."""

    def __init__(self, app_name: str):
        self.app_name = app_name
        self.ready = False

    async def waiting_for(self) -> dict[str, str]:
        """The deployments not yet running, by name, with their state (empty once ready)."""
        if self.ready:
            return {}
        waiting = await asyncio.to_thread(self._waiting)
        self.ready = not waiting
        return waiting

    def _waiting(self) -> dict[str, str]:
        from ray import serve

        app = serve.status().applications.get(self.app_name)
        if app is None:
            return {"application": "not deployed"}
        if str(app.status) in ("RUNNING", "ApplicationStatus.RUNNING"):
            return {}
        return {
            name: str(getattr(d.status, "value", d.status))
            for name, d in app.deployments.items()
            if str(getattr(d.status, "value", d.status)) != "HEALTHY"
        } or {"application": str(getattr(app.status, "value", app.status))}


@dataclass(frozen=True)
class Deployments:
    """The settings the app runs with, handles to the Pipeline, LLM and Fractal deployments, and whether they are up."""

    settings: Settings
    pipeline: DeploymentHandle
    llm: DeploymentHandle
    readiness: Readiness = field(default_factory=lambda: Readiness("reverie"))
    fractal: DeploymentHandle | None = None

    @staticmethod
    def of(request: Request) -> Deployments:
        """The serving app's, which the ingress keeps on its state."""
        return request.app.state.deployments


DeploymentsDep = Annotated[Deployments, Depends(Deployments.of)]  # a route's parameter: the serving app's Deployments


async def result(response):
    """Await a deployment's reply, re-raising the user's error rather than Ray's wrapper."""
    from reverie.pipeline import user_error

    try:
        return await response
    except RayTaskError as exc:
        raise user_error(exc) from None


async def read(method, *args):
    """A read-only call to a deployment (a question, a view, stats, embeddings), sent once more if
    the replica that had it died: Serve routes the second try to a live or new replica. Writes
    (ingest, feedback) are never sent twice."""
    try:
        return await result(method.remote(*args))
    except RayActorError:  # the replica died or is unreachable; the request itself did nothing wrong
        return await result(method.remote(*args))
