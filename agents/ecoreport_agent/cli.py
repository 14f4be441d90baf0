"""``ecoreport-agent run | check | status | install-systemd``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from ecoreport_agent import __version__
from ecoreport_agent.agent import Agent
from ecoreport_agent.attribution import LABEL_KEYS, LabelSource, ProcLabelSource
from ecoreport_agent.clock import Clock
from ecoreport_agent.config import ConfigError, Settings, resolve
from ecoreport_agent.gpu import COUNTER, POWER_INTEGRATION
from ecoreport_agent.nvml import Nvml, NvmlError, NvmlUnavailable, load_pynvml
from ecoreport_agent.spool import Spool, default_spool_path
from ecoreport_agent.uploader import PING_PATH, Uploader, describe_unexpected, json_object, ping

# Exit codes, so scripts and the tests can tell failures apart.
EXIT_CONFIG = 1
EXIT_NO_NVML = 2
EXIT_UNREACHABLE = 3
EXIT_TOKEN_REFUSED = 4

log = logging.getLogger("ecoreport_agent")


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UTCFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("ecoreport_agent")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _common(parser: argparse.ArgumentParser) -> None:
    # Defaults are None so config.resolve can tell "not given" from "given".
    parser.add_argument("--config", help="INI config file (default /etc/ecoreport/agent.conf)")
    parser.add_argument("--server", help="backend URL, e.g. https://ecoreport.example.com")
    parser.add_argument("--token", help="agent token (prefer --token-file: argv is world-readable)")
    parser.add_argument("--token-file", help="file holding the agent token")
    parser.add_argument("--spool", help="spool database path")
    parser.add_argument("--simulate", metavar="N", help="use N simulated GPUs instead of NVML")
    parser.add_argument("--seed", help="simulator seed (default 0)")
    parser.add_argument("--hostname", help="host name sent to the backend (default: this host's)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    k8s = parser.add_argument_group("Kubernetes (docs/kubernetes.md)")
    k8s.add_argument(
        "--kubernetes",
        action="store_const",
        const="true",
        help="attribute GPU processes to their pods (kubelet pod list); with --simulate, pods",
    )
    k8s.add_argument("--kubelet-url", help="kubelet address (default https://127.0.0.1:10250)")
    k8s.add_argument("--kubelet-token-file", help="bearer token (default: the service account's)")
    k8s.add_argument("--kubelet-ca-file", help="CA bundle for the kubelet's certificate")
    k8s.add_argument(
        "--kubelet-insecure", action="store_const", const="true", help="skip TLS verification"
    )
    k8s.add_argument("--team-label", help="pod label naming the team (default ecoreport.io/team)")
    k8s.add_argument(
        "--project-label", help="pod label naming the project (default ecoreport.io/project)"
    )
    k8s.add_argument("--source", help="nvml (default) or dcgm (read a dcgm-exporter endpoint)")
    k8s.add_argument("--dcgm-url", help="dcgm-exporter metrics URL, e.g. http://HOST:9400/metrics")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecoreport-agent",
        description="Measures GPU energy with NVML, attributes it to jobs, and uploads it to"
        " EcoReport. Every flag can also be set as ECOREPORT_<FLAG> or in the config file.",
    )
    parser.add_argument("--version", action="version", version=f"ecoreport-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="measure and upload until stopped")
    _common(run)
    run.add_argument("--interval", help="seconds per sample (default 10, minimum 1)")
    run.add_argument("--poll", help="seconds between NVML polls within an interval (default 1)")
    run.add_argument("--batch-size", help="samples per upload (default 1000)")
    run.add_argument(
        "--max-batch-tries",
        help="same 5xx this many times in a row: a batch is set aside, and dead-lettered if it"
        " still fails after another batch is accepted (default 5)",
    )
    run.add_argument("--spool-max-mb", help="spool size that triggers merging (default 256)")
    run.add_argument("--max-cycles", help="stop after N intervals (tests, benchmarks)")
    run.add_argument("--duration", help="stop after S seconds (tests, benchmarks)")
    check = sub.add_parser("check", help="show GPUs, methods, processes and test the token")
    _common(check)
    status = sub.add_parser("status", help="spool depth, last upload, last error, totals")
    _common(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    install = sub.add_parser(
        "install-systemd",
        help="create the ecoreport user, token and config files and the systemd unit; start it",
    )
    install.add_argument("--server", required=True, help="backend URL")
    source = install.add_mutually_exclusive_group(required=True)
    source.add_argument("--token-file", help="file holding the token issue_agent_token printed")
    source.add_argument(
        "--token-stdin", action="store_true", help="read the token from standard input"
    )
    install.add_argument("--root", default="/", help="write files under this directory")
    install.add_argument("--user", default="ecoreport", help="service user (default ecoreport)")
    install.add_argument("--executable", help="agent script for ExecStart (default: this one)")
    install.add_argument("--no-start", action="store_true", help="write files only")
    install.add_argument("--force", action="store_true", help="replace an existing token/config")
    return parser


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in ("command", "json")}


def _open_nvml(settings: Settings) -> tuple[Nvml, LabelSource]:
    if settings.simulate:
        from ecoreport_agent.simulate import SimulatedLabels, SimulatedNvml

        sim = SimulatedNvml(
            settings.simulate,
            seed=settings.seed,
            host=settings.resolved_hostname(),
            kubernetes=settings.kubernetes,
        )
        return Nvml(sim), SimulatedLabels(sim)
    if settings.source == "dcgm":
        from ecoreport_agent.dcgm import DcgmExporter, DcgmLabels

        assert settings.dcgm_url is not None  # config.resolve requires it
        # dcgm-exporter refreshes its figures every few seconds (30 s by default): two scrapes
        # per interval are plenty, and each costs a parse of the whole exposition.
        exporter = DcgmExporter(settings.dcgm_url, max_age_s=min(5.0, settings.interval / 2))
        directory = _pod_directory(settings) if settings.kubernetes else None
        return Nvml(exporter), DcgmLabels(exporter, _kubernetes_mapping(settings), directory)
    labels: LabelSource = ProcLabelSource()
    if settings.kubernetes:
        from ecoreport_agent.kubernetes import KubernetesLabelSource

        labels = KubernetesLabelSource(
            _pod_directory(settings), mapping=_kubernetes_mapping(settings)
        )
    return Nvml(load_pynvml()), labels


def _pod_directory(settings: Settings) -> Any:
    from ecoreport_agent.kubernetes import KubeletClient, PodDirectory

    client = KubeletClient(
        settings.kubelet_url,
        token_file=settings.kubelet_token_file,
        ca_file=settings.kubelet_ca_file,
        insecure=settings.kubelet_insecure,
    )
    return PodDirectory(client)


def _kubernetes_mapping(settings: Settings) -> Any:
    from ecoreport_agent.kubernetes import LabelMapping

    return LabelMapping(team_label=settings.team_label, project_label=settings.project_label)


def _fail(message: str, code: int) -> int:
    print(f"ecoreport-agent: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "install-systemd":
        return cmd_install_systemd(args)
    try:
        settings = resolve(_flags(args))
        if args.command == "run":
            return cmd_run(settings)
        if args.command == "check":
            return cmd_check(settings)
        return cmd_status(settings, as_json=args.json)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_CONFIG)


def _require_server(settings: Settings) -> tuple[str, str]:
    token = settings.resolved_token()
    if not settings.server:
        raise ConfigError(
            "No server configured: pass --server URL, set ECOREPORT_SERVER, or set server in"
            " the config file."
        )
    if not token:
        raise ConfigError(
            "No agent token configured: pass --token-file PATH (or --token), set"
            " ECOREPORT_TOKEN / ECOREPORT_TOKEN_FILE, or set token_file in the config file."
        )
    return settings.server, token


def cmd_run(settings: Settings) -> int:
    setup_logging(settings.log_level)
    server, token = _require_server(settings)
    try:
        nvml, labels = _open_nvml(settings)
    except NvmlUnavailable as exc:
        return _fail(str(exc), EXIT_NO_NVML)
    spool = Spool(settings.spool or default_spool_path())
    stop = threading.Event()
    clock = Clock(stop)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("agent.stopping signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    uploader = Uploader(
        spool=spool,
        server=server,
        token=token,
        hostname=settings.resolved_hostname(),
        batch_size=settings.batch_size,
        max_batch_tries=settings.max_batch_tries,
        monotonic=clock.monotonic,
        wall=clock.time,
    )
    agent = Agent(
        nvml=nvml,
        spool=spool,
        labels=labels,
        uploader=uploader,
        clock=clock,
        interval_s=settings.interval,
        poll_s=settings.poll,
        spool_max_bytes=int(settings.spool_max_mb * 1024 * 1024),
    )
    log.info(
        "agent.starting version=%s server=%s interval_s=%s spool=%s simulate=%d pid=%d",
        __version__,
        server,
        settings.interval,
        spool.path,
        settings.simulate,
        os.getpid(),
    )
    try:
        agent.run(stop=stop, max_cycles=settings.max_cycles, duration_s=settings.duration)
    finally:
        spool.close()
        nvml.shutdown()
    return 0


def cmd_check(settings: Settings) -> int:
    setup_logging("ERROR")
    try:
        nvml, labels = _open_nvml(settings)
    except NvmlUnavailable as exc:
        return _fail(str(exc), EXIT_NO_NVML)
    try:
        print(f"NVML: ok, driver {nvml.driver_version()}")
    except NvmlError:
        print("NVML: ok")
    count = nvml.device_count()
    print(f"GPUs: {count}")
    for index in range(count):
        try:
            _describe_gpu(nvml, labels, index)
        except NvmlError as exc:
            print(f"  [{index}] error: {exc}")
    if not settings.server:
        return _fail(
            "No server configured, so the token was not tested: pass --server URL or set"
            " ECOREPORT_SERVER.",
            EXIT_CONFIG,
        )
    server, token = _require_server(settings)
    reply = ping(server, token)
    who = json_object(reply) if reply.status == 200 else None
    if who is not None and who.get("organization") and who.get("host"):
        print(
            f"Server: {server} accepts the token"
            f" (organization {who['organization']}, host {who['host']})"
        )
        return 0
    if 300 <= reply.status <= 399 or reply.status == 200:
        # A redirect (to a login page, to https, to a path) or a page that is not the ping's
        # JSON: the URL is not an EcoReport server's base URL, whatever the token.
        return _fail(
            f"The server at {server} is not answering as EcoReport does: the token check"
            f" ({PING_PATH}) got {describe_unexpected(reply)}. --server must be the base URL"
            " of EcoReport (for example https://ecoreport.example.com), with no path.",
            EXIT_UNREACHABLE,
        )
    if reply.status in (401, 403):
        return _fail(
            f"The server at {server} refused the token (HTTP {reply.status}): check the token or"
            " ask an EcoReport admin for a new one.",
            EXIT_TOKEN_REFUSED,
        )
    if reply.status == 0:
        return _fail(f"Cannot reach the server at {server}: {reply.error}.", EXIT_UNREACHABLE)
    return _fail(
        f"The server at {server} answered HTTP {reply.status} to the token check; is the URL"
        " right?",
        EXIT_UNREACHABLE,
    )


def _describe_gpu(nvml: Nvml, labels: LabelSource, index: int) -> None:
    handle = nvml.handle(index)
    try:
        nvml.energy_mj(handle)
        method = COUNTER
    except NvmlError as exc:
        method = POWER_INTEGRATION if exc.unsupported else f"unknown ({exc})"
    try:
        limit = f"{nvml.power_limit_mw(handle) / 1000:.0f} W"
    except NvmlError:
        limit = "unknown"
    mig = ""
    try:
        if nvml.mig_enabled(handle):
            mig = f", MIG on ({len(nvml.mig_devices(handle))} instances)"
    except NvmlError:
        pass
    print(f"  [{index}] {nvml.name(handle)} {nvml.uuid(handle)}")
    print(f"      method: {method}, power limit {limit}{mig}")
    try:
        procs = nvml.compute_processes(handle)
    except NvmlError as exc:
        print(f"      processes: cannot list ({exc})")
        return
    if not procs:
        print("      processes: none (its energy is idle, unattributed)")
    for proc in procs:
        found = dict(zip(LABEL_KEYS, labels.labels(proc.pid)))
        text = " ".join(f"{k}={v}" for k, v in found.items() if v) or "no labels"
        print(f"      pid {proc.pid}: {text}")


def cmd_status(settings: Settings, *, as_json: bool) -> int:
    path = settings.spool or default_spool_path()
    if not os.path.exists(path):
        return _fail(f"No spool at {path}: has the agent run with this --spool?", EXIT_CONFIG)
    spool = Spool(path)
    try:
        stats = spool.stats()
    finally:
        spool.close()
    if as_json:
        print(json.dumps(stats, indent=2, sort_keys=True))
        return 0
    print(f"spool:               {stats['spool']} ({stats['spool_bytes']} bytes of samples)")
    print(f"unsent samples:      {stats['pending_samples']} ({stats['pending_batches']} batches)")
    print(f"oldest unsent:       {stats['oldest_unsent'] or '-'}")
    print(f"last upload:         {stats['last_upload'] or 'never'}")
    last_error = stats["last_error"]
    if last_error:
        last_error = f"{last_error} at {stats['last_error_at']}"
    print(f"last error:          {last_error or '-'}")
    print(f"dead letter:         {stats['dead_letter']} samples")
    for gpu in stats["gpus"]:
        print(
            f"gpu {gpu['uuid']}: booked {gpu['energy_j'] / 3600:.1f} Wh in {gpu['samples']}"
            f" samples ({gpu['method']}), unsent {gpu['pending_energy_j'] / 3600:.1f} Wh"
        )
    return 0


def cmd_install_systemd(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ecoreport_agent.install import InstallError, InstallPlan, install_systemd

    try:
        if args.token_stdin:
            token = sys.stdin.read()
        else:
            try:
                with open(args.token_file) as fh:
                    token = fh.read()
            except OSError as exc:
                raise InstallError(f"Cannot read the token file {args.token_file}: {exc}.") from exc
        install_systemd(
            InstallPlan(
                server=args.server,
                token=token,
                root=Path(args.root),
                user=args.user,
                executable=args.executable or "",
                start=not args.no_start,
                force=args.force,
            )
        )
    except InstallError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    return 0
