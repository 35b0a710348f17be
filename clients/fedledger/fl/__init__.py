"""Federated training on the ledger (the Flower app comes with issue 6); today: the artifact store."""

from fedledger.fl.artifacts import ArtifactStore, DirectoryStore

__all__ = ["ArtifactStore", "DirectoryStore"]
