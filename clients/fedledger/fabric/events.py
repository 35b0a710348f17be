"""Chaincode events: the stream the gateway serves, and checkpoints to resume it without repeats.

The gateway's ``ChaincodeEvents`` call streams, block by block in ascending order, the events a
chaincode set in valid transactions (one event per transaction at most). A stream starts at the
next block to commit, at a given block, or at a checkpoint: the block of the last processed event
and that event's transaction id, which the gateway skips up to and including. Processing code
calls :meth:`Checkpointer.checkpoint_chaincode_event` after handling each event, so a restart
resumes right after the last one handled.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import grpc
from fabric_protos.gateway import gateway_pb2
from fabric_protos.orderer import ab_pb2

from fedledger.errors import FabricError, GatewayError
from fedledger.fabric.client import GatewayClient


@dataclass(frozen=True)
class ChaincodeEvent:
    """An event a chaincode set in a committed, valid transaction."""

    block_number: int
    tx_id: str
    chaincode_name: str
    event_name: str
    payload: bytes


class Checkpointer(Protocol):
    """Where a chaincode-event listener has got to.

    ``block_number`` is the block to resume from (``None``: no checkpoint yet) and ``tx_id`` the
    last transaction processed within it (``None``: none of that block has been processed).
    """

    @property
    def block_number(self) -> int | None: ...

    @property
    def tx_id(self) -> str | None: ...

    def checkpoint_block(self, block_number: int) -> None:
        """Record that every event of ``block_number`` has been processed."""

    def checkpoint_chaincode_event(self, event: ChaincodeEvent) -> None:
        """Record that ``event`` (and every event before it) has been processed."""


class InMemoryCheckpointer:
    """A checkpoint held in memory: resumes a stream within one process."""

    def __init__(self) -> None:
        self._block_number: int | None = None
        self._tx_id: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(block_number={self._block_number}, tx_id={self._tx_id})"

    @property
    def block_number(self) -> int | None:
        return self._block_number

    @property
    def tx_id(self) -> str | None:
        return self._tx_id

    def checkpoint_block(self, block_number: int) -> None:
        if block_number < 0:
            raise FabricError(f"a block number cannot be negative, got {block_number}")
        self._set(block_number + 1, None)

    def checkpoint_chaincode_event(self, event: ChaincodeEvent) -> None:
        self._set(event.block_number, event.tx_id)

    def _set(self, block_number: int, tx_id: str | None) -> None:
        self._block_number, self._tx_id = block_number, tx_id


class FileCheckpointer(InMemoryCheckpointer):
    """A checkpoint kept in a JSON file (``{"block_number": ..., "tx_id": ...}``), so a listener can
    resume after a restart.

    Each checkpoint is written to a temporary file in the same directory, flushed to disk and
    renamed over the old one: a crash leaves the previous checkpoint or the new one, never a torn
    file.
    """

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            block_number, tx_id = document["block_number"], document["tx_id"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise FabricError(f"checkpoint file {self.path} is damaged ({err}); delete it to start from "
                              f"the start block again (events may then repeat)") from None
        if not isinstance(block_number, int) or isinstance(block_number, bool) or block_number < 0 \
                or not (tx_id is None or isinstance(tx_id, str)):
            raise FabricError(f"checkpoint file {self.path} is damaged (block_number {block_number!r}, "
                              f"tx_id {tx_id!r}); delete it to start from the start block again")
        super()._set(block_number, tx_id or None)

    def _set(self, block_number: int, tx_id: str | None) -> None:
        document = json.dumps({"block_number": block_number, "tx_id": tx_id}, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(document)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging, self.path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
        # The rename itself is durable only once the directory entry is on disk.
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        super()._set(block_number, tx_id)


def start_position(*, start_block: int | None, checkpointer: Checkpointer | None) -> tuple[Any, str]:
    """The ``SeekPosition`` and after-transaction id a chaincode events request starts from.

    A checkpoint wins over ``start_block``; with neither, the stream starts at the next block to
    commit. (The gateway accepts only "specified" and "next commit" positions.)
    """
    if checkpointer is not None and checkpointer.block_number is not None:
        position = ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=checkpointer.block_number))
        return position, checkpointer.tx_id or ""
    if start_block is not None:
        if start_block < 0:
            raise FabricError(f"a start block cannot be negative, got {start_block}")
        return ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=start_block)), ""
    return ab_pb2.SeekPosition(next_commit=ab_pb2.SeekNextCommit()), ""


def chaincode_events_request(creator: bytes, *, channel_name: str, chaincode_name: str,
                             start_block: int | None = None,
                             checkpointer: Checkpointer | None = None) -> bytes:
    """A serialized ``ChaincodeEventsRequest`` (the bytes the client signs)."""
    position, after_tx_id = start_position(start_block=start_block, checkpointer=checkpointer)
    return bytes(gateway_pb2.ChaincodeEventsRequest(
        channel_id=channel_name, chaincode_id=chaincode_name, identity=creator,
        start_position=position, after_transaction_id=after_tx_id,
    ).SerializeToString())


class ChaincodeEventStream:
    """An open stream of chaincode events: iterate it; :meth:`close` (or leave the ``with`` block) to
    cancel it. Iteration blocks until the next event; closing the stream or its gateway, from any
    thread, ends it."""

    def __init__(self, client: GatewayClient, *, channel_name: str, chaincode_name: str,
                 start_block: int | None = None, checkpointer: Checkpointer | None = None) -> None:
        request = chaincode_events_request(client.creator, channel_name=channel_name, chaincode_name=chaincode_name,
                                           start_block=start_block, checkpointer=checkpointer)
        signature = client.sign(request, f"the chaincode events request for {chaincode_name}")
        self._client = client
        self._operation = f"reading events of chaincode {chaincode_name} on channel {channel_name}"
        self._call = client.chaincode_events(gateway_pb2.SignedChaincodeEventsRequest(
            request=request, signature=signature))
        self._pending: collections.deque[ChaincodeEvent] = collections.deque()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"ChaincodeEventStream({self._operation!r}, {state})"

    def __iter__(self) -> Iterator[ChaincodeEvent]:
        return self

    def __next__(self) -> ChaincodeEvent:
        while not self._pending:
            if self._closed:
                raise StopIteration
            try:
                response = next(self._call)
            except StopIteration:
                self._closed = True
                raise
            except grpc.RpcError as err:
                cancelled = isinstance(err, grpc.Call) and err.code() == grpc.StatusCode.CANCELLED
                if self._closed or cancelled:
                    # Cancelled by close(), or by closing the gateway: the client ended it.
                    self._closed = True
                    raise StopIteration from None
                self._closed = True
                error: GatewayError = self._client.stream_error(err, self._operation)
                raise error from None
            block_number = int(response.block_number)
            for event in response.events:
                self._pending.append(ChaincodeEvent(
                    block_number=block_number, tx_id=str(event.tx_id), chaincode_name=str(event.chaincode_id),
                    event_name=str(event.event_name), payload=bytes(event.payload),
                ))
        return self._pending.popleft()

    def close(self) -> None:
        """Cancel the stream; iteration then stops (events already received are dropped)."""
        self._closed = True
        self._pending.clear()
        self._call.cancel()

    def __enter__(self) -> ChaincodeEventStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
