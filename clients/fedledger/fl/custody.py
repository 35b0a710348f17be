"""Who can decrypt a task's aggregates, and how the key gets there: threshold or escrow custody.

The **dealer** (a party with no other role in the task) generates the key and records it with
``DealKey``, each secret sealed to the X25519 key its holder recorded on the ledger, and keeps
nothing:

- **threshold** custody (default): a t-of-n threshold Paillier key; each committee member's share
  is sealed to it; any t members' partial decryptions, with their proofs, decrypt an aggregate.
- **escrow** custody (paper 000): a plain Paillier key; the **master** (a committee member) gets the
  private key sealed to it and decrypts alone, proving each decryption by opening the
  ciphertexts; its factor is Shamir-shared t-of-n over the committee, each share sealed to its
  member. If the master fails, the publisher records a failover on the ledger, t members re-seal
  their escrow shares to the new master (``ReleaseEscrowShare``), and it rebuilds the key.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from enum import StrEnum

from fedledger.crypto import (
    EscrowRecord,
    PublicKey,
    ThresholdPublicKey,
    deal_threshold_key,
    dump_escrow_record,
    dump_escrow_share,
    dump_key_share,
    dump_private_key,
    dump_threshold_key,
    escrow_private_key,
    generate_keypair,
    load_escrow_record,
    load_escrow_share,
    load_private_key,
    load_threshold_key,
    recover_private_key,
)
from fedledger.crypto.paillier import PrivateKey
from fedledger.crypto.sealing import SealingKey, seal
from fedledger.errors import FedLedgerError, MalformedCiphertextError
from fedledger.fabric.ledger import Ledger, SealedShare
from fedledger.fl.artifacts import digest_of


class Custody(StrEnum):
    """How a task's decryption key is held (the genesis's ``he.key_custody``)."""

    THRESHOLD = "threshold"
    ESCROW = "escrow"


class CustodyError(FedLedgerError):
    """A key, share or release does not fit the task's custody, or cannot be opened or rebuilt."""


@dataclass(frozen=True)
class TaskKey:
    """The public side of a task's key, as the dealer recorded it on the ledger."""

    custody: Custody
    public_key: PublicKey
    threshold: ThresholdPublicKey | None = None
    escrow: EscrowRecord | None = None


def dump_escrow_key(public_key: PublicKey, record: EscrowRecord) -> bytes:
    """An escrow task's public key document: the Paillier public key and the escrow's commitments."""
    return json.dumps({"custody": "escrow", "escrow": json.loads(dump_escrow_record(record)),
                       "public_key": public_key.to_dict()}, sort_keys=True, separators=(",", ":")).encode()


def load_task_key(custody: Custody, data: bytes) -> TaskKey:
    """Parse the key document ``GetThresholdKey`` returns, for a task of the given custody."""
    if custody is Custody.THRESHOLD:
        threshold = load_threshold_key(data)
        return TaskKey(custody, threshold.public_key, threshold=threshold)
    try:
        document = json.loads(data)
        if not isinstance(document, dict) or set(document) != {"custody", "escrow", "public_key"} \
                or document["custody"] != "escrow":
            raise ValueError("expected exactly custody (escrow), escrow and public_key")
        public_key = PublicKey.from_dict(document["public_key"])
    except (ValueError, TypeError, KeyError) as err:
        raise MalformedCiphertextError(f"the escrow key document does not parse: {err}") from None
    record = load_escrow_record(json.dumps(document["escrow"], sort_keys=True, separators=(",", ":")).encode(),
                                public_key)
    return TaskKey(custody, public_key, escrow=record)


def deal_key(ledger: Ledger, task_id: str) -> str:
    """The dealer's step: generate the task's key, seal every secret to its holder, record it all.

    Secrets live only in this call's memory. Share i goes to the i-th committee member of the
    genesis. Returns the ``DealKey`` transaction id.
    """
    from fedledger.fl.rounds import Description

    task = ledger.get_task(task_id)
    committee = list(task["committee"])
    keys: dict[str, str] = {}
    for member in committee:
        key = str(ledger.get_company(member).get("encryption_key", ""))
        if not key:
            raise CustodyError(f"committee member {member} has recorded no encryption key on the ledger; it must "
                               "initialise its node (`fedledger node init`) before the key can be dealt")
        keys[member] = key
    key_bits = Description.from_json(task["model"]["description"]).key_bits
    he = task["he"]
    if Custody(he["key_custody"]) is Custody.THRESHOLD:
        public, shares = deal_threshold_key(threshold=he["threshold"], parties=len(committee), key_bits=key_bits)
        sealed = [SealedShare(m, seal(keys[m], dump_key_share(s)), s.digest()) for m, s in zip(committee, shares)]
        return ledger.deal_key(task_id, paillier_n=format(int(public.public_key.n), "x"),
                               public_key=dump_threshold_key(public), shares=sealed)
    public_key, private_key = generate_keypair(key_bits=key_bits)
    record, escrow_shares = escrow_private_key(private_key, threshold=he["threshold"], parties=len(committee))
    sealed = [SealedShare(m, seal(keys[m], dump_escrow_share(s)), s.digest())
              for m, s in zip(committee, escrow_shares)]
    master = str(he.get("master", ""))
    secret = dump_private_key(private_key)
    master_key = SealedShare(master, seal(keys[master], secret), digest_of(secret))
    return ledger.deal_key(task_id, paillier_n=format(int(public_key.n), "x"),
                           public_key=dump_escrow_key(public_key, record), shares=sealed, master_key=master_key)


def master_private_key(ledger: Ledger, task_key: TaskKey, task_id: str, *, member: str,
                       sealing: SealingKey) -> PrivateKey:
    """The escrow master's private key, for ``member`` as the task's current master.

    The original master opens the key the dealer sealed to it; a master named by a failover
    rebuilds it from t escrow shares: its own and those released (re-sealed) to it on the ledger,
    each checked against the commitment recorded at dealing.
    """
    if task_key.escrow is None:
        raise CustodyError(f"task {task_id} is not under escrow custody")
    record = ledger.get_master_key_record(task_id)
    if record["master"] == member:
        secret = sealing.open(ledger.sealed_master_key(task_id))
        if digest_of(secret) != record["key_sha256"]:
            raise CustodyError(f"the master key sealed to {member} does not match the hash the dealer recorded")
        return load_private_key(secret, task_key.public_key)
    shares = [load_escrow_share(sealing.open(ledger.sealed_share(task_id, member)), task_key.escrow)]
    for release in ledger.list_escrow_releases(task_id):
        if release["master"] == member and release["member"] != member:
            sealed = base64.b64decode(release["sealed_share"], validate=True)
            shares.append(load_escrow_share(sealing.open(sealed), task_key.escrow))
    if len(shares) < task_key.escrow.threshold:
        raise CustodyError(f"{member} holds {len(shares)} escrow shares of task {task_id}; "
                           f"{task_key.escrow.threshold} are needed to rebuild the master key")
    return recover_private_key(task_key.public_key, task_key.escrow, shares)


def release_escrow_share(ledger: Ledger, task_key: TaskKey, task_id: str, *, member: str, master: str,
                         sealing: SealingKey) -> str:
    """A committee member re-seals its escrow share to the master the ledger now names, and records it."""
    if task_key.escrow is None:
        raise CustodyError(f"task {task_id} is not under escrow custody")
    raw = sealing.open(ledger.sealed_share(task_id, member))
    share = load_escrow_share(raw, task_key.escrow)
    record = ledger.get_key_share_record(task_id, member)
    if share.digest() != record["share_sha256"]:
        raise CustodyError(f"the escrow share sealed to {member} does not match its commitment on the ledger")
    master_key = str(ledger.get_company(master).get("encryption_key", ""))
    return ledger.release_escrow_share(task_id, master=master, sealed_share=seal(master_key, raw),
                                       share_sha256=share.digest())
