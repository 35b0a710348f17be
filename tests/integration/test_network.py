"""The consortium as `fedledger network up` brings it up: real CAs, Raft orderers, peers, chaincode."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fabric_protos.common import common_pb2

from fedledger.errors import CommitError, NetworkError, NetworkStateError
from fedledger.network import ConsortiumConfig, Network, open_network
from fedledger.network.config import Node
from fedledger.network.chaincode import admin_env
from fedledger.network.native import targets
from fedledger.network.processes import running

from .conftest import Consortium, free_base_port


def _pids(net: Network) -> dict[str, int]:
    return {s.name: s.pid for s in net.status() if s.pid is not None}


def test_every_node_of_the_consortium_runs_and_answers(consortium: Consortium) -> None:
    nodes = consortium.net.status()

    roles = sorted(n.role for n in nodes)
    assert roles.count("orderer") == 3 and roles.count("peer") == 3
    assert roles.count("ca") == 4 and roles.count("chaincode") == 3
    assert [n.name for n in nodes if not (n.running and n.answers)] == []


def test_up_on_a_running_network_says_so_and_changes_nothing(consortium: Consortium) -> None:
    before = _pids(consortium.net)

    report = consortium.net.up()

    assert report.already_up and not report.restarted
    assert _pids(consortium.net) == before


def test_chaincode_answers_through_the_peers_of_two_organizations(consortium: Consortium) -> None:
    for org in ("Manufacturer", "Warehouse"):
        with consortium.gateway(org) as gateway:
            contract = gateway.network(consortium.channel).contract(consortium.chaincode)

            version = json.loads(contract.evaluate("Version"))
            who = json.loads(contract.evaluate("WhoAmI"))

        assert version["chaincode"] == "fedledger"
        assert who["msp_id"] == f"{org}MSP"


def test_a_submit_is_endorsed_by_a_majority_and_committed(consortium: Consortium) -> None:
    identity, _ = consortium.identity("Carrier", "admin")
    with consortium.gateway("Carrier", "admin") as gateway:
        contract = gateway.network(consortium.channel).contract(consortium.chaincode)

        contract.submit("RegisterCompany", ["carrier", "participant", identity.fingerprint])
        company = json.loads(contract.evaluate("GetCompany", ["carrier"]))

    assert company["msp_id"] == "CarrierMSP"
    # Another org's peer has the same committed state.
    with consortium.gateway("Manufacturer") as gateway:
        seen = json.loads(gateway.network(consortium.channel).contract(consortium.chaincode)
                          .evaluate("GetCompany", ["carrier"]))
    assert seen == company


def test_a_transaction_endorsed_by_one_organization_alone_fails_the_majority_policy(
        consortium: Consortium) -> None:
    identity, _ = consortium.identity("Warehouse", "admin")
    with consortium.gateway("Warehouse", "admin") as gateway:
        contract = gateway.network(consortium.channel).contract(consortium.chaincode)

        with pytest.raises(CommitError) as caught:
            contract.submit("RegisterCompany", ["warehouse", "participant", identity.fingerprint],
                            endorsing_organizations=["WarehouseMSP"])
        assert caught.value.code == "ENDORSEMENT_POLICY_FAILURE"
        # The invalid transaction changed nothing.
        with pytest.raises(Exception, match="warehouse"):
            contract.evaluate("GetCompany", ["warehouse"])


def _fetch_header(consortium: Consortium, orderer_port: int, tmp: Path, number: int) -> bytes:
    net, org = consortium.net, consortium.net.config.company("Manufacturer")
    out = tmp / f"block-{orderer_port}-{number}.block"
    subprocess.run([str(net.bin_dir / "peer"), "channel", "fetch", str(number), str(out), "-c", consortium.channel,
                    "-o", f"127.0.0.1:{orderer_port}", "--tls", "--cafile",
                    str(net.layout.ca_root(net.config.orderer_org))],
                   env={**os.environ, **admin_env(net.config, net.layout, org)}, check=True, capture_output=True)
    block = common_pb2.Block()
    block.ParseFromString(out.read_bytes())
    assert block.header.number == number
    return bytes(block.header.SerializeToString())


def _height(consortium: Consortium) -> int:
    with consortium.gateway("Manufacturer") as gateway:
        info = gateway.network(consortium.channel).contract("qscc").evaluate(
            "GetChainInfo", [consortium.channel])
    from fabric_protos.common import ledger_pb2

    chain = ledger_pb2.BlockchainInfo()
    chain.ParseFromString(info)
    return int(chain.height)


# What Fabric 2.5.0 uses as the size of one batch of committed Raft entries (PreferredMaxBytes).
_RAFT_BATCH_BYTES = 2 * 1024 * 1024


def _order_padding(consortium: Consortium, total: int) -> None:
    """Have the ordering service order about ``total`` bytes of transactions the peers mark invalid.

    Each is a real endorsement whose proposal payload is given 1 MB of transient data after the
    fact, signed by its creator: the orderers accept it (the creator may write), every peer refuses
    it (its proposal hash no longer matches) and nothing reaches the world state. The blocks are
    real bytes in every orderer's Raft log, which is what the restart test needs.
    """
    from fabric_protos.peer import proposal_pb2, transaction_pb2

    chunk = 1024 * 1024
    identity, signer = consortium.identity("Manufacturer", "admin")
    with consortium.gateway("Manufacturer", "admin") as gateway:
        contract = gateway.network(consortium.channel).contract(consortium.chaincode)
        for _ in range(-(-total // chunk)):
            endorsed = contract.new_proposal("ListCompanies").endorse()
            payload = common_pb2.Payload.FromString(endorsed.bytes())
            transaction = transaction_pb2.Transaction.FromString(payload.data)
            action = transaction_pb2.ChaincodeActionPayload.FromString(transaction.actions[0].payload)
            proposal = proposal_pb2.ChaincodeProposalPayload.FromString(action.chaincode_proposal_payload)
            proposal.TransientMap["padding"] = b"\0" * chunk
            action.chaincode_proposal_payload = proposal.SerializeToString()
            transaction.actions[0].payload = action.SerializeToString()
            payload.data = transaction.SerializeToString()
            padded = payload.SerializeToString()
            status = contract.new_signed_transaction(padded, signer.sign(padded)).submit().status()
            assert not status.successful, "a transaction whose proposal was altered was validated"


def _raft_snapshots(net: Network, orderer: Node) -> list[Path]:
    return sorted((net.layout.node(orderer) / "data" / "etcdraft" / "snapshot").rglob("*.snap"))


def test_the_channel_commits_with_an_orderer_killed_and_the_orderer_catches_up(
        consortium: Consortium, tmp_path: Path) -> None:
    net = consortium.net
    victim = net.config.orderers()[1]
    pid = _pids(net)[victim.name]
    # A Raft log longer than one batch of committed entries: on a restart from the log's first entry,
    # Fabric 2.5.0 deadlocks applying the channel's configuration changes (hyperledger/fabric#4199;
    # CI met it once the chain held 360 blocks). The channel snapshots every 1 MB, so the restarted
    # orderer must replay from a snapshot instead.
    _order_padding(consortium, _RAFT_BATCH_BYTES + 512 * 1024)
    deadline = time.monotonic() + 30
    while not _raft_snapshots(net, victim):
        assert time.monotonic() < deadline, f"{victim.name} took no Raft snapshot of a log over 2 MB"
        time.sleep(0.2)
    # Kill it at rest, not in the instant it writes a block the earlier tests' last transactions
    # made: killed 50 ms after writing one, an orderer of Fabric 2.5.0 was seen to restart with its
    # Raft log one entry behind its ledger and never serve the next block (CI, a 359-block chain).
    settled = _height(consortium)
    for orderer in net.config.orderers():
        _fetch_header(consortium, orderer.port, tmp_path, settled - 1)
    time.sleep(1)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert not running(pid, str(net.bin_dir / "orderer"))
    assert [s.name for s in net.status() if not s.running] == [victim.name]

    # Two of three Raft nodes are a quorum: transactions still commit.
    with consortium.gateway("Manufacturer", "admin") as gateway:
        contract = gateway.network(consortium.channel).contract(consortium.chaincode)
        identity, _ = consortium.identity("Manufacturer", "admin")
        contract.submit("RegisterCompany", ["manufacturer", "participant", identity.fingerprint])
    height = _height(consortium)

    report = net.up()

    assert report.restarted == [victim.name]
    assert all(s.running and s.answers for s in net.status())
    # The restarted orderer serves the blocks it missed, identical to the others'.
    last = height - 1
    deadline = time.monotonic() + 30
    while True:
        try:
            caught_up = _fetch_header(consortium, victim.port, tmp_path, last)
            break
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    for other in net.config.orderers():
        assert _fetch_header(consortium, other.port, tmp_path, last) == caught_up


def test_down_stops_every_process_and_purge_removes_the_state(tmp_path: Path) -> None:
    # Below the kernel's ephemeral ports (32768 up): between down and up, an outgoing connection
    # elsewhere may take a port in that range as its source and the restart find it in use (CI).
    config = ConsortiumConfig.from_dict({"base-port": free_base_port(1, start=19000), "orderer-org": {"orderers": 1},
                                         "company": [{"name": "Solo"}]})
    net = Network(config, tmp_path / "solo")
    net.up()
    pids = _pids(net)
    assert len(pids) == 5

    stopped = net.down()
    assert sorted(stopped) == sorted(pids.values())
    assert not any(running(pid, exe) for pid, exe in targets(json.loads(net.layout.state_file.read_text())["nodes"]))
    assert net.layout.state_file.exists()  # ledgers and keys are kept without --purge

    resumed = net.up()
    assert resumed.resumed and all(s.answers for s in net.status())

    net.down(purge=True)
    assert not (tmp_path / "solo").exists()


def test_up_names_a_port_in_use_and_starts_nothing(tmp_path: Path) -> None:
    import socket

    base = free_base_port(1, start=45000)
    config = ConsortiumConfig.from_dict({"base-port": base, "orderer-org": {"orderers": 1},
                                         "company": [{"name": "Solo"}]})
    net = Network(config, tmp_path / "busy")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", base + 110))
        holder.listen()

        with pytest.raises(NetworkError, match=f"{base + 110} \\(peer0.solo.fedledger\\).*--base-port"):
            net.up()

    assert not net.layout.state_file.exists()


def test_up_names_missing_binaries_and_how_to_build_them(tmp_path: Path) -> None:
    net = Network(ConsortiumConfig.load(base_port=free_base_port(3, start=50000)), tmp_path / "h",
                        bin_dir=tmp_path / "empty" / "bin")

    with pytest.raises(NetworkError, match="missing Fabric binaries.*peer.*scripts/install-fabric.sh"):
        net.up()


def test_a_failed_bring_up_stops_what_it_started_and_keeps_its_logs(tmp_path: Path) -> None:
    # Fabric's default orderer.yaml is broken here, so the bring-up fails after the CAs started.
    bad = tmp_path / "cache"
    (bad / "bin").mkdir(parents=True)
    (bad / "config").mkdir()
    cache = Path(os.environ.get("FEDLEDGER_CACHE", Path.home() / ".cache" / "fedledger"))
    for tool in ("fabric-ca-server", "orderer", "peer", "configtxgen", "osnadmin"):
        (bad / "bin" / tool).symlink_to(cache / "bin" / tool)
    (bad / "config" / "core.yaml").symlink_to(cache / "config" / "core.yaml")
    (bad / "config" / "orderer.yaml").write_text("General: {ListenPort: not-a-port}\n")
    config = ConsortiumConfig.from_dict({"base-port": free_base_port(1, start=47000), "orderer-org": {"orderers": 1},
                                         "company": [{"name": "Solo"}]})
    net = Network(config, tmp_path / "failed", bin_dir=bad / "bin")

    with pytest.raises(Exception):
        net.up()

    assert not net.layout.state_file.exists()
    assert list(net.layout.logs.iterdir())  # the logs that explain the failure stay
    leftover = subprocess.run(["pgrep", "-f", str(bad / "bin")], capture_output=True, text=True).stdout.split()
    assert leftover == []


def test_network_status_via_the_cli_prints_one_json_document(consortium: Consortium) -> None:
    done = subprocess.run([sys.executable, "-m", "fedledger.cli.app", "network", "status", "--json",
                           "--home", str(consortium.net.layout.home)], capture_output=True, text=True)

    assert done.returncode in (0, 3), done.stderr
    document = json.loads(done.stdout)
    assert {n["name"] for n in document["nodes"]} == {n.name for n in consortium.net.config.nodes()}


def test_up_on_a_half_started_network_names_the_cause_and_the_fix(tmp_path: Path) -> None:
    home = tmp_path / "half"
    home.mkdir()
    # What a bring-up killed part-way leaves: a state file not marked complete.
    (home / "network.json").write_text(json.dumps({"complete": False, "config": ConsortiumConfig.load().to_dict(),
                                                   "nodes": {}}))
    net = open_network(home)

    with pytest.raises(NetworkStateError, match="did not finish.*network down --purge"):
        net.up()
