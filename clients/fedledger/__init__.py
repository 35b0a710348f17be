"""FedLedger: federated learning among companies, recorded on a Hyperledger Fabric ledger."""

__version__ = "0.1.0"
