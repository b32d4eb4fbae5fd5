"""After a completion is served: let the prefetcher guess the next one (FIM requests only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.cache.keys import COMPLETION_APIS
from agent.journey.request import InferenceRequest
from agent.prefetch import is_fim

if TYPE_CHECKING:
    from agent.runtime import Runtime


def guess_next(req: InferenceRequest, rt: Runtime, chunks: list[bytes], model: str) -> None:
    # FIM completions only: that is how editors ask for suggestions; the prefetcher
    # decides by the profile whether to guess at all.
    if req.api in COMPLETION_APIS and is_fim(req.body):
        headers = dict(req.forward, **{"content-type": "application/json"})
        rt.prefetcher.after_completion(chunks, model, req.body, req.api, req.path, headers, req.profile)
