"""Settings: TOML file + environment + command line, validated once at start.

Precedence, highest first: command-line flags, POWERGATE_* environment
variables, the TOML file, built-in defaults. Every key is optional; an unknown
key or a bad value raises ConfigError naming the key and the file.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.errors import ConfigError
from agent.platform import paths
from agent.profiles import (
    BUILTIN_PROFILES,
    JOB_TIERS,
    LIGHTRAG_MODES,
    NUM_THREAD_CHOICES,
    PREFETCH_LEVELS,
    PROFILE_FIELDS,
    TIERS,
    Profile,
    merge_profile,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11435
DEFAULT_UPSTREAM = "http://127.0.0.1:11434"
DEFAULT_MAX_BODY_MB = 32
DEFAULT_MAX_QUEUE = 512  # like Ollama's OLLAMA_MAX_QUEUE: its clients do not retry a 503
MAX_QUEUE_LIMIT = 100_000
CHAT_CACHE_MODES = ("always", "deterministic", "never")
UPSTREAM_KINDS = ("auto", "ollama", "llamacpp", "openai")  # openai: LM Studio, vLLM, any OpenAI-compatible server
MIN_INTERVAL_S = 0.1  # seconds; the fastest sampling a script may ask for


@dataclass(frozen=True)
class ServerSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_body_mb: float = DEFAULT_MAX_BODY_MB
    allowed_origins: tuple[str, ...] = ()
    control_token: str = ""

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


@dataclass(frozen=True)
class UpstreamSettings:
    url: str = DEFAULT_UPSTREAM
    max_concurrency: int = 1
    max_queue: int = DEFAULT_MAX_QUEUE  # requests waiting for a slot before new ones get 503
    weight: int = 1
    kind: str = "auto"  # UPSTREAM_KINDS; "auto" probes the server once and remembers
    max_concurrency_set: bool = False  # set in the config: overrides what the server reports (llama.cpp slots)
    local: bool | None = None  # the laptop's own server; None: decided by the URL

    @property
    def is_local(self) -> bool:
        """`local` as configured, else true for a loopback URL (the laptop's own server)."""
        if self.local is not None:
            return self.local
        return is_loopback_host(urlsplit(self.url).hostname or "")


@dataclass(frozen=True)
class CacheSettings:
    memory_mb: float | None = None  # None: the profile decides
    disk_mb: float | None = None
    ttl_s: float | None = None
    redis_url: str = ""
    redis_key: str = ""  # the team key that authenticates every value in the shared Redis
    encrypt: bool = False
    chat: str = "deterministic"


@dataclass(frozen=True)
class PowerSettings:
    source: str = "psutil"
    interval_s: float | None = None


@dataclass(frozen=True)
class ModelSettings:
    small: str = "qwen2.5-coder:1.5b"
    medium: str = "qwen2.5-coder:7b"
    large: str = "qwen2.5-coder:14b"
    embed: str = "nomic-embed-text"

    def for_tier(self, tier_or_model: str) -> str:
        """The model name for a tier; a concrete model name is returned unchanged."""
        if tier_or_model in JOB_TIERS:
            return str(getattr(self, tier_or_model))
        return tier_or_model


@dataclass(frozen=True)
class PostgresSettings:
    dsn: str = ""  # e.g. Supabase local: postgresql://postgres:postgres@127.0.0.1:54322/postgres
    role: str = ""  # the role whose hnsw.ef_search follows the profile (default: the DSN's user)
    lightrag_env: str = ""  # LightRAG's .env, read for its POSTGRES_* settings and TOP_K


@dataclass(frozen=True)
class LightRAGSettings:
    url: str = ""  # a LightRAG API server to front under /lightrag/ (empty: none)
    api_key: str = ""  # sent as X-API-Key when the client sends no credentials of its own

    @property
    def enabled(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class NotifySettings:
    enabled: bool = True


# What a laptop draws on top of idle while a local model generates (CPU or integrated
# GPU under full load: roughly 15-45 W; a discrete GPU draws more: set your own).
DEFAULT_MODEL_WATTS = 30.0  # watts


@dataclass(frozen=True)
class SavingsSettings:
    model_watts: float = DEFAULT_MODEL_WATTS  # for the energy estimate: model time saved x this


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    upstreams: tuple[UpstreamSettings, ...] = (UpstreamSettings(),)
    cache: CacheSettings = field(default_factory=CacheSettings)
    power: PowerSettings = field(default_factory=PowerSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    notifications: NotifySettings = field(default_factory=NotifySettings)
    savings: SavingsSettings = field(default_factory=SavingsSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    lightrag: LightRAGSettings = field(default_factory=LightRAGSettings)
    profiles: dict[str, Profile] = field(default_factory=lambda: dict(BUILTIN_PROFILES))
    config_file: Path | None = None
    config_file_exists: bool = False
    data_dir: Path = field(default_factory=paths.default_data_dir)
    data_dir_given: bool = False  # --data-dir or POWERGATE_DATA_DIR: the same effect
    initial_profile: str = "auto"

    @property
    def log_dir(self) -> Path:
        return paths.log_dir(self.data_dir if self.data_dir_given else None)

    def profile(self, name: str) -> Profile:
        return self.profiles[name]

    def effective_profile(self, name: str) -> Profile:
        """A profile with the [cache] and [power] overrides that apply to every profile."""
        p = self.profiles[name]
        changes: dict[str, Any] = {}
        if self.cache.memory_mb is not None:
            changes["memory_mb"] = self.cache.memory_mb
        if self.cache.disk_mb is not None:
            changes["disk_mb"] = self.cache.disk_mb
        if self.cache.ttl_s is not None:
            changes["ttl_s"] = self.cache.ttl_s
        if self.power.interval_s is not None:
            changes["interval_s"] = self.power.interval_s
        return replace(p, **changes) if changes else p


def is_loopback_host(host: str) -> bool:
    """True only when every address `host` stands for is a loopback address.

    An empty host is not loopback (uvicorn and the OS read it as "every interface"),
    nor are `0.0.0.0` and `::` (unspecified: every interface), nor a name that does not
    resolve, nor a name with any non-loopback address (a LAN name, a rebound localhost)."""
    name = host.strip().strip("[]")
    if not name:
        return False
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    addrs = {str(info[4][0]).split("%", 1)[0] for info in infos}
    try:
        return bool(addrs) and all(ipaddress.ip_address(a).is_loopback for a in addrs)
    except ValueError:
        return False


def _host(v: Any) -> str:
    s = _str(v).strip()
    if not s:
        raise ValueError(
            'empty: an empty host listens on every interface; name one, e.g. "127.0.0.1" (this machine only)'
        )
    if any(c.isspace() or ord(c) < 32 for c in s) or "/" in s:
        raise ValueError(f"not a host name or address: {v!r}")
    return s


# ---------------------------------------------------------------- validators

Validator = Callable[[Any], Any]


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {type(v).__name__}")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _int_range(lo: int, hi: int) -> Validator:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected an integer, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {v}")
        return v

    return check


def _number_min(lo: float, *, exclusive: bool = False) -> Validator:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"expected a number, got {v!r}")
        if v < lo or (exclusive and v == lo):
            raise ValueError(f"must be {'above' if exclusive else 'at least'} {lo}, got {v}")
        return float(v)

    return check


def _choice(options: tuple[str, ...]) -> Validator:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}; got {v!r}")
        return str(v)

    return check


def _http_url(v: Any) -> str:
    s = _str(v).strip().rstrip("/")
    parts = urlsplit(s)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL such as {DEFAULT_UPSTREAM}, got {v!r}")
    return s


def _redis_url(v: Any) -> str:
    s = _str(v).strip()
    if s and urlsplit(s).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"expected a redis:// URL, got {v!r}")
    return s


def _origins(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError("expected a list of strings")
    return tuple(x.rstrip("/") for x in v)


def _postgres_dsn(v: Any) -> str:
    s = _str(v).strip()
    if not s:
        return s
    from agent.errors import DatabaseError
    from agent.services.postgres import describe_target

    try:
        describe_target(s)
    except DatabaseError as exc:
        raise ValueError(str(exc).removeprefix("[postgres] dsn").lstrip(": ")) from None
    return s


def _role(v: Any) -> str:
    return _str(v).strip()


def _ef_search(v: Any) -> int:
    return _int_range(0, 1000)(v)  # pgvector accepts 1..1000; 0 leaves the database alone


def _power_source(v: Any) -> str:
    s = _str(v)
    if s != "psutil" and not (s.startswith("file:") and len(s) > 5):
        raise ValueError(f'must be "psutil" or "file:PATH", got {v!r}')
    return s


def _interval(v: Any) -> float:
    return _number_min(MIN_INTERVAL_S)(v)


def _tier_or_model(v: Any) -> str:
    s = _str(v).strip()
    if not s:
        raise ValueError("must not be empty")
    return s


def _num_thread(v: Any) -> str | int:
    if isinstance(v, str) and v in NUM_THREAD_CHOICES:
        return v
    if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024:
        return v
    raise ValueError(f'must be "auto", "half" or a thread count, got {v!r}')


def _keep_alive(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v}s"
    s = _str(v).strip()
    import re

    if not re.fullmatch(r"-?\d+(\.\d+)?(ms|s|m|h)?", s):
        raise ValueError(f'expected a duration such as "10m", "30s" or "-1", got {v!r}')
    return s


SERVER_KEYS: dict[str, Validator] = {
    "host": _host,
    "port": _int_range(1, 65535),
    "max_body_mb": _number_min(0, exclusive=True),
    "allowed_origins": _origins,
    "control_token": _str,
}
UPSTREAM_KEYS: dict[str, Validator] = {
    "url": _http_url,
    "max_concurrency": _int_range(1, 64),
    "max_queue": _int_range(1, MAX_QUEUE_LIMIT),
    "weight": _int_range(1, 1000),
    "kind": _choice(UPSTREAM_KINDS),
    "local": _bool,
}
CACHE_KEYS: dict[str, Validator] = {
    "memory_mb": _number_min(0),
    "disk_mb": _number_min(0),
    "ttl_s": _number_min(0, exclusive=True),
    "redis_url": _redis_url,
    "redis_key": _str,
    "encrypt": _bool,
    "chat": _choice(CHAT_CACHE_MODES),
}
POWER_KEYS: dict[str, Validator] = {"source": _power_source, "interval_s": _interval}
MODEL_KEYS: dict[str, Validator] = {k: _tier_or_model for k in ("small", "medium", "large", "embed")}
NOTIFY_KEYS: dict[str, Validator] = {"enabled": _bool}
SAVINGS_KEYS: dict[str, Validator] = {"model_watts": _number_min(0.0, exclusive=True)}
POSTGRES_KEYS: dict[str, Validator] = {"dsn": _postgres_dsn, "role": _role, "lightrag_env": _str}


def _optional_url(v: Any) -> str:
    return _http_url(v) if _str(v).strip() else ""


LIGHTRAG_KEYS: dict[str, Validator] = {"url": _optional_url, "api_key": _str}
PROFILE_KEYS: dict[str, Validator] = {
    "memory_mb": _number_min(0),
    "disk_mb": _number_min(0),
    "ttl_s": _number_min(0, exclusive=True),
    "prefetch": _choice(PREFETCH_LEVELS),
    "autocomplete": _tier_or_model,
    "chat": _tier_or_model,
    "embed": _tier_or_model,
    "cap": _choice(TIERS),
    "enforce_cap": _bool,
    "keep_alive": _keep_alive,
    "num_ctx": _int_range(256, 1_048_576),
    "num_ctx_max": _int_range(0, 1_048_576),
    "num_thread": _num_thread,
    "interval_s": _interval,
    "ef_search": _ef_search,
    "preempt": _bool,
    "lightrag_mode": _choice(LIGHTRAG_MODES),
}
assert set(PROFILE_KEYS) == set(PROFILE_FIELDS), "every profile field needs a validator"

SECTIONS = ("server", "upstream", "cache", "power", "models", "notifications", "savings", "lightrag", "postgres", "profiles")


def _validate_table(table: Any, keys: dict[str, Validator], prefix: str, source: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError("expected a table", key=prefix, source=source)
    out: dict[str, Any] = {}
    for k, v in table.items():
        name = f"{prefix}.{k}"
        if k not in keys:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(keys))})", key=name, source=source)
        try:
            out[k] = keys[k](v)
        except ValueError as exc:
            raise ConfigError(str(exc), key=name, source=source) from None
    return out


def parse_config(data: dict[str, Any], source: str = "") -> dict[str, Any]:
    """Validate a TOML document; return the checked values per section."""
    for section in data:
        if section not in SECTIONS:
            raise ConfigError(f"unknown section (known: {', '.join(SECTIONS)})", key=section, source=source)
    out: dict[str, Any] = {}
    if "server" in data:
        out["server"] = _validate_table(data["server"], SERVER_KEYS, "server", source)
    if "upstream" in data:
        ups = data["upstream"]
        if not isinstance(ups, list) or not ups:
            raise ConfigError("use [[upstream]] tables, at least one", key="upstream", source=source)
        out["upstream"] = [_validate_table(u, UPSTREAM_KEYS, f"upstream[{i}]", source) for i, u in enumerate(ups)]
        for i, u in enumerate(out["upstream"]):
            if "url" not in u:
                raise ConfigError("missing", key=f"upstream[{i}].url", source=source)
    for section, keys in (
        ("cache", CACHE_KEYS),
        ("power", POWER_KEYS),
        ("models", MODEL_KEYS),
        ("notifications", NOTIFY_KEYS),
        ("savings", SAVINGS_KEYS),
        ("postgres", POSTGRES_KEYS),
        ("lightrag", LIGHTRAG_KEYS),
    ):
        if section in data:
            out[section] = _validate_table(data[section], keys, section, source)
    if "profiles" in data:
        profs = data["profiles"]
        if not isinstance(profs, dict):
            raise ConfigError("expected [profiles.<name>] tables", key="profiles", source=source)
        out["profiles"] = {}
        for name, table in profs.items():
            if name == "auto":
                raise ConfigError('"auto" is a mode, not a profile name', key="profiles.auto", source=source)
            out["profiles"][name] = _validate_table(table, PROFILE_KEYS, f"profiles.{name}", source)
    return out


def load_settings(
    *,
    config_file: str | Path | None = None,
    data_dir: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    upstreams: list[str] | None = None,
    profile: str | None = None,
) -> Settings:
    """Build the one Settings object from file, environment and arguments."""
    path = Path(config_file) if config_file else paths.default_config_file()
    source = str(path)
    raw: dict[str, Any] = {}
    exists = path.is_file()
    if config_file and not exists:
        raise ConfigError("file not found", source=source)
    if exists:
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", source=source) from None
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc}", source=source) from None
    checked = parse_config(raw, source)

    server = ServerSettings(**checked.get("server", {}))
    env_host = os.environ.get("POWERGATE_HOST")
    env_port = os.environ.get("POWERGATE_PORT")
    if env_host is not None:
        try:
            server = replace(server, host=_host(env_host))
        except ValueError as exc:
            raise ConfigError(str(exc), key="POWERGATE_HOST", source="environment") from None
    if env_port:
        try:
            server = replace(server, port=_int_range(1, 65535)(int(env_port)))
        except ValueError as exc:
            raise ConfigError(str(exc), key="POWERGATE_PORT", source="environment") from None
    if host is not None:
        try:
            server = replace(server, host=_host(host))
        except ValueError as exc:
            raise ConfigError(str(exc), key="--host", source="command line") from None
    if port is not None:
        server = replace(server, port=_int_range(1, 65535)(port))
    if not server.is_loopback and not server.control_token:
        raise ConfigError(
            f"listening on {server.host} (not loopback) requires [server] control_token, "
            "so that nobody else on the network can change the agent",
            key="server.host",
            source=source,
        )

    ups = tuple(
        UpstreamSettings(**u, max_concurrency_set="max_concurrency" in u) for u in checked.get("upstream", [])
    ) or (UpstreamSettings(),)
    env_up = os.environ.get("POWERGATE_UPSTREAM")
    for where, urls in (("POWERGATE_UPSTREAM", env_up.split(",") if env_up else None), ("--upstream", upstreams)):
        if urls:
            try:
                ups = tuple(UpstreamSettings(url=_http_url(u)) for u in urls if u.strip())
            except ValueError as exc:
                raise ConfigError(
                    str(exc), key=where, source="command line" if where.startswith("--") else "environment"
                ) from None

    models = ModelSettings(**checked.get("models", {}))
    profiles = dict(BUILTIN_PROFILES)
    for name, overrides in checked.get("profiles", {}).items():
        profiles[name] = merge_profile(name, overrides)

    given = bool(data_dir) or bool(os.environ.get("POWERGATE_DATA_DIR"))
    ddir = Path(data_dir) if data_dir else paths.default_data_dir()

    initial = profile or "auto"
    if initial != "auto" and initial not in profiles:
        raise ConfigError(f"unknown profile {initial!r} (valid: auto, {', '.join(profiles)})", key="--profile")

    cache = CacheSettings(**checked.get("cache", {}))
    if cache.redis_url and not cache.redis_key:
        raise ConfigError(
            "required with redis_url: a shared Redis is trusted only with a team key (the same random "
            'string on every machine, e.g. from `python -c "import secrets; print(secrets.token_urlsafe(32))"`); '
            "values that fail its HMAC are ignored",
            key="cache.redis_key",
            source=source,
        )

    return Settings(
        server=server,
        upstreams=ups,
        cache=cache,
        power=PowerSettings(**checked.get("power", {})),
        models=models,
        notifications=NotifySettings(**checked.get("notifications", {})),
        savings=SavingsSettings(**checked.get("savings", {})),
        postgres=PostgresSettings(**checked.get("postgres", {})),
        lightrag=LightRAGSettings(**checked.get("lightrag", {})),
        profiles=profiles,
        config_file=path,
        config_file_exists=exists,
        data_dir=ddir,
        data_dir_given=given,
        initial_profile=initial,
    )


def settings_as_dict(s: Settings) -> dict[str, Any]:
    """The effective config, as `powergate config show` prints it (TOML-shaped)."""
    return {
        "server": {
            "host": s.server.host,
            "port": s.server.port,
            "max_body_mb": s.server.max_body_mb,
            "allowed_origins": list(s.server.allowed_origins),
            "control_token": "***" if s.server.control_token else "",  # settings_as_toml leaves it out
        },
        "upstream": [
            {
                "url": u.url,
                "kind": u.kind,
                "max_concurrency": u.max_concurrency,
                "max_queue": u.max_queue,
                "weight": u.weight,
                "local": u.is_local,
            }
            for u in s.upstreams
        ],
        "cache": {
            k: v
            for k, v in {
                "memory_mb": s.cache.memory_mb,
                "disk_mb": s.cache.disk_mb,
                "ttl_s": s.cache.ttl_s,
                "redis_url": s.cache.redis_url,
                "redis_key": "***" if s.cache.redis_key else "",
                "encrypt": s.cache.encrypt,
                "chat": s.cache.chat,
            }.items()
            if v is not None
        },
        "power": {
            k: v for k, v in {"source": s.power.source, "interval_s": s.power.interval_s}.items() if v is not None
        },
        "models": {
            "small": s.models.small,
            "medium": s.models.medium,
            "large": s.models.large,
            "embed": s.models.embed,
        },
        "notifications": {"enabled": s.notifications.enabled},
        "postgres": {
            "dsn": _mask_password(s.postgres.dsn),
            "role": s.postgres.role,
            "lightrag_env": s.postgres.lightrag_env,
        },


        "savings": {"model_watts": s.savings.model_watts},
        "lightrag": {"url": s.lightrag.url, "api_key": "***" if s.lightrag.api_key else ""},
        "profiles": {name: {k: v for k, v in p.as_dict().items() if k != "name"} for name, p in s.profiles.items()},
    }


def _mask_password(dsn: str) -> str:
    """A DSN as `config show` prints it: the password replaced by ***."""
    import re

    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", dsn)


SECRET_SHOWN = "***"  # how settings_as_dict shows a secret that is set


def _toml_numbers(value: Any) -> Any:
    # Size and time fields are validated into floats; a whole number is written back as
    # the integer the user wrote (32, not 32.0), and reads back to the same setting.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _toml_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_toml_numbers(v) for v in value]
    return value


def settings_as_toml(s: Settings) -> str:
    """The effective config as TOML that `--config` reads back to the same settings
    (`powergate config show`). Secrets (shown as "***" by settings_as_dict: the control
    token, API keys) are left out, with a comment saying they are set."""
    import tomli_w

    data = _toml_numbers(settings_as_dict(s))

    def table(name: str, values: dict[str, Any]) -> str:
        secret = [k for k, v in values.items() if v == SECRET_SHOWN]
        kept = {k: v for k, v in values.items() if k not in secret}
        notes = "".join(f"# {k} is set (not shown: it is a secret; see the config file)\n" for k in secret)
        return tomli_w.dumps(kept) + notes

    server = data.pop("server", {})
    upstreams = data.pop("upstream", [])
    parts = ["[server]\n" + table("server", server)]
    # tomli_w would inline a short array of tables; the documented form is [[upstream]]
    parts += ["[[upstream]]\n" + tomli_w.dumps(u) for u in upstreams]
    profiles = data.pop("profiles", {})
    for name, values in data.items():
        parts.append(f"[{name}]\n" + table(name, values) if isinstance(values, dict) else tomli_w.dumps({name: values}))
    parts.append(tomli_w.dumps({"profiles": profiles}))
    return "\n".join(parts)
