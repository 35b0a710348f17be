"""The consortium in containers: `fedledger network up --runtime docker` through docker-compose.yaml.

The engine is Debian's docker.io, started by scripts/start-docker.sh when none answers; no registry
is reachable, so the images are built locally from the project's Fabric binaries by
scripts/build-images.sh. Where no engine can be started (no docker.io, not root, a kernel without
the needed features), these tests skip and say why; the rest of the suite does not need Docker.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fedledger.errors import NetworkConfigError, NetworkError
from fedledger.network import ConsortiumConfig, ContainerStatus, Network
from fedledger.network.docker import DockerRuntime, check_demo, default_images

from .conftest import Consortium, free_base_port

REPO = Path(__file__).resolve().parents[2]
# Base ports of the docker tests: away from a user's network (17000) and from the native tests'
# ranges (the `consortium` fixture's search from 27000 up, and 41000-50000); free_base_port moves
# on by 1000 if the range is taken.
DOCKER_BASE = 37000
DOCKER_SPARE_BASE = 39000


def _script(name: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "scripts" / name)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def docker_images() -> Iterator[dict[str, str]]:
    """A running Docker engine and the locally built images, as the FEDLEDGER_*_IMAGE variables."""
    try:
        engine = _script("start-docker.sh", timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"no Docker engine could be started: scripts/start-docker.sh: {err}")
    if engine.returncode != 0:
        reason = " ".join(engine.stderr.split()) or f"scripts/start-docker.sh exited {engine.returncode}"
        pytest.skip(f"no Docker engine could be started, so the docker runtime is not tested: {reason}")
    # An engine is here: from now on a failure is a failure, not a skip.
    built = _script("build-images.sh", timeout=900)
    assert built.returncode == 0, f"scripts/build-images.sh failed:\n{built.stderr}"
    images = {}
    for line in built.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        images[name] = value
    assert set(images) == {"FEDLEDGER_PEER_IMAGE", "FEDLEDGER_ORDERER_IMAGE", "FEDLEDGER_CA_IMAGE",
                           "FEDLEDGER_CHAINCODE_IMAGE"}, built.stdout
    with pytest.MonkeyPatch.context() as patch:
        for name, value in images.items():
            patch.setenv(name, value)
        yield images


def _project(net: Network) -> str:
    """The compose project of a network run by the docker runtime."""
    assert isinstance(net.runtime, DockerRuntime)
    return net.runtime.project


def _project_containers(project: str) -> list[str]:
    done = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={project}"],
                          capture_output=True, text=True, check=True)
    return done.stdout.split()


def _project_networks(project: str) -> list[str]:
    done = subprocess.run(["docker", "network", "ls", "--quiet", "--filter",
                           f"label=com.docker.compose.project={project}"], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.fixture(scope="module")
def docker_consortium(docker_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[Consortium]:
    home = tmp_path_factory.mktemp("docker-consortium")
    net = Network(ConsortiumConfig.load(base_port=free_base_port(3, start=DOCKER_BASE)), home, runtime="docker")
    report = net.up()
    print(f"docker consortium up in {report.seconds:.1f} s: "
          + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in report.steps))
    try:
        yield Consortium(net, json.loads(net.layout.profile.read_text()))
    finally:
        net.down(purge=True)
        assert _project_containers(_project(net)) == []


def test_a_consortium_other_than_the_demo_is_refused_with_the_reason() -> None:
    config = ConsortiumConfig.from_dict({"company": [{"name": "Solo"}], "orderer-org": {"orderers": 1}})

    with pytest.raises(NetworkConfigError, match="only the demo consortium.*Solo.*--runtime native"):
        check_demo(config)
    check_demo(ConsortiumConfig.load(base_port=23000))  # the demo on other ports is fine


def test_the_compose_file_and_the_docker_runtime_agree_on_services_and_variables(tmp_path: Path) -> None:
    compose_text = (REPO / "docker-compose.yaml").read_text()
    services = set(yaml.safe_load(compose_text)["services"])
    used = set(re.findall(r"\$\{(FEDLEDGER_[A-Z0-9_]+)", compose_text))

    net = Network(ConsortiumConfig.load(), tmp_path / "h", runtime="docker")
    assert isinstance(net.runtime, DockerRuntime)

    assert services == {n.name for n in net.config.nodes()}
    assert used == set(net.runtime.variables)
    assert set(default_images()) == {"FEDLEDGER_PEER_IMAGE", "FEDLEDGER_ORDERER_IMAGE", "FEDLEDGER_CA_IMAGE",
                                     "FEDLEDGER_CHAINCODE_IMAGE"}
    assert default_images()["FEDLEDGER_PEER_IMAGE"] == "hyperledger/fabric-peer:2.5.0"


def test_every_node_runs_in_its_own_container_and_answers(docker_consortium: Consortium) -> None:
    nodes = docker_consortium.net.status()

    roles = sorted(n.role for n in nodes)
    assert roles.count("ca") == 4 and roles.count("orderer") == 3
    assert roles.count("peer") == 3 and roles.count("chaincode") == 3
    assert [n.name for n in nodes if not (n.running and n.answers)] == []
    containers = [n.container for n in nodes if isinstance(n, ContainerStatus)]
    assert len(set(containers)) == 13 and all(c and c.startswith(_project(docker_consortium.net)) for c in containers)
    assert all(n.pid is None for n in nodes)


def test_the_chaincode_is_invoked_and_queried_through_the_peers_of_two_organizations(
        docker_consortium: Consortium) -> None:
    identity, _ = docker_consortium.identity("Carrier", "admin")
    with docker_consortium.gateway("Carrier", "admin") as gateway:
        contract = gateway.network(docker_consortium.channel).contract(docker_consortium.chaincode)

        contract.submit("RegisterCompany", ["carrier", "participant", identity.fingerprint])
        company = json.loads(contract.evaluate("GetCompany", ["carrier"]))

    assert company["msp_id"] == "CarrierMSP"
    # Two other organizations' peers, each in its own container, hold the same committed state.
    for org in ("Manufacturer", "Warehouse"):
        with docker_consortium.gateway(org) as gateway:
            contract = gateway.network(docker_consortium.channel).contract(docker_consortium.chaincode)

            seen = json.loads(contract.evaluate("GetCompany", ["carrier"]))
            who = json.loads(contract.evaluate("WhoAmI"))

        assert seen == company
        assert who["msp_id"] == f"{org}MSP"


def test_the_connection_profile_is_the_one_the_native_runtime_writes(
        docker_consortium: Consortium, tmp_path: Path) -> None:
    native = Network(docker_consortium.net.config, tmp_path / "native")
    native.layout.home.mkdir()
    native._write_profile()

    expected = native.layout.profile.read_text().replace(str(native.layout.home), str(docker_consortium.net.layout.home))
    assert docker_consortium.profile == json.loads(expected)


def test_down_removes_every_container_and_a_later_up_resumes_the_same_ledger(
        docker_consortium: Consortium) -> None:
    net = docker_consortium.net
    before = {n.container for n in net.status() if isinstance(n, ContainerStatus)}

    removed = net.down()

    assert set(removed) == before
    assert _project_containers(_project(net)) == [] and _project_networks(_project(net)) == []
    assert net.layout.state_file.exists()  # ledgers and keys are kept without purge
    assert (net.layout.log(net.config.peer(net.config.company("Carrier")))).stat().st_size > 0

    report = net.up()

    assert report.resumed and len(report.restarted) == 13
    assert all(n.running and n.answers for n in net.status())
    with docker_consortium.gateway("Warehouse") as gateway:
        contract = gateway.network(docker_consortium.channel).contract(docker_consortium.chaincode)
        assert json.loads(contract.evaluate("GetCompany", ["carrier"]))["msp_id"] == "CarrierMSP"


def test_up_names_images_that_are_not_present_and_starts_nothing(
        docker_images: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDLEDGER_PEER_IMAGE", "fedledger/no-such-peer:0")
    net = Network(ConsortiumConfig.load(base_port=free_base_port(3, start=DOCKER_SPARE_BASE)), tmp_path / "h",
                  runtime="docker")

    with pytest.raises(NetworkError, match="fedledger/no-such-peer:0.*never pulls.*scripts/build-images.sh"):
        net.up()

    assert not net.layout.state_file.exists()
    assert _project_containers(_project(net)) == []


def test_a_failed_bring_up_removes_its_containers_and_keeps_their_logs(
        docker_images: dict[str, str], tmp_path: Path) -> None:
    # Fabric's default orderer.yaml is broken here, so the bring-up fails after the CAs started.
    bad = tmp_path / "cache"
    (bad / "bin").mkdir(parents=True)
    (bad / "config").mkdir()
    cache = Path(os.environ.get("FEDLEDGER_CACHE", Path.home() / ".cache" / "fedledger"))
    for tool in ("fabric-ca-server", "orderer", "peer", "configtxgen", "osnadmin"):
        (bad / "bin" / tool).symlink_to(cache / "bin" / tool)
    (bad / "config" / "core.yaml").symlink_to(cache / "config" / "core.yaml")
    (bad / "config" / "orderer.yaml").write_text("General: {ListenPort: not-a-port}\n")
    net = Network(ConsortiumConfig.load(base_port=free_base_port(3, start=DOCKER_SPARE_BASE)),
                  tmp_path / "failed", runtime="docker", bin_dir=bad / "bin")

    with pytest.raises(Exception):
        net.up()

    assert not net.layout.state_file.exists()
    assert _project_containers(_project(net)) == [] and _project_networks(_project(net)) == []
    assert (net.layout.logs / "ca.manufacturer.fedledger.log").read_text()  # the CAs' logs stay
