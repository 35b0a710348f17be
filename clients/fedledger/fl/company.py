"""A company's handle on a running consortium: its identity, its Ledger, the artifact store.

Every Flower process (the ServerApp as the task's coordinator, each SuperNode's ClientApp as one
company) opens one of these from the network's home directory and the company's wallet label.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fabric_protos.common.ledger_pb2 import BlockchainInfo

from fedledger.errors import FabricError, NetworkStateError
from fedledger.fabric.ca import Enrollment
from fedledger.fabric.contract import Contract
from fedledger.fabric.gateway import Gateway, connect
from fedledger.fabric.ledger import Ledger
from fedledger.fabric.wallet import FileWallet
from fedledger.fl.artifacts import DirectoryStore


def wait_for_block(qscc: Contract, channel: str, msp_ids: Sequence[str], block: int, *, timeout: float = 30) -> None:
    """Wait until the peers of every org in ``msp_ids`` have committed block ``block``.

    Asks each org's peer for its chain height through the Gateway (system chaincode qscc), so a
    company that reads next through its own peer sees what was just written.
    """
    deadline = time.monotonic() + timeout
    for msp_id in msp_ids:
        while True:
            info = BlockchainInfo()
            info.ParseFromString(qscc.evaluate("GetChainInfo", [channel], endorsing_organizations=[msp_id]))
            if info.height > block:
                break
            if time.monotonic() > deadline:
                raise FabricError(f"{msp_id}'s peer has not committed block {block} within {timeout:.0f} s "
                                  f"(it is at height {info.height})")
            time.sleep(0.02)


@dataclass
class CompanySession:
    """One company connected to its own organization's peer."""

    name: str
    enrollment: Enrollment
    gateway: Gateway
    ledger: Ledger
    store: DirectoryStore
    org_msp_ids: tuple[str, ...] = field(default=())

    @classmethod
    def open(cls, home: Path | str, company: str, *, store: Path | str | None = None) -> CompanySession:
        """Connect ``company`` (a wallet label in ``home``'s wallet) through its org's peer."""
        home = Path(home)
        try:
            profile = json.loads((home / "connection.json").read_text())
        except FileNotFoundError:
            raise NetworkStateError(f"no network profile in {home}; run `fedledger network up`") from None
        enrollment = FileWallet(home / "wallet").get(company)
        orgs = profile["orgs"]
        org = next((o for o in orgs.values() if o["msp_id"] == enrollment.identity.msp_id), None)
        if org is None:
            raise NetworkStateError(f"{company}'s organization {enrollment.identity.msp_id} is not in this network")
        gateway = connect(org["peer"]["address"], identity=enrollment.identity, signer=enrollment.signer,
                          tls_root_certificates=Path(org["peer"]["tls_ca"]).read_bytes())
        msp_ids = tuple(sorted(o["msp_id"] for o in orgs.values()))
        network = gateway.network(profile["channel"])
        ledger = Ledger(network.contract(profile["chaincode"]),
                        after_commit=lambda block: wait_for_block(network.contract("qscc"), profile["channel"],
                                                                  msp_ids, block))
        return cls(company, enrollment, gateway, ledger, DirectoryStore(Path(store) if store else home / "artifacts"),
                   msp_ids)

    def close(self) -> None:
        self.gateway.close()

    def __enter__(self) -> CompanySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
