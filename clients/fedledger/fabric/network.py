"""A channel reached through a gateway: its contracts and its chaincode events."""

from __future__ import annotations

from fedledger.errors import FabricError
from fedledger.fabric.client import GatewayClient
from fedledger.fabric.contract import Contract
from fedledger.fabric.events import ChaincodeEventStream, Checkpointer


class Network:
    """One Fabric channel, as seen through the gateway connection that made it."""

    def __init__(self, client: GatewayClient, name: str) -> None:
        if not name:
            raise FabricError("a network needs a channel name")
        self._client = client
        self.name = name

    def __repr__(self) -> str:
        return f"Network({self.name!r})"

    def contract(self, chaincode_name: str, contract_name: str | None = None) -> Contract:
        """The chaincode ``chaincode_name`` (and, within it, the contract ``contract_name``)."""
        return Contract(self._client, channel_name=self.name, chaincode_name=chaincode_name,
                        contract_name=contract_name)

    def chaincode_events(self, chaincode_name: str, *, start_block: int | None = None,
                         checkpointer: Checkpointer | None = None) -> ChaincodeEventStream:
        """Stream the events ``chaincode_name`` sets in valid transactions, block by block.

        Parameters
        ----------
        chaincode_name
            The chaincode whose events to read.
        start_block
            The first block to read; by default the next block to commit.
        checkpointer
            Where a previous listener got to: when it holds a checkpoint, the stream resumes just
            after the last event it recorded (and ``start_block`` is ignored). The stream does not
            update it: call ``checkpointer.checkpoint_chaincode_event(event)`` once an event is handled.

        Returns
        -------
        ChaincodeEventStream
            An iterator of :class:`ChaincodeEvent`; close it (or use ``with``) to cancel.

        Raises
        ------
        GatewayError
            While iterating, when the gateway refuses or drops the stream.
        """
        return ChaincodeEventStream(self._client, channel_name=self.name, chaincode_name=chaincode_name,
                                    start_block=start_block, checkpointer=checkpointer)
