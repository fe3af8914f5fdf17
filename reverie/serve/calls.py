"""How a route calls the deployments behind the ingress: their handles, which the ingress keeps on
the app's state; a reply awaited for the user's error rather than Ray's wrapper; a read sent once
more when the replica that had it died."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.handle import DeploymentHandle

from reverie.config import Settings


@dataclass(frozen=True)
class Deployments:
    """The settings the app runs with, and handles to the Pipeline and LLM deployments."""

    settings: Settings
    pipeline: DeploymentHandle
    llm: DeploymentHandle

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
