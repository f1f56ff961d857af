"""Rollout leases as ``coordination.k8s.io/v1`` Lease objects, against a local API server.

A real ``kubernetes.client.ApiClient`` talks to :mod:`support.kube_api` on 127.0.0.1, which
keeps Leases with the API server's resourceVersion concurrency (409 on a stale version) and
validates what is written as the API server validates a Lease.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from support.kube_api import KUBE_TOKEN, KubeApi, kube_api

from controller.backends.kubernetes_lease import (
    KubernetesLeaseStore,
    default_lease_namespace,
    lease_object,
    lease_object_name,
)
from controller.errors import ConfigError, RemoteUnavailable, SluiceError
from controller.lease import Lease, LeaseKeeper, graph_lease_name, lease_name

NAME = lease_name("staging", "fraud-detector")
OBJECT = "sluice-staging-fraud-detector"
MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def kube_client(host: str, token: str = KUBE_TOKEN) -> client.ApiClient:
    configuration = client.Configuration(host=host)
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(configuration)


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with kube_api(("sluice", "sluice-system")) as server:
        yield server


def store_for(
    api: KubeApi, namespace: str = "sluice", token: str = KUBE_TOKEN
) -> KubernetesLeaseStore:
    return KubernetesLeaseStore(namespace, api_client=kube_client(api.url, token))


def one_line_without(error: SluiceError, *secrets: str) -> str:
    message = str(error)
    assert "\n" not in message
    for secret in secrets:
        assert secret not in message
    return message


def test_the_kubernetes_lease_is_a_compare_and_swap_on_the_resource_version(api: KubeApi) -> None:
    """Two controllers' stores: create, replace and delete each succeed only from the
    resourceVersion last read (the server answers 409 otherwise), as the Git lease does."""
    first, second = store_for(api), store_for(api)
    assert first.read(NAME) is None
    assert first.swap(NAME, None, Lease("a", 1.0, 1.0, 30.0))
    assert not second.swap(NAME, None, Lease("b", 2.0, 2.0, 30.0))  # 409 AlreadyExists
    found = second.read(NAME)
    assert found is not None
    assert found[0] == Lease("a", 1.0, 1.0, 30.0)
    assert found[1] == api.leases[("sluice", OBJECT)]["metadata"]["resourceVersion"]
    assert second.swap(NAME, found[1], Lease("b", 3.0, 3.0, 30.0))
    assert not first.swap(NAME, found[1], Lease("a", 4.0, 4.0, 30.0))  # stale: 409 Conflict
    assert not first.swap(NAME, found[1], None)  # a delete from a stale version: 409
    taken = first.read(NAME)
    assert taken is not None
    assert taken[0].holder == "b"
    assert second.swap(NAME, taken[1], None)
    assert first.read(NAME) is None
    assert not first.swap(NAME, taken[1], None)  # already gone: 404
    assert not first.swap(NAME, taken[1], Lease("a", 5.0, 5.0, 30.0))  # replace of nothing
    methods = [method for method, path in api.requests if "/leases" in path]
    assert {"GET", "POST", "PUT", "DELETE"} <= set(methods)


def test_the_object_is_a_lease_as_controller_runtime_writes_it(api: KubeApi) -> None:
    """Holder, integer duration, MicroTime acquire and renew times with microseconds, labels,
    and leaseTransitions counted up when the holder changes, not when it renews."""
    store = store_for(api)
    assert store.swap(NAME, None, Lease("ctl-a", 1_796_420_797.123456, 1_796_420_797.5, 30.0))
    stored = api.leases[("sluice", OBJECT)]
    spec = stored["spec"]
    assert spec == {
        "holderIdentity": "ctl-a",
        "leaseDurationSeconds": 30,
        "acquireTime": "2026-12-04T21:46:37.123456Z",
        "renewTime": "2026-12-04T21:46:37.500000Z",
        "leaseTransitions": 0,
    }
    assert stored["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "sluice",
        "sluice.dev/environment": "staging",
        "sluice.dev/model": "fraud-detector",
    }
    version = stored["metadata"]["resourceVersion"]
    assert store.swap(NAME, version, Lease("ctl-a", 1_796_420_797.123456, 1_796_420_807.0, 30.0))
    assert api.leases[("sluice", OBJECT)]["spec"]["leaseTransitions"] == 0  # a renewal
    found = store.read(NAME)
    assert found is not None
    assert found[0] == Lease("ctl-a", 1_796_420_797.123456, 1_796_420_807.0, 30.0)
    asked = Lease("ctl-a", 1_796_420_797.123456, 1_796_420_807.0, 30.0, requested_by="rb")
    assert store.swap(NAME, found[1], asked)
    again = store.read(NAME)
    assert again is not None
    assert again[0] == asked  # a hand-over request survives the object
    assert store.swap(NAME, again[1], Lease("rb", 1_796_420_810.0, 1_796_420_810.0, 30.0))
    spec = api.leases[("sluice", OBJECT)]["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("rb", 1)
    assert MICROTIME.match(spec["acquireTime"])
    # A Lease a controller-runtime controller released (no holder) is free to take.
    api.leases[("sluice", OBJECT)]["spec"].pop("holderIdentity")
    freed = store.read(NAME)
    assert freed is not None
    assert not freed[0].live(1_796_420_811.0)


def test_two_keepers_racing_through_the_api_server_leave_exactly_one_holder(api: KubeApi) -> None:
    """Round after round, two controllers take a fresh release's lease at the same moment, each
    through its own client: exactly one holds it, and the other sees that one as the holder."""
    a = LeaseKeeper(store_for(api), "ctl-a", duration_seconds=30)
    b = LeaseKeeper(store_for(api), "ctl-b", duration_seconds=30)
    for round_ in range(15):
        name = lease_name("staging", f"model-{round_}")
        start = threading.Barrier(2, timeout=10)
        seen: dict[str, str] = {}

        threads = [
            threading.Thread(target=take, args=(keeper, name, start, seen)) for keeper in (a, b)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(set(seen.values())) == 1, seen
        (winner,) = set(seen.values())
        assert winner in ("ctl-a", "ctl-b")
        assert [a.holding(name), b.holding(name)].count(True) == 1
        assert api.leases[("sluice", lease_object_name(name))]["spec"]["holderIdentity"] == winner
    a.release_all()
    b.release_all()
    assert api.leases == {}


def take(keeper: LeaseKeeper, name: str, start: threading.Barrier, seen: dict[str, str]) -> None:
    start.wait()
    seen[keeper.holder] = keeper.hold(name).holder


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("staging/fraud-detector", r"sluice-staging-fraud-detector"),
        ("Staging/Fraud_Detector", r"sluice-staging-fraud-detector-[0-9a-f]{8}"),
        ("prod.eu/fd.v2", r"sluice-prod-eu-fd-v2-[0-9a-f]{8}"),
        ("staging/" + "m" * 300, r"sluice-staging-m{229}-[0-9a-f]{8}"),
    ],
)
def test_object_names_are_dns_subdomains_with_a_hash_when_cleaned(name: str, expected: str) -> None:
    made = lease_object_name(name)
    assert re.fullmatch(expected, made), made
    assert len(made) <= 253
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", made)


def test_releases_whose_names_clean_up_alike_get_different_objects_or_an_error(
    api: KubeApi,
) -> None:
    """Case and odd characters differ in the hash; a name that collides exactly with another
    release's object (a-b/c and a/b-c) is refused rather than shared."""
    assert lease_object_name("staging/FD") != lease_object_name("staging/fd")
    store = store_for(api)
    assert store.swap("a-b/c", None, Lease("x", 1.0, 1.0, 30.0))
    with pytest.raises(ConfigError, match=r"is the lease of a-b/c, not a/b-c"):
        store.read("a/b-c")


def test_api_failures_are_one_line_naming_the_url_and_the_fix(api: KubeApi) -> None:
    """403 names the RBAC rule to grant, 401 the credentials, a missing namespace the setting;
    an unreachable server is exit 3; the token is in no message."""
    api.forbid = {"create"}
    with pytest.raises(ConfigError) as forbidden:
        store_for(api).swap(NAME, None, Lease("a", 1.0, 1.0, 30.0))
    message = one_line_without(forbidden.value, KUBE_TOKEN)
    assert api.url in message
    assert "grant its service account get, create, update and delete on " in message
    assert "leases.coordination.k8s.io in namespace sluice" in message
    api.forbid = set()
    with pytest.raises(ConfigError, match=r"rejected Sluice's credentials \(401\)") as rejected:
        store_for(api, token="wrong-token-0000").read(NAME)
    one_line_without(rejected.value, KUBE_TOKEN, "wrong-token-0000")
    with pytest.raises(ConfigError, match=r"has no namespace elsewhere .*SLUICE_ROLLOUT_LEASE"):
        store_for(api, namespace="elsewhere").swap(NAME, None, Lease("a", 1.0, 1.0, 30.0))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    configuration.api_key = {"BearerToken": KUBE_TOKEN}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    configuration.retries = 0
    unreachable = KubernetesLeaseStore("sluice", api_client=client.ApiClient(configuration))
    with pytest.raises(RemoteUnavailable, match=rf"127\.0\.0\.1:{port} is unreachable") as down:
        unreachable.read(NAME)
    assert down.value.exit_code == 3
    one_line_without(down.value, KUBE_TOKEN)


def test_the_namespace_defaults_to_the_pods_own(tmp_path: Path) -> None:
    mounted = tmp_path / "namespace"
    mounted.write_text("sluice-system\n")
    assert default_lease_namespace(mounted) == "sluice-system"
    assert default_lease_namespace(tmp_path / "absent") == "sluice"


def test_an_unknown_lease_store_is_exit_2_on_one_line(tmp_path: Path) -> None:
    """SLUICE_ROLLOUT_LEASE_STORE is git or kubernetes; anything else is refused at start."""
    script = Path(sys.executable).with_name("sluice")
    result = subprocess.run(
        [str(script), "status"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SLUICE_ROLLOUT_LEASE_STORE": "etcd"},
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "sluice: error: setting rollout_lease_store: Input should be 'git' or 'kubernetes'; "
        "fix it and run again"
    )


def test_a_graph_walks_lease_is_labelled_with_its_graph_not_a_model() -> None:
    """`kubectl get leases -l sluice.dev/graph=market-regime` finds a graph walk's lease; no
    model label claims a model named after the graph."""
    lease = Lease("walker-1", 1000.0, 1000.0, 30.0)
    obj = lease_object(graph_lease_name("prod", "market-regime"), lease, "models-prod")
    labels = obj["metadata"]["labels"]
    assert labels["sluice.dev/graph"] == "market-regime"
    assert "sluice.dev/model" not in labels
