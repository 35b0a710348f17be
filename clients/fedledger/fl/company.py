"""A party's handle on a running consortium: its identity, its Ledger, its own artifact store.

Every Flower process (the ServerApp as the task's coordinator, each SuperNode's ClientApp as one
company) opens one of these from its own party home (``fl.party``) and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fabric_protos.common.ledger_pb2 import BlockchainInfo

from fedledger.errors import FabricError, NetworkStateError
from fedledger.fabric.ca import Enrollment
from fedledger.fabric.contract import Contract
from fedledger.fabric.gateway import Gateway, connect
from fedledger.fabric.ledger import Ledger
from fedledger.fl.artifacts import DirectoryStore
from fedledger.fl.party import PartyHome


def wait_for_block(qscc: Contract, channel: str, msp_ids: Sequence[str], block: int, *, timeout: float = 30) -> None:
    """Wait until the peers of every org in ``msp_ids`` have committed block ``block``.

    Asks each org's peer for its chain height through the Gateway (system chaincode qscc), all of
    them at once, so a company that reads next through any org's peer sees what was just written.
    """
    deadline = time.monotonic() + timeout

    def reached(msp_id: str) -> None:
        while True:
            info = BlockchainInfo()
            info.ParseFromString(qscc.evaluate("GetChainInfo", [channel], endorsing_organizations=[msp_id]))
            if info.height > block:
                return
            if time.monotonic() > deadline:
                raise FabricError(f"{msp_id}'s peer has not committed block {block} within {timeout:.0f} s "
                                  f"(it is at height {info.height})")
            time.sleep(0.02)

    with ThreadPoolExecutor(max_workers=max(1, len(msp_ids)), thread_name_prefix="wait-for-block") as pool:
        list(pool.map(reached, msp_ids))


@dataclass
class CompanySession:
    """One party connected to its own organization's peer, from its own home."""

    home: PartyHome
    name: str
    enrollment: Enrollment
    gateway: Gateway
    ledger: Ledger
    org_msp_ids: tuple[str, ...] = field(default=())

    @property
    def store(self) -> DirectoryStore:
        return self.home.store

    @classmethod
    def open(cls, home: PartyHome | Path | str) -> CompanySession:
        """Connect the party of ``home`` through its own org's peer (TLS root from its profile)."""
        home = home if isinstance(home, PartyHome) else PartyHome(home)
        profile = home.profile
        name = home.name
        enrollment = home.wallet.get(name)
        orgs = profile["orgs"]
        org = next((o for o in orgs.values() if o["msp_id"] == enrollment.identity.msp_id), None)
        if org is None:
            raise NetworkStateError(f"{name}'s organization {enrollment.identity.msp_id} is not in the network "
                                    f"profile of {home.root}")
        gateway = connect(org["peer"]["address"], identity=enrollment.identity, signer=enrollment.signer,
                          tls_root_certificates=str(org["peer"]["tls_ca_pem"]).encode())
        msp_ids = tuple(sorted(o["msp_id"] for o in orgs.values()))
        network = gateway.network(profile["channel"])
        # The commit status came from the party's own peer: the other orgs' peers are the ones to wait for.
        others = tuple(m for m in msp_ids if m != enrollment.identity.msp_id)
        ledger = Ledger(network.contract(profile["chaincode"]),
                        after_commit=lambda block: wait_for_block(network.contract("qscc"), profile["channel"],
                                                                  others, block))
        return cls(home, name, enrollment, gateway, ledger, msp_ids)

    def peer_gateways(self) -> dict[str, Gateway]:
        """A gateway to every organization's peer (from the profile), as this party: to read each
        org's copy of the ledger directly, as an auditor does. The caller closes them."""
        orgs = self.home.profile["orgs"]
        gateways: dict[str, Gateway] = {}
        try:
            for org in orgs.values():
                gateways[org["msp_id"]] = connect(org["peer"]["address"], identity=self.enrollment.identity,
                                                  signer=self.enrollment.signer,
                                                  tls_root_certificates=str(org["peer"]["tls_ca_pem"]).encode())
        except BaseException:
            for gateway in gateways.values():
                gateway.close()
            raise
        return gateways

    def close(self) -> None:
        self.gateway.close()

    def __enter__(self) -> CompanySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
