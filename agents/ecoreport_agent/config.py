"""Settings: command-line flag > environment variable > config file > default.

The config file is INI with an ``[agent]`` section, ``/etc/ecoreport/agent.conf`` unless
``--config``/``ECOREPORT_CONFIG`` names another; keys are the flag names with underscores::

    [agent]
    server = https://ecoreport.example.com
    token_file = /etc/ecoreport/token
    interval = 10
"""

from __future__ import annotations

import configparser
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

DEFAULT_CONFIG = "/etc/ecoreport/agent.conf"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(Exception):
    """A setting is missing or invalid; ``str()`` is the sentence shown to the operator."""


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be > 0")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be >= 1")
    return number


def _bool(value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _source(value: str) -> str:
    text = value.strip().lower()
    if text not in ("nvml", "dcgm"):
        raise ValueError("must be nvml or dcgm")
    return text


def _level(value: str) -> str:
    level = value.strip().upper()
    if level not in LEVELS:
        raise ValueError(f"must be one of {', '.join(LEVELS)}")
    return level


# name -> (parser, default). Every name is also ECOREPORT_<NAME> and a key in the file.
FIELDS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "server": (str, None),
    "token": (str, None),
    "token_file": (str, None),
    "interval": (_positive_float, 10.0),
    "poll": (_positive_float, 1.0),
    "spool": (str, None),
    "simulate": (_non_negative_int, 0),
    "seed": (int, 0),
    "log_level": (_level, "INFO"),
    "batch_size": (_positive_int, 1000),
    "max_batch_tries": (_positive_int, 5),
    "spool_max_mb": (_positive_float, 256.0),
    "max_cycles": (_positive_int, None),
    "duration": (_positive_float, None),
    "hostname": (str, None),
    # Kubernetes (docs/kubernetes.md): pod attribution through the kubelet, dcgm-exporter source.
    "kubernetes": (_bool, False),
    "kubelet_url": (str, "https://127.0.0.1:10250"),
    "kubelet_token_file": (str, "/var/run/secrets/kubernetes.io/serviceaccount/token"),
    "kubelet_ca_file": (str, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"),
    "kubelet_insecure": (_bool, False),
    "team_label": (str, "ecoreport.io/team"),
    "project_label": (str, "ecoreport.io/project"),
    "source": (_source, "nvml"),
    "dcgm_url": (str, None),
}
SOURCE_RANK = {"flag": 3, "env": 2, "file": 1, "default": 0}


@dataclass
class Settings:
    server: str | None = None
    token: str | None = None
    token_file: str | None = None
    interval: float = 10.0
    poll: float = 1.0
    spool: str | None = None
    simulate: int = 0
    seed: int = 0
    log_level: str = "INFO"
    batch_size: int = 1000
    max_batch_tries: int = 5
    spool_max_mb: float = 256.0
    max_cycles: int | None = None
    duration: float | None = None
    hostname: str | None = None
    kubernetes: bool = False
    kubelet_url: str = "https://127.0.0.1:10250"
    kubelet_token_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    kubelet_ca_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    kubelet_insecure: bool = False
    team_label: str = "ecoreport.io/team"
    project_label: str = "ecoreport.io/project"
    source: str = "nvml"
    dcgm_url: str | None = None
    config_path: str | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def resolved_token(self) -> str | None:
        """The token, from whichever of token / token_file was given with higher precedence."""
        token_rank = SOURCE_RANK[self.sources.get("token", "default")]
        file_rank = SOURCE_RANK[self.sources.get("token_file", "default")]
        if self.token and token_rank >= file_rank:
            return self.token.strip()
        if self.token_file:
            try:
                with open(self.token_file) as fh:
                    token = fh.read().strip()
            except OSError as exc:
                raise ConfigError(f"Cannot read the token file {self.token_file}: {exc}.") from exc
            if not token:
                raise ConfigError(f"The token file {self.token_file} is empty.")
            return token
        return self.token.strip() if self.token else None

    def resolved_hostname(self) -> str:
        return self.hostname or socket.gethostname()


def read_config_file(path: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path) as fh:
            parser.read_file(fh)
    except OSError as exc:
        raise ConfigError(f"Cannot read the config file {path}: {exc}.") from exc
    except configparser.Error as exc:
        raise ConfigError(f"The config file {path} is not valid INI: {exc}.") from exc
    if not parser.has_section("agent"):
        return {}
    values = {}
    for key, value in parser.items("agent"):
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise ConfigError(f"Unknown setting {key!r} in {path} (known: {', '.join(FIELDS)}).")
        values[name] = value
    return values


def resolve(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    config_path: str | None = None,
) -> Settings:
    """Build settings. ``flags`` holds parsed command-line values, ``None`` when not given."""
    environ = os.environ if environ is None else environ
    explicit = config_path or flags.get("config") or environ.get("ECOREPORT_CONFIG")
    path = explicit or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
    file_values = read_config_file(path) if path else {}
    settings = Settings(config_path=path)
    for name, (parse, default) in FIELDS.items():
        candidates = [
            ("flag", flags.get(name)),
            ("env", environ.get("ECOREPORT_" + name.upper())),
            ("file", file_values.get(name)),
        ]
        value, source = default, "default"
        for origin, raw in candidates:
            if raw is None or raw == "":
                continue
            try:
                value = raw if not isinstance(raw, str) else parse(raw)
            except ValueError as exc:
                where = {
                    "flag": f"--{name.replace('_', '-')}",
                    "env": f"ECOREPORT_{name.upper()}",
                    "file": f"{name} in {path}",
                }[origin]
                raise ConfigError(f"Invalid value {raw!r} for {where}: {exc}.") from exc
            source = origin
            break
        setattr(settings, name, value)
        settings.sources[name] = source
    if settings.interval > 3600:
        raise ConfigError("The interval must be at most 3600 s (the backend's longest sample).")
    if settings.interval < 1:
        raise ConfigError("The interval must be at least 1 s.")
    settings.poll = min(settings.poll, settings.interval)
    if settings.source == "dcgm" and not settings.dcgm_url and not settings.simulate:
        raise ConfigError(
            "--source dcgm needs the exporter's address: pass --dcgm-url"
            " http://HOST:9400/metrics or set ECOREPORT_DCGM_URL."
        )
    return settings
