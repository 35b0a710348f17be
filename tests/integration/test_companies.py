"""`fedledger company` as an operator runs it against the running consortium."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fedledger.errors import EndorseError, GatewayError
from fedledger.fabric.gateway import connect
from fedledger.fabric.wallet import FileWallet

from .conftest import Consortium


def cli(consortium: Consortium, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedledger.cli.app", "company", *args,
                           "--home", str(consortium.net.layout.home)], capture_output=True, text=True, timeout=120)


def contract_as(consortium: Consortium, name: str, via_org: str):  # type: ignore[no-untyped-def]
    enrollment = FileWallet(consortium.net.layout.home / "wallet").get(name)
    peer = consortium.org(via_org)["peer"]
    assert isinstance(peer, dict)
    gateway = connect(str(peer["address"]), identity=enrollment.identity, signer=enrollment.signer,
                      tls_root_certificates=Path(peer["tls_ca"]).read_bytes())
    return gateway, gateway.network(consortium.channel).contract(consortium.chaincode)


def test_companies_enrolled_in_two_orgs_are_recorded_and_can_transact(consortium: Consortium) -> None:
    for name, org in (("northwind", "Manufacturer"), ("tailspin", "Warehouse")):
        done = cli(consortium, "enroll", name, "--org", org, "--role", "participant", "--json")
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        assert document["ledger"]["msp_id"] == f"{org}MSP" and document["ledger"]["status"] == "active"
        assert document["roles"] == "participant"

        gateway, contract = contract_as(consortium, name, org)
        with gateway:
            who = json.loads(contract.evaluate("WhoAmI"))
        assert who["msp_id"] == f"{org}MSP" and who["roles"] == ["participant"]

    listed = json.loads(cli(consortium, "list", "--json").stdout)["companies"]
    assert {"northwind", "tailspin"} <= {c["name"] for c in listed if c["in_operator_wallet"]}
    assert all("PRIVATE" not in json.dumps(c) for c in listed)


def test_the_wallet_keeps_each_private_key_readable_by_its_owner_only(consortium: Consortium) -> None:
    assert cli(consortium, "enroll", "fabrikam", "--org", "Carrier", "--role", "committee").returncode == 0

    key = consortium.net.layout.home / "wallet" / "fabrikam" / "key.pem"

    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_revoked_company_is_refused_by_the_peers_and_marked_on_the_ledger(consortium: Consortium) -> None:
    assert cli(consortium, "enroll", "contoso", "--org", "Warehouse", "--role", "participant").returncode == 0
    gateway, contract = contract_as(consortium, "contoso", "Warehouse")
    with gateway:
        contract.evaluate("WhoAmI")  # works before revocation

    done = cli(consortium, "revoke", "contoso", "--json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"name": "contoso", "revoked": True, "ledger_record": True}
    gateway, contract = contract_as(consortium, "contoso", "Warehouse")
    with gateway, pytest.raises(EndorseError, match="access denied"):
        contract.submit("RegisterCompany", ["contoso-again", "participant", "00" * 32])
    # Refused by every org's peer, not just its own.
    gateway, contract = contract_as(consortium, "contoso", "Carrier")
    with gateway, pytest.raises(GatewayError, match="access denied"):
        contract.evaluate("WhoAmI")
    shown = json.loads(cli(consortium, "show", "contoso", "--json").stdout)
    assert shown["ledger"]["status"] == "revoked"


@pytest.mark.parametrize(("args", "message"), [
    (("enroll", "initech", "--org", "Bank", "--role", "participant"), "no company 'Bank' in the consortium"),
    (("enroll", "initech", "--org", "Carrier", "--role", "auditor"), "roles 'auditor' are invalid"),
    (("enroll", "Initech!", "--org", "Carrier", "--role", "participant"), "company name 'Initech!' is invalid"),
    (("show", "nobody"), "company nobody is not registered on the ledger"),
    (("revoke", "nobody"), "company nobody is not registered on the ledger"),
    (("register", "initech", "--org", "Carrier", "--role", "auditor"), "roles 'auditor' are invalid"),
])
def test_bad_company_commands_say_what_was_wrong_and_change_nothing(
        consortium: Consortium, args: tuple[str, ...], message: str) -> None:
    wallet = sorted(p.name for p in (consortium.net.layout.home / "wallet").glob("*")) \
        if (consortium.net.layout.home / "wallet").exists() else []

    done = cli(consortium, *args)

    assert done.returncode == 1
    assert message in done.stderr
    after = sorted(p.name for p in (consortium.net.layout.home / "wallet").glob("*")) \
        if (consortium.net.layout.home / "wallet").exists() else []
    assert after == wallet


def test_enrolling_a_name_already_enrolled_in_another_org_is_refused(consortium: Consortium) -> None:
    assert cli(consortium, "enroll", "globex", "--org", "Manufacturer", "--role", "participant").returncode == 0

    done = cli(consortium, "enroll", "globex", "--org", "Carrier", "--role", "participant")

    assert done.returncode == 1
    assert "already enrolled in ManufacturerMSP" in done.stderr


def test_an_unreachable_peer_and_a_wrong_chaincode_name_are_named(consortium: Consortium) -> None:
    identity, signer = consortium.identity("Manufacturer")
    peer = consortium.org("Manufacturer")["peer"]
    assert isinstance(peer, dict)
    root = Path(peer["tls_ca"]).read_bytes()

    with connect("127.0.0.1:9", identity=identity, signer=signer, tls_root_certificates=root) as gateway:
        with pytest.raises(GatewayError, match="127.0.0.1:9"):
            gateway.network(consortium.channel).contract(consortium.chaincode).evaluate("Version")
    with connect(str(peer["address"]), identity=identity, signer=signer, tls_root_certificates=root) as gateway:
        with pytest.raises(GatewayError, match="nosuchcc"):
            gateway.network(consortium.channel).contract("nosuchcc").evaluate("Version")
        with pytest.raises(GatewayError, match="nosuchchannel"):
            gateway.network("nosuchchannel").contract(consortium.chaincode).evaluate("Version")


def test_a_party_registered_by_its_org_joins_from_its_own_home_with_the_public_profile(
        consortium: Consortium, tmp_path: Path) -> None:
    home = str(consortium.net.layout.home)
    registered = cli(consortium, "register", "umbrella", "--org", "Warehouse", "--role", "committee,participant")
    assert registered.returncode == 0, registered.stderr
    profile = tmp_path / "profile.json"
    exported = subprocess.run([sys.executable, "-m", "fedledger.cli.app", "network", "profile", "--home", home,
                               "--out", str(profile)], capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    assert "PRIVATE KEY" not in profile.read_text()

    party = tmp_path / "umbrella-home"
    joined = subprocess.run([sys.executable, "-m", "fedledger.cli.app", "node", "init", "--home", str(party),
                             "--name", "umbrella", "--org", "Warehouse", "--profile", str(profile), "--secret-stdin",
                             "--json"], input=registered.stdout, capture_output=True, text=True, timeout=120)
    assert joined.returncode == 0, joined.stderr
    record = json.loads(joined.stdout)
    assert record["msp_id"] == "WarehouseMSP" and record["roles"] == ["committee", "participant"]
    assert len(record["encryption_key"]) == 64 and record["node_key"].startswith("ecdsa-sha2-nistp384 ")
    for secret in (party / "wallet" / "umbrella" / "key.pem", party / "keys" / "sealing.key", party / "keys" / "node.key"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert not (consortium.net.layout.home / "wallet" / "umbrella").exists()
    listed = {c["name"]: c for c in json.loads(cli(consortium, "list", "--json").stdout)["companies"]}
    assert listed["umbrella"]["keys_recorded"] and not listed["umbrella"]["in_operator_wallet"]

    again = subprocess.run([sys.executable, "-m", "fedledger.cli.app", "node", "init", "--home", str(tmp_path / "x"),
                            "--name", "umbrella", "--org", "Warehouse", "--profile", str(profile), "--secret-stdin"],
                           input=registered.stdout, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "Authentication failure" in again.stderr
