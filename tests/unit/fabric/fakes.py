"""A scripted Gateway service and failed gRPC calls, for unit tests of the client's decisions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2
from google.protobuf import any_pb2

from fedledger.fabric.ca import Enrollment
from fedledger.fabric.client import STATUS_DETAILS_KEY, GatewayClient, Timeouts
from fedledger.fabric.contract import Contract


class FailedCall(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """A failed gRPC call as grpc raises it: a status code, its message, and trailing metadata."""

    def __init__(self, code: grpc.StatusCode, message: str, status_details: bytes | None = None) -> None:
        super().__init__(message)
        self._code, self._message = code, message
        self._metadata = ((STATUS_DETAILS_KEY, status_details),) if status_details is not None else ()

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> Any:
        return self._metadata

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def delimited(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(value)) + value


def rpc_status(code: int, message: str, details: list[any_pb2.Any]) -> bytes:
    """google.rpc.Status {int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3},
    encoded by hand so the tests do not share the client's definition of it."""
    return (varint(1 << 3 | 0) + varint(code) + delimited(2, message.encode())
            + b"".join(delimited(3, d.SerializeToString()) for d in details))


def packed(message: object) -> any_pb2.Any:
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return wrapper


def prepared_payload(*, tx_id: str = "t1", channel: str = "fedledger", name: str = "RegisterCompany",
                     result: bytes = b"ok", creator: bytes = b"") -> bytes:
    """A prepared transaction's payload as the gateway assembles it (``creator``: a serialized identity)."""
    action = proposal_pb2.ChaincodeAction(response=proposal_response_pb2.Response(status=200, payload=result))
    response_payload = proposal_response_pb2.ProposalResponsePayload(
        proposal_hash=b"h" * 32, extension=action.SerializeToString())
    spec = chaincode_pb2.ChaincodeInvocationSpec(chaincode_spec=chaincode_pb2.ChaincodeSpec(
        input=chaincode_pb2.ChaincodeInput(args=[name.encode(), b"arg"])))
    action_payload = transaction_pb2.ChaincodeActionPayload(
        chaincode_proposal_payload=proposal_pb2.ChaincodeProposalPayload(input=spec.SerializeToString())
        .SerializeToString(),
        action=transaction_pb2.ChaincodeEndorsedAction(proposal_response_payload=response_payload.SerializeToString()))
    transaction = transaction_pb2.Transaction(actions=[transaction_pb2.TransactionAction(
        header=b"signature header", payload=action_payload.SerializeToString())])
    channel_header = common_pb2.ChannelHeader(type=common_pb2.HeaderType.ENDORSER_TRANSACTION, channel_id=channel,
                                              tx_id=tx_id)
    header = common_pb2.Header(channel_header=channel_header.SerializeToString(),
                               signature_header=common_pb2.SignatureHeader(creator=creator).SerializeToString())
    return bytes(common_pb2.Payload(header=header, data=transaction.SerializeToString()).SerializeToString())


@dataclass
class FakeGateway:
    """The Gateway service, scripted: the height qscc reports, and each commit status in turn.

    A call named in ``fail`` raises that error instead of answering.
    """

    height: int = 0
    statuses: list[tuple[int, int]] = field(default_factory=list)  # (validation code, block number)
    fail: dict[str, grpc.RpcError] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def _called(self, name: str, request: Any) -> None:
        self.calls.append((name, request))
        if name in self.fail:
            raise self.fail[name]

    def Evaluate(self, request: Any, timeout: float) -> Any:
        self._called("Evaluate", request)
        payload = ledger_pb2.BlockchainInfo(height=self.height).SerializeToString()
        return gateway_pb2.EvaluateResponse(result=proposal_response_pb2.Response(status=200, payload=payload))

    def Endorse(self, request: Any, timeout: float) -> Any:
        self._called("Endorse", request)
        proposal = proposal_pb2.Proposal.FromString(request.proposed_transaction.proposal_bytes)
        creator = common_pb2.SignatureHeader.FromString(
            common_pb2.Header.FromString(proposal.header).signature_header).creator
        envelope = common_pb2.Envelope(payload=prepared_payload(tx_id=request.transaction_id,
                                                                channel=request.channel_id, creator=creator))
        return gateway_pb2.EndorseResponse(prepared_transaction=envelope)

    def Submit(self, request: Any, timeout: float) -> Any:
        self._called("Submit", request)
        return gateway_pb2.SubmitResponse()

    def CommitStatus(self, request: Any, timeout: float) -> Any:
        self._called("CommitStatus", request)
        code, block = self.statuses.pop(0)
        return gateway_pb2.CommitStatusResponse(result=code, block_number=block)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@contextmanager
def scripted(enrollment: Enrollment, fake: FakeGateway, *, signer: bool = True) -> Iterator[Contract]:
    """A contract whose gateway client talks to ``fake`` (``signer=False``: it signs nothing itself)."""
    channel = grpc.insecure_channel("127.0.0.1:1")  # never used: the stub is replaced
    client = GatewayClient(channel, address="127.0.0.1:1", identity=enrollment.identity,
                           signer=enrollment.signer if signer else None, timeouts=Timeouts())
    client._stub = fake
    try:
        yield Contract(client, channel_name="fedledger", chaincode_name="fedledger")
    finally:
        channel.close()
