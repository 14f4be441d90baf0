"""Pod attribution: fake /proc/<pid>/cgroup files and a fake kubelet on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import FakeGpu, FakeNvml, make_agent, spooled
from ecoreport_agent.kubernetes import (
    KubeletClient,
    KubernetesLabelSource,
    LabelMapping,
    Pod,
    PodDirectory,
    pod_uid_from_cgroup,
)
from ecoreport_agent.simulate import SimulatedLabels, SimulatedNvml

UID_A = "0b1f6c2e-1111-4a4a-9c9c-aaaaaaaaaaaa"
UID_B = "7d3e9a10-2222-4b4b-8d8d-bbbbbbbbbbbb"
UID_C = "c0ffee00-3333-4c4c-9e9e-cccccccccccc"
TOKEN = "sa-token-123"


class FakeKubelet:
    """``GET /pods`` answering the pods set in ``self.pods``, only with the bearer token."""

    def __init__(self) -> None:
        self.pods: list[dict[str, Any]] = []
        self.requests = 0
        self.refused = 0
        kubelet = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                kubelet.requests += 1
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    kubelet.refused += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                if self.path != "/pods":
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps({"kind": "PodList", "items": kubelet.pods}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pod_json(
    uid: str,
    namespace: str,
    name: str,
    labels: dict[str, str] | None = None,
    owner: tuple[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": uid, "namespace": namespace, "name": name}
    meta["labels"] = labels or {}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    return {"metadata": meta, "status": {"phase": "Running"}}


def v2_containerd(uid: str) -> str:
    slug = uid.replace("-", "_")
    return (
        "0::/kubepods.slice/kubepods-burstable.slice/"
        f"kubepods-burstable-pod{slug}.slice/cri-containerd-4f2a9e.scope\n"
    )


def v1_crio(uid: str) -> str:
    slug = uid.replace("-", "_")
    return (
        "12:memory:/kubepods.slice/kubepods-besteffort.slice/"
        f"kubepods-besteffort-pod{slug}.slice/crio-9ab3c1.scope\n"
        "1:name=systemd:/user.slice\n"
    )


class FakeProc:
    def __init__(self, root: Path) -> None:
        self.root = root

    def add(self, pid: int, cgroup: str, env: dict[str, str] | None = None, start: int = 1000):
        d = self.root / str(pid)
        d.mkdir(parents=True, exist_ok=True)
        (d / "stat").write_text(f"{pid} (python) S 1 " + "0 " * 17 + f"{start} 0\n")
        (d / "environ").write_bytes(
            b"".join(f"{k}={v}\0".encode() for k, v in (env or {"HOME": "/root"}).items())
        )
        (d / "cgroup").write_text(cgroup)

    def remove(self, pid: int) -> None:
        d = self.root / str(pid)
        for f in d.iterdir():
            f.unlink()
        d.rmdir()


@pytest.fixture
def kubelet() -> Iterator[FakeKubelet]:
    k = FakeKubelet()
    yield k
    k.close()


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


def source_for(kubelet: FakeKubelet, proc: FakeProc, tmp_path: Path, **kw: Any):
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    client = KubeletClient(kubelet.url, token_file=str(token), ca_file=None)
    directory = PodDirectory(client, refresh_min_s=kw.pop("refresh_min_s", 0.0))
    return KubernetesLabelSource(directory, proc_root=str(proc.root), **kw)


def shares(spool, index=-1):
    return {
        (e["team"], e["project"], e["job_id"]): e["share"]
        for e in spooled(spool)[index]["payload"]["attribution"]
    }


# -- cgroup paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        v2_containerd(UID_A),
        v1_crio(UID_A),
        # cgroup v1, cgroupfs driver, containerd
        f"11:devices:/kubepods/burstable/pod{UID_A}/5c1e7d0f3a\n4:cpu,cpuacct:/kubepods/x\n",
        # cgroup v2, cgroupfs driver, CRI-O
        f"0::/kubepods/besteffort/pod{UID_A}/crio-77aa\n",
        # cgroup v2, systemd driver, guaranteed QoS (no QoS slice)
        f"0::/kubepods.slice/kubepods-pod{UID_A.replace('-', '_')}.slice/cri-containerd-1.scope\n",
    ],
)
def test_pod_uid_from_every_cgroup_layout(text):
    assert pod_uid_from_cgroup(text) == UID_A


def test_processes_outside_pods_have_no_pod():
    assert pod_uid_from_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n") is None
    assert pod_uid_from_cgroup(f"0::/system.slice/pod{UID_A}.service\n") is None


# -- the label mapping ------------------------------------------------------------------------


def test_mapping_defaults_and_workload_names():
    mapping = LabelMapping()
    deployment = Pod.from_json(
        pod_json(
            UID_A,
            "vision",
            "detector-7c9f5d8b4-x2k4q",
            {"pod-template-hash": "7c9f5d8b4"},
            ("ReplicaSet", "detector-7c9f5d8b4"),
        )
    )
    job = Pod.from_json(pod_json(UID_B, "nlp", "pretrain-42-abcde", {}, ("Job", "pretrain-42")))
    bare = Pod.from_json(pod_json(UID_C, "research", "notebook"))
    assert deployment and job and bare
    assert mapping.labels(deployment) == ("detector", "vision", None, f"pod-{UID_A}")
    assert mapping.labels(job) == ("pretrain-42", "nlp", None, "nlp/pretrain-42")
    assert mapping.labels(bare) == ("notebook", "research", None, f"pod-{UID_C}")
    custom = LabelMapping(team_label="acme.com/cost-center", project_label="app")
    labelled = Pod.from_json(
        pod_json(UID_C, "ns", "p", {"acme.com/cost-center": "cc-9", "app": "search"})
    )
    assert labelled is not None
    assert custom.labels(labelled)[:2] == ("search", "cc-9")


# -- the four cases of the issue, through the agent ----------------------------------------------


def test_two_pods_of_different_namespaces_on_one_gpu(clock, spool, kubelet, proc, tmp_path):
    kubelet.pods = [
        pod_json(UID_A, "nlp", "train-abcde", {}, ("Job", "train")),
        pod_json(UID_B, "vision", "detector-0", {}, ("StatefulSet", "detector")),
    ]
    proc.add(301, v2_containerd(UID_A))
    proc.add(302, v1_crio(UID_B))
    gpu = FakeGpu("GPU-a", pids=[301, 302], process_util={301: 75, 302: 25})
    labels = source_for(kubelet, proc, tmp_path)
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock, labels=labels)

    agent.run(max_cycles=2)

    assert shares(spool) == {
        ("nlp", "train", "nlp/train"): 0.75,
        ("vision", "detector", f"pod-{UID_B}"): 0.25,
    }
    assert kubelet.refused == 0
    assert kubelet.requests == 1  # both pods cached by UID after one list


def test_a_pod_label_overrides_the_namespace(clock, spool, kubelet, proc, tmp_path):
    kubelet.pods = [
        pod_json(
            UID_A,
            "shared-gpu",
            "job-x-abcde",
            {"ecoreport.io/team": "nlp", "ecoreport.io/project": "chat-finetune"},
        )
    ]
    proc.add(301, v2_containerd(UID_A))
    gpu = FakeGpu("GPU-a", pids=[301])
    agent = make_agent(
        fake=FakeNvml(clock, [gpu]),
        spool=spool,
        clock=clock,
        labels=source_for(kubelet, proc, tmp_path),
    )

    agent.run(max_cycles=1)

    assert shares(spool) == {("nlp", "chat-finetune", f"pod-{UID_A}"): 1.0}


def test_environment_labels_win_over_the_pod(clock, spool, kubelet, proc, tmp_path):
    kubelet.pods = [pod_json(UID_A, "nlp", "train-abcde", {}, ("Job", "train"))]
    proc.add(301, v2_containerd(UID_A), {"ECOREPORT_PROJECT": "from-env", "SLURM_JOB_ID": "77"})
    gpu = FakeGpu("GPU-a", pids=[301])
    agent = make_agent(
        fake=FakeNvml(clock, [gpu]),
        spool=spool,
        clock=clock,
        labels=source_for(kubelet, proc, tmp_path),
    )

    agent.run(max_cycles=1)

    assert shares(spool) == {("nlp", "from-env", "slurm-77"): 1.0}


def test_a_pod_that_ends_mid_interval_keeps_its_share(clock, spool, kubelet, proc, tmp_path):
    kubelet.pods = [
        pod_json(UID_A, "nlp", "train-abcde", {}, ("Job", "train")),
        pod_json(UID_B, "vision", "infer-abcde"),
    ]
    proc.add(301, v2_containerd(UID_A))
    proc.add(302, v2_containerd(UID_B))
    gpu = FakeGpu("GPU-a", power_w=300.0, pids=[301, 302], process_util=None)
    agent = make_agent(
        fake=FakeNvml(clock, [gpu]),
        spool=spool,
        clock=clock,
        labels=source_for(kubelet, proc, tmp_path),
    )

    def pod_a_ends() -> None:
        gpu.pids = [302]
        proc.remove(301)  # the process, its /proc entry and its pod are gone before the boundary
        kubelet.pods = kubelet.pods[1:]

    clock.at(clock.mono + 15.5, pod_a_ends)
    agent.run(max_cycles=3)

    # Second interval: polls at 11..15 s see both pods (even split), 16..20 s only pod B.
    assert shares(spool, 1) == {
        ("vision", "infer", f"pod-{UID_B}"): 0.75,
        ("nlp", "train", "nlp/train"): 0.25,
    }
    assert shares(spool, 2) == {("vision", "infer", f"pod-{UID_B}"): 1.0}


def test_an_unknown_pod_that_appears_later_is_looked_up(clock, spool, kubelet, proc, tmp_path):
    kubelet.pods = [pod_json(UID_A, "nlp", "train-abcde", {}, ("Job", "train"))]
    proc.add(301, v2_containerd(UID_A))
    gpu = FakeGpu("GPU-a", pids=[301], process_util=None)
    agent = make_agent(
        fake=FakeNvml(clock, [gpu]),
        spool=spool,
        clock=clock,
        labels=source_for(kubelet, proc, tmp_path),
    )

    def pod_c_starts() -> None:
        kubelet.pods = [*kubelet.pods, pod_json(UID_C, "research", "notebook")]
        proc.add(303, v1_crio(UID_C))
        gpu.pids = [301, 303]

    clock.at(clock.mono + 10.5, pod_c_starts)
    agent.run(max_cycles=3)

    assert shares(spool, 0) == {("nlp", "train", "nlp/train"): 1.0}
    assert shares(spool, 1) == {
        ("nlp", "train", "nlp/train"): 0.5,
        ("research", "notebook", f"pod-{UID_C}"): 0.5,
    }
    assert kubelet.requests == 2  # once at start, once for the new pod; cached after that


def test_kubelet_down_still_tells_pods_apart_by_uid(clock, spool, kubelet, proc, tmp_path):
    proc.add(301, v2_containerd(UID_A))
    source = source_for(kubelet, proc, tmp_path)
    kubelet.close()
    assert source.labels(301)[3] == f"pod-{UID_A}"


def test_wrong_token_is_refused_and_logged_not_raised(kubelet, proc, tmp_path, caplog):
    proc.add(301, v2_containerd(UID_A))
    token = tmp_path / "bad"
    token.write_text("nope")
    directory = PodDirectory(KubeletClient(kubelet.url, token_file=str(token), ca_file=None))
    source = KubernetesLabelSource(directory, proc_root=str(proc.root))
    assert source.labels(301)[3] == f"pod-{UID_A}"
    assert kubelet.refused == 1
    assert "kubelet.pods_failed" in caplog.text


# -- --simulate N --kubernetes ----------------------------------------------------------------


def test_simulated_kubernetes_jobs_run_as_pods_in_namespaces(clock, spool):
    sim = SimulatedNvml(8, seed=3, clock=clock.time, kubernetes=True)
    agent = make_agent(fake=sim, spool=spool, clock=clock, labels=SimulatedLabels(sim))  # type: ignore[arg-type]
    agent.run(max_cycles=2)
    entries = [e for s in spooled(spool) for e in s["payload"]["attribution"]]
    assert entries
    assert all(e["user"] is None for e in entries)  # pods carry no user
    namespaces = {e["job_id"].split("/")[0] for e in entries}
    assert namespaces <= {"nlp", "vision", "research", "shared-gpu"}
    assert {e["team"] for e in entries} <= {"nlp", "vision", "research"}
