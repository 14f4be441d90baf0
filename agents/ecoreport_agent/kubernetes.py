"""Kubernetes pod attribution: a GPU process's pod from its cgroup, the pod's labels from the
kubelet.

- ``/proc/<pid>/cgroup`` names the pod's UID under cgroup v1 and v2, with the cgroupfs driver
  (``/kubepods/burstable/pod<uid>/<container>``) and the systemd one
  (``kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope`` or ``crio-<id>.scope``);
- the kubelet's ``/pods`` (``https://<node>:10250/pods``, the service account's bearer token)
  gives each pod's namespace, name, labels and owner; answers are cached per pod UID and the list
  is fetched again when a pod not in the cache appears (at most every ``refresh_min_s``);
- labels map to EcoReport's (:class:`LabelMapping`, configurable); environment labels
  (``ECOREPORT_*``, Slurm) still win where a process has them.

Standard library only: ``urllib`` and ``ssl`` talk to the kubelet.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from ecoreport_agent.attribution import (
    LABEL_SHORT_MAX_CHARS,
    Labels,
    ProcLabelSource,
    clean_label,
)

log = logging.getLogger("ecoreport_agent.kubernetes")

DEFAULT_KUBELET_URL = "https://127.0.0.1:10250"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_TOKEN_FILE = SERVICE_ACCOUNT_DIR + "/token"
DEFAULT_CA_FILE = SERVICE_ACCOUNT_DIR + "/ca.crt"

# A pod UID in a cgroup path: dashes (cgroupfs driver) or underscores (systemd driver).
_POD_UID = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)
# The suffix a controller appends to generated pod names (``train-7c9f5d-x2k4q``).
_GENERATED = re.compile(r"-[a-z0-9]{5}$")


def pod_uid_from_cgroup(text: str) -> str | None:
    """The pod UID named in a ``/proc/<pid>/cgroup`` file's text, or None (not in a pod).

    Only paths under ``kubepods`` count, so a pod-looking name elsewhere is not taken for one.
    """
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        if "kubepods" not in path:
            continue
        match = _POD_UID.search(path)
        if match:
            return match.group(1).replace("_", "-")
    return None


@dataclass(frozen=True)
class Pod:
    uid: str
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    owner_kind: str | None = None
    owner_name: str | None = None

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Pod | None:
        meta = item.get("metadata") or {}
        uid = meta.get("uid")
        if not uid:
            return None
        owners = [o for o in meta.get("ownerReferences") or () if o.get("controller")] or list(
            meta.get("ownerReferences") or ()
        )
        owner = owners[0] if owners else {}
        return cls(
            uid=str(uid),
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name") or ""),
            labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            owner_kind=owner.get("kind"),
            owner_name=owner.get("name"),
        )

    def workload(self) -> str:
        """The owning workload's name: the Deployment (a ReplicaSet less its template hash),
        Job, StatefulSet or DaemonSet; else the pod name without its generated suffix."""
        if self.owner_kind == "ReplicaSet" and self.owner_name:
            template_hash = self.labels.get("pod-template-hash")
            if template_hash and self.owner_name.endswith("-" + template_hash):
                return self.owner_name[: -len(template_hash) - 1]
            return self.owner_name
        if self.owner_kind in ("Job", "StatefulSet", "DaemonSet") and self.owner_name:
            return self.owner_name
        return _GENERATED.sub("", self.name) or self.name


@dataclass(frozen=True)
class LabelMapping:
    """Pod -> (project, team, user, job_id). ``team`` is ``team_label`` else the namespace;
    ``project`` is ``project_label`` else the workload; ``job_id`` is ``job_label`` when set on
    the pod, else ``<namespace>/<job>`` for a Job's pod, else ``pod-<uid>``."""

    team_label: str = "ecoreport.io/team"
    project_label: str = "ecoreport.io/project"
    job_label: str = "ecoreport.io/job-id"

    def labels(self, pod: Pod) -> Labels:
        team = clean_label(pod.labels.get(self.team_label)) or clean_label(pod.namespace)
        project = clean_label(pod.labels.get(self.project_label)) or clean_label(pod.workload())
        job_id = clean_label(pod.labels.get(self.job_label), LABEL_SHORT_MAX_CHARS)
        if not job_id and pod.owner_kind == "Job" and pod.owner_name:
            job_id = clean_label(f"{pod.namespace}/{pod.owner_name}", LABEL_SHORT_MAX_CHARS)
        if not job_id:
            job_id = "pod-" + pod.uid
        return (project, team, None, job_id)


class KubeletError(Exception):
    pass


class KubeletClient:
    """``GET <url>/pods`` with the service account's bearer token (re-read on every call: the
    kubelet rotates projected tokens) and the cluster CA, or no verification when told."""

    def __init__(
        self,
        url: str = DEFAULT_KUBELET_URL,
        *,
        token_file: str | None = DEFAULT_TOKEN_FILE,
        ca_file: str | None = DEFAULT_CA_FILE,
        insecure: bool = False,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/") + "/pods"
        self.token_file = token_file
        self.timeout_s = timeout_s
        self.calls = 0
        self._context: ssl.SSLContext | None = None
        if self.url.startswith("https:"):
            if insecure:
                # The operator's explicit choice (--kubelet-insecure), for clusters whose kubelet
                # certificates are self-signed and whose CA is not at hand.
                self._context = ssl._create_unverified_context()  # noqa: S323
            else:
                self._context = ssl.create_default_context(cafile=ca_file or None)
                # Kubelet serving certificates often name the node, not the address used.
                self._context.check_hostname = False

    def _token(self) -> str | None:
        if not self.token_file:
            return None
        try:
            with open(self.token_file) as fh:
                return fh.read().strip() or None
        except OSError:
            return None

    def pods(self) -> list[Pod]:
        self.calls += 1
        # The URL is the operator's configured kubelet address.
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})  # noqa: S310
        token = self._token()
        if token:
            request.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=self.timeout_s, context=self._context
            ) as reply:
                body = json.loads(reply.read())
        except (OSError, ValueError) as exc:
            raise KubeletError(f"GET {self.url}: {exc}") from exc
        pods = []
        for item in body.get("items") or ():
            pod = Pod.from_json(item)
            if pod is not None:
                pods.append(pod)
        return pods


class PodDirectory:
    """Pods by UID, from the kubelet; fetched again when an unknown UID is asked for (at most
    every ``refresh_min_s``, so a process the kubelet does not know costs no request storm)."""

    def __init__(
        self,
        client: Any,
        *,
        refresh_min_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.refresh_min_s = refresh_min_s
        self.monotonic = monotonic
        self.pods: dict[str, Pod] = {}
        self._last_refresh = -float("inf")

    def get(self, uid: str) -> Pod | None:
        pod = self.pods.get(uid)
        if pod is None and self.monotonic() - self._last_refresh >= self.refresh_min_s:
            self.refresh()
            pod = self.pods.get(uid)
        return pod

    def find(self, namespace: str, name: str) -> Pod | None:
        """A pod by namespace and name (dcgm-exporter names pods, not UIDs); same refresh rule."""
        for attempt in range(2):
            for pod in self.pods.values():
                if pod.name == name and pod.namespace == namespace:
                    return pod
            if attempt or self.monotonic() - self._last_refresh < self.refresh_min_s:
                return None
            self.refresh()
        return None

    def refresh(self) -> None:
        self._last_refresh = self.monotonic()
        try:
            listed = self.client.pods()
        except KubeletError as exc:
            log.warning("kubelet.pods_failed error=%r", str(exc))
            return
        # Pods that ended stay known: their processes' energy may still be booked.
        self.pods.update((pod.uid, pod) for pod in listed)
        if len(self.pods) > 4 * max(len(listed), 256):
            self.pods = {pod.uid: pod for pod in listed}

    def forget_except(self, uids: Iterable[str]) -> None:
        keep = set(uids)
        self.pods = {uid: pod for uid, pod in self.pods.items() if uid in keep}


def merge_labels(env: Labels, pod: Labels) -> Labels:
    """Environment labels win key by key; the pod fills what they leave unknown."""
    project, team, user, job_id = env
    return (project or pod[0], team or pod[1], user or pod[2], job_id or pod[3])


class KubernetesLabelSource:
    """Labels of a GPU process: its environment's (``ProcLabelSource``), completed from its pod.

    A process's pod is resolved the first time the agent sees it (``observe``, every poll) and
    kept by (pid, start time), so a pod that ends before the interval is booked keeps its share.
    """

    def __init__(
        self,
        directory: PodDirectory,
        *,
        mapping: LabelMapping | None = None,
        proc_root: str = "/proc",
        environment: ProcLabelSource | None = None,
    ) -> None:
        self.directory = directory
        self.mapping = mapping or LabelMapping()
        self.proc_root = proc_root
        self.environment = environment or ProcLabelSource(proc_root)
        # pid -> (start time, env labels, pod uid or None)
        self._cache: dict[int, tuple[int | None, Labels, str | None]] = {}
        self.cgroup_reads = 0

    def _pod_uid(self, pid: int) -> str | None:
        self.cgroup_reads += 1
        try:
            with open(f"{self.proc_root}/{pid}/cgroup") as fh:
                return pod_uid_from_cgroup(fh.read())
        except OSError:
            return None

    def _entry(self, pid: int) -> tuple[int | None, Labels, str | None]:
        start = self.environment._start_time(pid)
        cached = self._cache.get(pid)
        if cached is not None and (start is None or cached[0] == start):
            # Same process, or gone since it was seen: what was read while it ran stands.
            return cached
        entry = (start, self.environment.labels(pid), self._pod_uid(pid))
        if start is not None:
            self._cache[pid] = entry
        return entry

    def observe(self, pids: Iterable[int]) -> None:
        """Resolve processes not seen before while they still exist (cheap for known pids)."""
        for pid in pids:
            if pid not in self._cache:
                self._entry(pid)

    def labels(self, pid: int) -> Labels:
        _start, env, uid = self._entry(pid)
        if uid is None:
            return env
        pod = self.directory.get(uid)
        if pod is None:
            # Not (yet) listed by the kubelet: the UID still tells pods apart.
            return merge_labels(env, (None, None, None, "pod-" + uid))
        return merge_labels(env, self.mapping.labels(pod))

    def forget_except(self, live_pids: Iterable[int]) -> None:
        live = set(live_pids)
        self._cache = {pid: e for pid, e in self._cache.items() if pid in live}
        self.environment.forget_except(live)
        self.directory.forget_except(uid for _, _, uid in self._cache.values() if uid)
