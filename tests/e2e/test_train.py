"""`fedledger train` end to end: 3 companies, HE + DP, every step on the real ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from fedledger.errors import GatewayError
from fedledger.fl.company import CompanySession
from fedledger.fl.artifacts import digest_of
from fedledger.node.settings import DEMO
from fedledger.privacy import RdpAccountant

from .conftest import CliNetwork

# Noise small enough that two rounds reliably learn (sigma * S / K = 0.13 per parameter of the
# average, against updates of ~0.5): at 0.3 the 62-parameter model's accuracy swung from 0.29 to 0.96.
NOISE_MULTIPLIER = 0.1
COMMON = ("--key-bits", "1024", "--epsilon", "1000", "--noise-multiplier", str(NOISE_MULTIPLIER),
          "--round-timeout", "120")


def write_task_file(path: Any, *, task_id: str, rounds: int, epsilon_budget: float, noise_multiplier: float,
                    min_participants: int = 2, extra: str = "") -> Any:
    """A TOML task file for the three demo companies, dealt by kmc, as a publisher writes one."""
    path.write_text(f'''
task-id = "{task_id}"
model = "breast-cancer-logreg"
rounds = {rounds}
participants = ["manufacturer-co", "warehouse-co", "carrier-co"]
committee = ["manufacturer-co", "warehouse-co", "carrier-co"]
dealer = "kmc"
leader-window-seconds = 10
threshold = 2
quorum = 2
min-participants = {min_participants}
{extra}epsilon-budget = {epsilon_budget}
delta = 0.00001
clip-norm = 4.0
noise-multiplier = {noise_multiplier}
key-bits = 1024
''')
    return path


# The README demo's own settings (record-level distributed DP at its epsilon), but a 1024-bit key:
# the key's size changes the time a round takes, not what it computes.
DEMO_ROUNDS = 5


@pytest.fixture(scope="module")
def trained(cli_network: CliNetwork) -> dict[str, Any]:
    done = cli_network.run("train", "--task-id", "e2e-train", "--reference", "--json", "--key-bits", "1024",
                           "--round-timeout", "120")
    return json.loads(done.stdout)


def test_the_demo_settings_give_a_model_within_3_points_of_training_without_privacy(
        cli_network: CliNetwork, trained: dict[str, Any]) -> None:
    rounds = trained["rounds"]

    assert [r["round"] for r in rounds] == list(range(DEMO_ROUNDS + 1))
    assert {r["privacy_unit"] for r in rounds} == {"record"}
    assert 0 < rounds[-1]["epsilon"] <= DEMO.epsilon_budget
    reference = trained["reference_accuracy"]
    assert len(reference) == DEMO_ROUNDS + 1 and reference[-1] > 0.9
    assert rounds[-1]["accuracy"] >= reference[-1] - 0.03, (rounds[-1]["accuracy"], reference[-1])


def test_the_final_model_matches_the_ledger(cli_network: CliNetwork, trained: dict[str, Any]) -> None:
    rounds = trained["rounds"]
    model = open(trained["model_path"], "rb").read()
    assert digest_of(model) == trained["model_sha256"] == rounds[-1]["model_sha256"]
    with CompanySession.open(cli_network.party("coordinator")) as session:
        assert session.ledger.get_round("e2e-train", DEMO_ROUNDS)["model_sha256"] == trained["model_sha256"]


def test_the_ledger_holds_every_update_aggregate_vote_model_hash_and_the_epsilon_spent(
        cli_network: CliNetwork, trained: dict[str, Any]) -> None:
    with CompanySession.open(cli_network.party("coordinator")) as session:
        ledger, store = session.ledger, session.store
        task = ledger.get_task("e2e-train")
        for entry in trained["rounds"][1:]:
            n = entry["round"]
            record = ledger.get_round("e2e-train", n)
            updates = ledger.list_updates("e2e-train", n)
            votes = ledger.list_votes("e2e-train", n)

            assert record["status"] == "closed"
            assert sorted(u["company"] for u in updates) == sorted(entry["included"]) and len(updates) == 3
            for update in updates:  # each recorded hash names a stored ciphertext of that size
                assert len(store.get(update["artifact_sha256"])) == update["size_bytes"]
            assert record["aggregate"]["sha256"] == entry["aggregate_sha256"]
            assert store.exists(record["aggregate"]["sha256"])
            assert {v["member"] for v in votes if v["valid"]} >= set(entry["decrypted_by"])
            assert record["decrypted_by"] == sorted(entry["decrypted_by"])
            assert record["model_sha256"] == entry["model_sha256"]
            # The leader is the first the election ranked that recorded the aggregate.
            assert record["aggregate"]["recorded_by"] == entry["leader"] in record["election"]["ranking"]
    dp = task["dp"]
    assert (dp["unit"], dp["noise_mode"], float(dp["sample_rate"])) == ("record", "distributed", DEMO.sample_rate)
    expected = RdpAccountant(noise_multiplier=float(dp["noise_multiplier"]), sample_rate=DEMO.sample_rate
                             ).epsilon_after(DEMO_ROUNDS, delta=1e-5)
    assert task["epsilon_spent_micro"] == pytest.approx(expected * 1e6, abs=1)
    assert expected == pytest.approx(trained["rounds"][-1]["epsilon"], abs=1e-9)
    assert task["status"] == "finished"


def test_the_coordinator_and_the_dealer_hold_no_key_and_no_share(cli_network: CliNetwork,
                                                                   trained: dict[str, Any]) -> None:
    coordinator, dealer = cli_network.party("coordinator"), cli_network.party("kmc")
    with CompanySession.open(coordinator) as session:
        task = session.ledger.get_task("e2e-train")
    assert "coordinator" not in task["committee"]
    assert task["he"]["dealer"] == "kmc" and "kmc" not in task["committee"] + task["participants"]
    for home in (coordinator, dealer):
        assert not (home / "keys").exists()
    # The dealer kept nothing: its home is its identity card, the public profile and its Fabric identity.
    files = sorted(str(p.relative_to(dealer)) for p in dealer.rglob("*") if p.is_file())
    assert files == ["party.json", "profile.json", "wallet/kmc/ca-chain.pem", "wallet/kmc/cert.pem",
                     "wallet/kmc/identity.json", "wallet/kmc/key.pem"]


def test_no_home_holds_another_partys_secret_and_no_file_holds_a_share(cli_network: CliNetwork,
                                                                      trained: dict[str, Any]) -> None:
    from fedledger.crypto import load_key_share, load_threshold_key
    from fedledger.fl.party import PartyHome

    parties = {p.name: p for p in (cli_network.home / "parties").iterdir()}
    secrets_of: dict[str, list[bytes]] = {}
    for name, root in parties.items():
        own = [(root / "wallet" / name / "key.pem").read_bytes()]
        own += [k.read_bytes() for k in (root / "keys").glob("*.key")] if (root / "keys").exists() else []
        secrets_of[name] = own
        for key_file in [root / "wallet" / name / "key.pem", *(root / "keys").glob("*")]:
            assert key_file.stat().st_mode & 0o077 == 0, f"{key_file} is readable by others"
    # Every member's share, opened here (the test plays each member in turn) to look for it on disk.
    with CompanySession.open(cli_network.party("coordinator")) as session:
        ledger = session.ledger
        task = ledger.get_task("e2e-train")
        public = load_threshold_key(ledger.get_threshold_key("e2e-train"))
        shares = {m: load_key_share(PartyHome(parties[m]).sealing_key().open(ledger.sealed_share("e2e-train", m)),
                                    public) for m in task["committee"]}
        recorded = {task["model"]["initial_weights_sha256"]}
        for n in range(1, DEMO_ROUNDS + 1):
            record = ledger.get_round("e2e-train", n)
            recorded |= {u["artifact_sha256"] for u in ledger.list_updates("e2e-train", n)}
            recorded |= {record["aggregate"]["sha256"], record["model_sha256"]}
            # Partial decryptions of the aggregate, each hashed into its member's vote.
            recorded |= {v["partial_sha256"] for v in ledger.list_votes("e2e-train", n) if v.get("partial_sha256")}
    share_texts = {m: (format(int(s.secret), "x").encode(), str(int(s.secret)).encode()) for m, s in shares.items()}

    for name, root in parties.items():
        for path in (p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            for other, secrets in secrets_of.items():
                if other != name:
                    assert not any(secret.strip() in data for secret in secrets), f"{path} holds {other}'s key"
            for member, texts in share_texts.items():
                assert not any(t in data for t in texts), f"{path} holds {member}'s key share"
        # Each party keeps only artifacts the ledger names: ciphertexts, aggregates, partial decryptions of
        # aggregates, models; never a plaintext update.
        for artifact in (root / "artifacts").rglob("*") if (root / "artifacts").exists() else []:
            if artifact.is_file():
                assert artifact.name in recorded, f"{artifact} is not an artifact the ledger records"


def _stop(run: subprocess.Popen[str]) -> None:
    """Stop a `fedledger train` that is still running as a user would (Ctrl-C), so it stops the Flower
    processes it started instead of leaving them to hold the next run's ports."""
    if run.poll() is None:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()


def _supernode_pid(company: str) -> int | None:
    found = subprocess.run(["pgrep", "-f", f'fedledger.node.supernode.*home=".*/{company}"'], capture_output=True, text=True)
    pids = [int(p) for p in found.stdout.split()]
    return pids[0] if pids else None


def test_a_company_killed_mid_round_does_not_stop_the_round_and_its_missing_update_is_on_the_ledger(
        cli_network: CliNetwork, trained: dict[str, Any]) -> None:
    run = cli_network.popen("train", "--task-id", "e2e-crash", "--rounds", "2", "--json", *COMMON)
    victim, killed = "", False

    def record(n: int) -> dict[str, Any]:
        try:
            return dict(session.ledger.get_round("e2e-crash", n))
        except GatewayError:  # not opened yet
            return {}

    def updates(n: int) -> list[Any]:
        return list(session.ledger.list_updates("e2e-crash", n)) if record(n) else []

    try:
        deadline = time.monotonic() + 600
        with CompanySession.open(cli_network.party("coordinator")) as session:
            # Freeze a company that does not lead round 1 once its round-1 vote is on the ledger:
            # its part of round 1 is done, and it cannot pick up round 2's training (a round takes
            # seconds now, so waiting for round 1 to close would race round 2's first update).
            while time.monotonic() < deadline and run.poll() is None and not victim:
                leader = record(1).get("leader", "")
                voted = {v["member"] for v in session.ledger.list_votes("e2e-crash", 1)} if leader else set()
                # (a round's leader is named once its collection closes, so its votes can be listed)
                victim = next((c for c in ("carrier-co", "warehouse-co", "manufacturer-co")
                               if c != leader and c in voted), "")
                time.sleep(0.05)
            assert victim, "no company other than round 1's leader voted on round 1"
            time.sleep(0.3)  # its reply on its way; round 2 is at least a close and an open away
            pid = _supernode_pid(victim)
            assert pid is not None, f"{victim}'s SuperNode is not running"
            os.killpg(pid, signal.SIGSTOP)
            # Kill it once round 2 is open and another company's update is in: it dies mid-round.
            while time.monotonic() < deadline and run.poll() is None and not updates(2):
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
            killed = record(2).get("status") == "open" and bool(updates(2))
        out, err = run.communicate(timeout=900)
    finally:
        _stop(run)
    assert killed, "round 2 never opened"
    assert run.returncode == 0, err[-3000:]

    with CompanySession.open(cli_network.party("coordinator")) as session:
        final = session.ledger.get_round("e2e-crash", 2)
        updates = session.ledger.list_updates("e2e-crash", 2)
    assert final["status"] == "closed"
    assert victim not in {u["company"] for u in updates} and len(updates) == 2
    assert victim not in final["aggregate"]["included"]
    assert json.loads(out)["rounds"][-1]["missing"] == [victim]


def test_the_plain_fedavg_yardstick_goes_through_the_same_nodes_as_the_reference_and_opens_no_round(
        cli_network: CliNetwork, trained: dict[str, Any]) -> None:
    done = cli_network.run("train", "--task-id", "e2e-plain", "--protocol", "plain-fedavg", "--rounds", "2",
                           "--reference", "--json", *COMMON)
    result = json.loads(done.stdout)
    rounds = result["rounds"]

    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert {r["protocol"] for r in rounds} == {"plain-fedavg"} and {r["epsilon"] for r in rounds} == {0.0}
    assert all(sorted(r["included"]) == ["carrier-co", "manufacturer-co", "warehouse-co"] for r in rounds[1:])
    assert all(r["seconds"]["round_wall"] > 0 and len(r["wire_bytes"]) == 3 for r in rounds[1:])
    # The same recipe as the in-process reference (local SGD, seeds, partition, FedAvg by samples),
    # through Flower: the same accuracies, up to the order of a float64 sum (at most one test case).
    reference = result["reference_accuracy"]
    assert rounds[-1]["accuracy"] > rounds[0]["accuracy"]
    assert max(abs(r["accuracy"] - a) for r, a in zip(rounds, reference)) <= 0.01, (rounds, reference)
    with CompanySession.open(cli_network.party("coordinator")) as session:
        task = session.ledger.get_task("e2e-plain")
        assert task["status"] == "active" and task["current_round"] == 0 and task["closed_rounds"] == 0
        assert session.store.get(result["model_sha256"]) == open(result["model_path"], "rb").read()


def test_task_create_from_a_file_then_task_and_round_show(cli_network: CliNetwork, trained: dict[str, Any],
                                                          tmp_path: Any) -> None:
    task_file = write_task_file(tmp_path / "task.toml", task_id="e2e-file", rounds=4, epsilon_budget=8.0,
                                noise_multiplier=2.0)

    created = json.loads(cli_network.run("task", "create", str(task_file), "--as", "coordinator", "--json").stdout)
    shown = json.loads(cli_network.run("task", "show", "e2e-file", "--json").stdout)
    rounds = json.loads(cli_network.run("round", "show", "e2e-train", "1", "--json").stdout)

    assert created == shown and shown["status"] == "awaiting-key" and shown["rounds"] == 4
    assert shown["dp"] == {"clip_norm": "4", "delta": "0.00001", "epsilon_budget": "8", "noise_mode": "distributed",
                           "noise_multiplier": "2", "unit": "record", "sample_rate": "1", "steps_per_round": 1,
                           "label_epsilon": "0"}
    assert rounds["round"]["status"] == "closed" and len(rounds["updates"]) == 3
    again = cli_network.run("task", "create", str(task_file), "--as", "coordinator", check=False)
    assert again.returncode == 1 and "task e2e-file already exists" in again.stderr


def test_a_malformed_task_file_is_refused_and_nothing_is_published(cli_network: CliNetwork, tmp_path: Any) -> None:
    task_file = tmp_path / "bad.toml"
    task_file.write_text('task-id = "e2e-bad"\nmodel = "breast-cancer-logreg"\nrounds = 2\nsurprise = 1\n')

    done = cli_network.run("task", "create", str(task_file), check=False)

    assert done.returncode == 1 and "unknown keys ['surprise']" in done.stderr
    shown = cli_network.run("task", "show", "e2e-bad", check=False)
    assert shown.returncode == 1 and "task e2e-bad" in shown.stderr


def test_audit_verify_passes_for_a_trained_task(cli_network: CliNetwork, trained: dict[str, Any]) -> None:
    clean = cli_network.run("audit", "verify", "e2e-train", "--json")
    report = json.loads(clean.stdout)
    assert report["ok"] and report["rounds"] == DEMO_ROUNDS
    checks = {f["check"] for f in report["findings"]}
    assert {"closing model derived from the partial decryptions", "aggregate includes exactly the fixed updates",
            "leader ranking is the sortition of the recorded VRF proofs",
            "epsilon booked matches the accountant"} <= checks


def _tamper_cases(session: CompanySession) -> dict[str, tuple[Any, str]]:
    """Each tampering of the coordinator's artifacts: (what it does to the store, the check it must fail)."""
    ledger, store = session.ledger, session.store
    updates = ledger.list_updates("e2e-train", 1)
    record = ledger.get_round("e2e-train", 2)
    votes = {v["member"]: v for v in ledger.list_votes("e2e-train", 2)}
    first, second = (store._path(u["artifact_sha256"]) for u in updates[:2])
    model = store._path(record["model_sha256"])
    aggregate = store._path(record["aggregate"]["sha256"])
    member = record["decrypted_by"][0]
    other = next(m for m in record["decrypted_by"] if m != member)
    partial = store._path(votes[member]["partial_sha256"])

    def flip(path: Any) -> None:
        data = path.read_bytes()
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))

    def swap() -> None:
        a, b = first.read_bytes(), second.read_bytes()
        first.write_bytes(b), second.write_bytes(a)

    return {
        "flip a byte in an update": (lambda: flip(first), f"update of {updates[0]['company']}"),
        "swap two companies' updates": (swap, f"update of {updates[1]['company']}"),
        "replace the aggregate with a subset's": (lambda: aggregate.write_bytes(first.read_bytes()), "aggregate"),
        "zero the model file": (lambda: model.write_bytes(bytes(len(model.read_bytes()))), "closing model"),
        "truncate the model file": (lambda: model.write_bytes(model.read_bytes()[:8]), "closing model"),
        "delete an update": (lambda: first.unlink(), f"update of {updates[0]['company']}"),
        "a partial decryption from the wrong share": (
            lambda: partial.write_bytes(store._path(votes[other]["partial_sha256"]).read_bytes()),
            "closing model derived"),
    }


def test_audit_verify_detects_every_tampering_of_the_artifacts(cli_network: CliNetwork,
                                                               trained: dict[str, Any]) -> None:
    with CompanySession.open(cli_network.party("coordinator")) as session:
        cases = _tamper_cases(session)
        root = session.store._path("0" * 64).parent.parent
    saved = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    missed = {}
    try:
        for name, (tamper, check) in cases.items():
            tamper()
            done = cli_network.run("audit", "verify", "e2e-train", "--json", check=False)
            failed = [f for f in json.loads(done.stdout)["findings"] if not f["ok"]]
            if done.returncode != 4 or not any(check in f["check"] for f in failed):
                missed[name] = (done.returncode, failed[:2])
            for path, data in saved.items():  # restore everything before the next case
                if not path.exists() or path.read_bytes() != data:
                    path.write_bytes(data)
    finally:
        for path, data in saved.items():
            if not path.exists() or path.read_bytes() != data:
                path.write_bytes(data)
    assert not missed, missed
    again = cli_network.run("audit", "verify", "e2e-train", "--json")
    assert json.loads(again.stdout)["ok"]  # no false positive once restored


def test_a_node_claiming_another_company_is_refused(cli_network: CliNetwork, trained: dict[str, Any]) -> None:
    import secrets as random

    from fedledger.fl.party import PartyHome
    from fedledger.fl.rounds import TaskPlan
    from fedledger.fl.server_app import check_hello

    warehouse = PartyHome(cli_network.party("warehouse-co")).node_key()
    carrier = PartyHome(cli_network.party("carrier-co")).node_key()
    challenge = random.token_bytes(32)
    with CompanySession.open(cli_network.party("coordinator")) as session:
        plan = TaskPlan.load(session.ledger, "e2e-train")

        honest = check_hello(session.ledger, plan, set(), "warehouse-co", challenge,
                             warehouse.sign_hello(challenge, "warehouse-co"))
        impostor = check_hello(session.ledger, plan, set(), "warehouse-co", challenge,
                               carrier.sign_hello(challenge, "warehouse-co"))
        replayed = check_hello(session.ledger, plan, set(), "warehouse-co", random.token_bytes(32),
                               warehouse.sign_hello(challenge, "warehouse-co"))
        outsider = check_hello(session.ledger, plan, set(), "kmc", challenge, carrier.sign_hello(challenge, "kmc"))

    assert honest == ""
    assert "does not verify against the node key warehouse-co recorded on the ledger" in impostor
    assert "does not verify" in replayed
    assert "takes no part in task e2e-train" in outsider


def test_a_supernode_whose_key_is_not_on_the_allow_list_is_refused_by_the_superlink(
        cli_network: CliNetwork, tmp_path: Any) -> None:
    from fedledger.fl.party import NodeKey, write_secret
    from fedledger.network.processes import running
    from fedledger.node.deployment import DeploymentError, FlowerDeployment
    from tests.integration.conftest import free_base_port

    deployment = FlowerDeployment(tmp_path / "coordinator", free_base_port(1, start=36000))
    impostor_home = tmp_path / "impostor"
    write_secret(impostor_home / "keys" / "node.key", NodeKey.generate().private_bytes())
    try:
        deployment.start_superlink()
        deployment.register_node("warehouse-co", NodeKey.generate().public_text)
        try:
            deployment.start_supernode("impostor", home=impostor_home,
                                       node_key=impostor_home / "keys" / "node.key", index=1,
                                       node_config={"home": str(impostor_home)})
        except DeploymentError:
            pass  # refused so fast that it exited before its own runtime API listened: the log says why
        pid, executable = deployment.processes[-1]
        deadline = time.monotonic() + 60
        while running(pid, executable) and time.monotonic() < deadline:
            time.sleep(0.2)
        exited = not running(pid, executable)
    finally:
        deployment.stop()
    log = (impostor_home / "flower" / "logs" / "supernode.log").read_text()
    assert exited, "the impostor's SuperNode is still running"
    assert "Failed to activate SuperNode" in log, log[-2000:]


def test_escrow_custody_survives_the_masters_death_by_failover_to_the_next_member(
        cli_network: CliNetwork, trained: dict[str, Any]) -> None:
    run = cli_network.popen("train", "--task-id", "e2e-escrow", "--rounds", "2", "--custody", "escrow", "--json",
                            *COMMON)
    killed = False
    try:
        deadline = time.monotonic() + 600
        with CompanySession.open(cli_network.party("coordinator")) as session:
            def status(n: int) -> str:
                try:
                    return str(session.ledger.get_round("e2e-escrow", n)["status"])
                except GatewayError:
                    return ""

            # The master (warehouse-co, the second company) decrypts round 1, then its node dies before
            # round 2. If the election made it round 1's leader too, it dies just after closing the
            # round, before its answer reaches the coordinator, which then re-derives the model.
            while time.monotonic() < deadline and run.poll() is None and status(1) != "closed":
                time.sleep(0.1)
            assert session.ledger.get_task("e2e-escrow")["master"] == "warehouse-co"
            pid = _supernode_pid("warehouse-co")
            assert pid is not None, "warehouse-co's SuperNode is not running"
            os.killpg(pid, signal.SIGKILL)
            killed = True
        out, err = run.communicate(timeout=900)
    finally:
        _stop(run)
    assert killed
    assert run.returncode == 0, err[-3000:]

    with CompanySession.open(cli_network.party("coordinator")) as session:
        task = session.ledger.get_task("e2e-escrow")
        releases = session.ledger.list_escrow_releases("e2e-escrow")
        record = session.ledger.get_round("e2e-escrow", 2)
    assert task["he"]["key_custody"] == "escrow" and task["status"] == "finished"
    assert task["master"] == "carrier-co", json.loads(out)["failed_rounds"]
    assert [h["master"] for h in task["master_history"]][-1:] == ["carrier-co"]
    assert {(r["member"], r["master"]) for r in releases} == {("manufacturer-co", "carrier-co")}
    assert record["status"] == "closed"
    rounds = json.loads(out)["rounds"]
    assert rounds[2]["failovers"][0]["from"] == "warehouse-co" and rounds[2]["decrypted_by"] == ["carrier-co"]
    assert rounds[-1]["accuracy"] > rounds[0]["accuracy"] + 0.1


def test_when_the_elected_leaders_node_dies_the_next_ranked_aggregates_and_the_first_is_penalised(
        cli_network: CliNetwork, trained: dict[str, Any]) -> None:
    from fedledger.crypto.sortition import Candidate, select
    from fedledger.fl.rounds import TaskPlan, election_input

    run = cli_network.popen("train", "--task-id", "e2e-leader", "--rounds", "2", "--json", *COMMON)
    killed = ""
    try:
        deadline = time.monotonic() + 600
        with CompanySession.open(cli_network.party("coordinator")) as session:
            ledger = session.ledger

            def record(n: int) -> dict[str, Any]:
                try:
                    return dict(ledger.get_round("e2e-leader", n))
                except GatewayError:
                    return {}

            while time.monotonic() < deadline and run.poll() is None and record(1).get("status") != "closed":
                time.sleep(0.1)
            nodes = {c: _supernode_pid(c) for c in ("manufacturer-co", "warehouse-co", "carrier-co")}
            # Kill round 2's first-ranked leader the moment collection closes: every update (its own
            # included) has reached the coordinator, and it has not yet had the time to aggregate
            # (a message to its node and a block at least). The proofs are all in by then; the
            # members prove and train in one message, so killing it any earlier could lose its
            # recorded update's ciphertext and fail the round instead.
            while time.monotonic() < deadline and run.poll() is None and record(2).get("status") != "collected":
                time.sleep(0.01)
            collected = record(2)
            killed = collected["election"]["ranking"][0]
            pid = nodes[killed]
            assert pid is not None and collected["status"] == "collected", collected
            os.killpg(pid, signal.SIGKILL)
            # The ranking is the one anyone works out from the ledger: the proofs, keys and stakes.
            proofs = ledger.list_election_proofs("e2e-leader", 2)
            task = ledger.get_task("e2e-leader")
            drawn = select([Candidate(p["member"], bytes.fromhex(ledger.get_company(p["member"])["vrf_key"]),
                                      bytes.fromhex(p["proof"]), task["stakes"][p["member"]])
                            for p in proofs], alpha=election_input(TaskPlan.load(ledger, "e2e-leader"), collected),
                           committee_size=len(proofs) - 1)
            assert drawn.leader == killed and len(proofs) == len(task["committee"])
        out, err = run.communicate(timeout=900)
    finally:
        _stop(run)
    assert killed
    assert run.returncode == 0, err[-3000:]

    with CompanySession.open(cli_network.party("coordinator")) as session:
        final = session.ledger.get_round("e2e-leader", 2)
        company = session.ledger.get_company(killed)
    election = final["election"]
    successor = election["ranking"][1]
    assert final["status"] == "closed" and election["ranking"][0] == killed
    assert final["aggregate"]["recorded_by"] == successor == final["leader"]
    assert [(f["failed"], f["rank"], f["successor"]) for f in election["failovers"]] == [(killed, 1, successor)]
    assert {"company": killed, "duty": "leader slot", "amount": 50} in final["standing"]["penalties"]
    assert company["reputation"] < 1000
    rounds = json.loads(out)["rounds"]
    assert rounds[2]["leader"] == successor and rounds[2]["leader_failovers"][0]["failed"] == killed


def test_a_task_run_by_the_coordinator_with_each_company_starting_its_own_node(
        cli_network: CliNetwork, trained: dict[str, Any], tmp_path: Any) -> None:
    from tests.integration.conftest import free_base_port

    task_file = write_task_file(tmp_path / "by-hand.toml", task_id="e2e-by-hand", rounds=1, min_participants=3, extra="max-weight = 200\n", epsilon_budget=1000.0,
                                noise_multiplier=NOISE_MULTIPLIER)
    cli_network.run("task", "create", str(task_file), "--as", "coordinator")
    cli_network.run("node", "deal", "e2e-by-hand", "--as", "kmc")
    port = free_base_port(1, start=37000)
    progress = tmp_path / "coordinator.log"
    with open(progress, "w") as log:
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "fedledger.cli.app", "task", "run", "e2e-by-hand", "--as", "coordinator", "--home",
             str(cli_network.home), "--listen", f"127.0.0.1:{port}", "--round-timeout", "120", "--json"],
            stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    ca = cli_network.party("coordinator") / "runs" / "e2e-by-hand" / "flower" / "tls" / "ca.crt"
    nodes: list[subprocess.Popen[Any]] = []
    try:
        # The companies start their nodes once the coordinator says its SuperLink admits them.
        deadline = time.monotonic() + 120
        while "admits" not in progress.read_text() and time.monotonic() < deadline and coordinator.poll() is None:
            time.sleep(0.2)
        for index, company in enumerate(("manufacturer-co", "warehouse-co", "carrier-co")):
            # Each company's own command; its SuperNode logs to a file (a pipe nobody reads would fill).
            with open(tmp_path / f"{company}.log", "w") as log:
                nodes.append(subprocess.Popen(
                    [sys.executable, "-m", "fedledger.cli.app", "node", "start", "--as", company, "--home",
                     str(cli_network.home), "--superlink", f"127.0.0.1:{port}", "--superlink-ca", str(ca),
                     "--port", str(port + 10 + index), "--partition-id", str(index), "--num-partitions", "3"],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        out, _ = coordinator.communicate(timeout=600)
    finally:
        for process in [coordinator, *nodes]:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            process.wait(timeout=30)
    err = progress.read_text()
    assert coordinator.returncode == 0, err[-3000:]
    rounds = json.loads(out)["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    with CompanySession.open(cli_network.party("coordinator")) as session:
        record = session.ledger.get_round("e2e-by-hand", 1)
    assert record["model_sha256"] == rounds[1]["model_sha256"]
    assert rounds[1]["leader"] == record["aggregate"]["recorded_by"] in record["election"]["ranking"]


def test_cifar10_trains_from_a_dataset_path_the_user_gives(cli_network: CliNetwork, tmp_path: Any) -> None:
    from tests.unit.fl.test_data import write_cifar

    write_cifar(tmp_path / "cifar-10-batches-py", per_batch=24)  # 120 train and 24 test images, CIFAR's format
    done = cli_network.run("train", "--task-id", "e2e-cifar", "--model", "cifar10-cnn", "--data", str(tmp_path),
                           "--rounds", "1", "--json", *COMMON)
    run = json.loads(done.stdout)

    assert [r["round"] for r in run["rounds"]] == [0, 1]
    assert len(run["rounds"][1]["included"]) == 3
    # 65,962 float32 parameters: the CNN for 3 x 32 x 32 images, trained by every company on its part.
    assert os.path.getsize(run["model_path"]) == 65_962 * 4
    with CompanySession.open(cli_network.party("coordinator")) as session:
        assert session.ledger.get_round("e2e-cifar", 1)["model_sha256"] == run["model_sha256"]
    refused = cli_network.run("train", "--task-id", "e2e-cifar-nopath", "--model", "cifar10-cnn", "--rounds", "1",
                              *COMMON, check=False)
    assert refused.returncode != 0 and "needs a data path" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_local_dp_sgd_with_label_noise_books_both_and_each_company_reports_its_epsilon(
        cli_network: CliNetwork) -> None:
    done = cli_network.run("train", "--task-id", "e2e-local", "--noise-mode", "local", "--steps-per-round", "4",
                           "--sample-rate", "0.1", "--lr", "0.5", "--label-epsilon", "2", "--rounds", "2",
                           "--epsilon", "20", "--json", "--key-bits", "1024", "--round-timeout", "120")
    run = json.loads(done.stdout)
    with CompanySession.open(cli_network.party("coordinator")) as session:
        dp = session.ledger.get_task("e2e-local")["dp"]
    assert (dp["unit"], dp["noise_mode"], dp["steps_per_round"], dp["label_epsilon"]) == ("record", "local", 4, "2")
    sigma = float(dp["noise_multiplier"])
    with_labels = RdpAccountant(noise_multiplier=sigma, sample_rate=0.1, steps_per_round=4, label_epsilon=2.0)
    without = RdpAccountant(noise_multiplier=sigma, sample_rate=0.1, steps_per_round=4)
    final = run["rounds"][-1]
    assert final["epsilon"] == pytest.approx(with_labels.epsilon_after(2, delta=1e-5), abs=1e-9)
    assert final["epsilon"] > without.epsilon_after(2, delta=1e-5)
    # Each company's own (Opacus) accountant over its 8 steps: equal to the DP-SGD part the ledger books.
    assert sorted(final["company_epsilons"]) == ["carrier-co", "manufacturer-co", "warehouse-co"]
    for epsilon in final["company_epsilons"].values():
        assert epsilon == pytest.approx(without.epsilon_after(2, delta=1e-5), abs=1e-6)
    # Labels were randomized once for the task and kept in each company's own home, readable by it alone.
    for company in ("carrier-co", "manufacturer-co", "warehouse-co"):
        kept = cli_network.party(company) / "tasks" / "e2e-local" / "labels.i64"
        assert kept.exists() and (kept.stat().st_mode & 0o077) == 0
