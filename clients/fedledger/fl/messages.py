"""The messages the coordinator and the companies' nodes exchange over Flower (the data plane).

Each carries a ``config`` record one way and a ``result`` record back. Ciphertexts, aggregates,
partial decryptions and models travel in them as bytes, and every receiver checks them against
the hashes on the ledger: Flower moves the bytes, Fabric vouches for them.
"""

from __future__ import annotations

from enum import StrEnum


class MessageType(StrEnum):
    """Flower message types (``query.*`` are Flower queries; ``train`` is Flower's train)."""

    HELLO = "query.hello"          # challenge -> company, signature by its ledger-recorded node key
    ELECT = "query.elect"          # to the committee: prove the VRF on the round's seed (recorded, verified)
    TRAIN = "train"                # global model -> encrypted update (recorded on the ledger)
    AGGREGATE = "query.aggregate"  # to a ranked leader: the fixed updates -> the aggregate (recorded)
    VERIFY = "query.verify"        # to the committee: updates + aggregate -> vote with a partial
    FINISH = "query.finish"        # to the leader: partials (or the master's opening) -> the new model
    RELEASE = "query.release"      # escrow, after a failover: re-seal the member's share to the new master
    DECRYPT = "query.decrypt"      # escrow, after a failover: the new master rebuilds the key and decrypts
    FEDAVG = "query.fedavg"        # plain-FedAvg yardstick, to nodes that opted in: model -> plain update
