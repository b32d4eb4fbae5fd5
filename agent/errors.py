"""The one exception hierarchy of powergate.

PowergateError
 +-- ConfigError            bad config file, key or value (exit code 2 at start)
 +-- UpstreamError          anything that went wrong talking to Ollama
 |    +-- UpstreamUnavailable   connection closed or reset before the answer
 |    |    +-- UpstreamRefused     connection refused / DNS / connect timeout: nothing listens
 |    +-- UpstreamTimeout       connected, but no answer in time
 |    +-- UpstreamBusy          every slot taken and the queue is full
 |    +-- StreamBroken          the upstream stopped in the middle of a streamed answer
 |    +-- ModelNotFound         no configured host has the model (Ollama's 404)
 |    +-- LightRAGUnavailable   the configured LightRAG server cannot be reached
 +-- CacheError             a cache tier failed (never fails a request)
 +-- DatabaseError          the advised Postgres refused or failed a query (powergate db ...)
 |    +-- DatabaseUnavailable   cannot connect (refused, timeout, authentication)
 +-- BadRequest             the client's request is malformed (HTTP 400)

Third-party errors (httpx, redis, diskcache, psycopg) are translated into these at the
module that talks to the library, with ``raise ... from exc``.
"""

from __future__ import annotations


class PowergateError(Exception):
    """Base of every error powergate raises on purpose."""


class ConfigError(PowergateError):
    def __init__(self, message: str, *, key: str = "", source: str = "") -> None:
        self.key = key
        self.source = source
        where = f" in {source}" if source else ""
        named = f"{key}: " if key else ""
        super().__init__(f"{named}{message}{where}")


class UpstreamError(PowergateError):
    status_code = 502

    def __init__(self, message: str, *, url: str = "") -> None:
        self.url = url
        super().__init__(message)


class UpstreamUnavailable(UpstreamError):
    status_code = 502


class UpstreamRefused(UpstreamUnavailable):
    """Nothing answered the connect: the host is down (its circuit breaker rests it at once)."""


class LightRAGUnavailable(UpstreamError):
    status_code = 502


class StreamBroken(UpstreamError):
    """An answer stream was cut before its end: the client must see it broken (an error
    line in its dialect, then an aborted connection), never a clean but short answer."""


class UpstreamTimeout(UpstreamError):
    status_code = 504


class UpstreamBusy(UpstreamError):
    status_code = 503

    def __init__(self, message: str, *, url: str = "", retry_after: float = 1.0) -> None:
        super().__init__(message, url=url)
        self.retry_after = retry_after


class ModelNotFound(UpstreamError):
    status_code = 404

    def __init__(self, model: str) -> None:
        self.model = model
        # Ollama's own words, so clients that parse them (pull prompts) keep working
        super().__init__(f'model "{model}" not found, try pulling it first')


class CacheError(PowergateError):
    pass


class DatabaseError(PowergateError):
    pass


class DatabaseUnavailable(DatabaseError):
    pass


class BadRequest(PowergateError):
    status_code = 400

    def __init__(self, message: str, *, param: str | None = None, status_code: int = 400) -> None:
        self.param = param
        self.status_code = status_code
        super().__init__(message)
