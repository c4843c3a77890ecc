"""What a server process is given to serve, worked out once from the configuration:
plain data (JSON), so that the process supervising the workers and the workers it starts
receive it without loading the configuration model (registry/cli.py, supervisor.py)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.config import Config


@dataclass(frozen=True)
class HttpLimits:
    max_request_line: int  # bytes of the request target (414 above)
    max_header_size: int  # bytes of all header fields of a request (431 above)
    header_timeout: float  # seconds for a request's head to arrive, from its first byte
    body_timeout: float  # longest silence while a request body is read

    @classmethod
    def of(cls, config: Config) -> HttpLimits:
        http = config.http
        return cls(
            http.max_request_line, http.max_header_size, http.header_timeout, http.body_timeout
        )


@dataclass(frozen=True)
class ServePlan:
    """``options``: uvicorn's keyword arguments; ``env``: variables every worker must
    see; ``metrics_env``: the variable to point at a fresh folder for multiprocess
    metrics, if any; ``log_format``: the registry's log format (text or json);
    ``worker_timeout``: how long a worker may be silent before the supervisor kills it."""

    limits: HttpLimits
    options: dict[str, Any]
    env: dict[str, str]
    metrics_env: str | None
    log_format: str = "text"
    worker_timeout: float = 60.0  # with workers: one silent this long is killed

    @property
    def workers(self) -> int:
        return int(self.options["workers"])

    @classmethod
    def of(
        cls, config: Config, env: dict[str, str] | None = None, metrics_env: str | None = None
    ) -> ServePlan:
        from registry.request_log import uvicorn_log_config

        http = config.http
        options = {
            "host": http.host,
            "port": http.port,
            "workers": http.workers,
            "ssl_certfile": http.tls_cert,
            "ssl_keyfile": http.tls_key,
            "forwarded_allow_ips": http.forwarded_allow_ips,
            "timeout_graceful_shutdown": math.ceil(http.graceful_timeout),
            "timeout_keep_alive": http.idle_timeout,
            # uvicorn counts the connection asking too: one more, so that max_connections
            # connections are served and the next one's requests get 503.
            "limit_concurrency": http.max_connections + 1,
            "log_level": config.log.level,
            "log_config": uvicorn_log_config(config.log.level, config.log.format),
        }
        return cls(
            HttpLimits.of(config),
            options,
            dict(env or {}),
            metrics_env,
            config.log.format,
            http.worker_timeout,
        )

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: str) -> ServePlan:
        d = json.loads(raw)
        return cls(**{**d, "limits": HttpLimits(**d["limits"])})
