"""A request's journey, top to bottom: route -> cache/typeahead -> coalesce -> schedule + upstream -> answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from agent.errors import ModelNotFound
from agent.journey import coalesce, dispatch, lookup
from agent.journey.answer import failure, serve_flight
from agent.journey.embeddings import EmbeddingService
from agent.journey.forward import forward
from agent.journey.request import InferenceRequest
from agent.journey.route import route_request

if TYPE_CHECKING:
    from agent.runtime import Runtime


class Journey:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.embeddings = EmbeddingService(rt, failure)

    async def run(self, req: InferenceRequest) -> Response:
        rt = self.rt
        await route_request(req, rt)
        if req.embedding:
            return await self.embeddings.handle(req)
        cp = lookup.plan(req, rt)
        if cp is None:
            return await forward(req, rt)
        answer = await lookup.lookup(req, rt, cp)
        if answer is not None:
            return answer
        try:
            flight = coalesce.join(req, rt, cp) or dispatch.depart(req, rt, cp)
        except ModelNotFound as exc:  # no host has the model: Ollama's own 404
            return failure(req.path, exc, req.model, req.profile.name)
        return await serve_flight(req, flight)
