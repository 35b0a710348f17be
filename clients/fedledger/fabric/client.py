"""The gRPC client of one Fabric Gateway peer: its stub, timeouts, signing, and typed errors.

Every call to the Gateway service goes through :class:`GatewayClient`, which turns a failed gRPC
call into a :class:`~fedledger.errors.GatewayError` of the stage that failed. The gateway attaches
a ``google.rpc.Status`` to its errors (gRPC trailing metadata ``grpc-status-details-bin``) whose
details are ``gateway.ErrorDetail`` messages: one per peer or orderer that refused, carrying the
chaincode's own message. Those details are decoded here and shown in the error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.msp import identities_pb2
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from fedledger.errors import (
    CommitStatusError,
    EndorseError,
    ErrorDetail,
    FabricError,
    GatewayError,
    SubmitError,
)
from fedledger.fabric.identity import Identity, Signer

# The gRPC trailer that carries the full google.rpc.Status of a failed call.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
_ERROR_DETAIL_TYPE = "gateway.ErrorDetail"


@dataclass(frozen=True)
class Timeouts:
    """Seconds each Gateway call may take before the client gives up."""

    evaluate: float = 5.0
    endorse: float = 15.0
    submit: float = 5.0
    # CommitStatus blocks on the peer until the transaction is in a block: allow a few batches.
    commit_status: float = 60.0

    def __post_init__(self) -> None:
        for name in ("evaluate", "endorse", "submit", "commit_status"):
            value = getattr(self, name)
            if not value > 0:
                raise FabricError(f"the {name} timeout must be a positive number of seconds, got {value!r}")


def serialized_identity(identity: Identity) -> bytes:
    """The creator bytes Fabric records: an ``msp.SerializedIdentity`` of MSP id and PEM certificate."""
    return bytes(identities_pb2.SerializedIdentity(
        mspid=identity.msp_id, id_bytes=identity.certificate_pem).SerializeToString())


def _status_message_class() -> Any:
    """google.rpc.Status, built in a private descriptor pool.

    The gRPC status proto lives in googleapis-common-protos, which FedLedger does not otherwise
    need; its three fields are stable, so it is declared here. A private pool keeps it from
    clashing with that package's definition if something else in the process imports it.
    """
    pool = descriptor_pool.DescriptorPool()
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    pool.Add(any_file)
    status_file = descriptor_pb2.FileDescriptorProto(
        name="google/rpc/status.proto", package="google.rpc", syntax="proto3",
        dependency=["google/protobuf/any.proto"],
    )
    message = status_file.message_type.add(name="Status")
    field = descriptor_pb2.FieldDescriptorProto
    message.field.add(name="code", number=1, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL)
    message.field.add(name="message", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    message.field.add(name="details", number=3, type=field.TYPE_MESSAGE, label=field.LABEL_REPEATED,
                      type_name=".google.protobuf.Any")
    pool.Add(status_file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))


_RpcStatus = _status_message_class()


def decode_error_details(status_bytes: bytes) -> list[ErrorDetail]:
    """The ``gateway.ErrorDetail`` entries of a serialized ``google.rpc.Status`` (others are skipped).

    Undecodable bytes give an empty list: the call's status message still says what failed.
    """
    try:
        status = _RpcStatus.FromString(status_bytes)
        details: list[ErrorDetail] = []
        for packed in status.details:
            if str(packed.type_url).rsplit("/", 1)[-1] != _ERROR_DETAIL_TYPE:
                continue
            detail = gateway_pb2.ErrorDetail.FromString(packed.value)
            details.append(ErrorDetail(str(detail.address), str(detail.msp_id), str(detail.message)))
        return details
    except DecodeError:
        return []


def details_from_metadata(metadata: Sequence[tuple[str, str | bytes]] | None) -> list[ErrorDetail]:
    """The gateway's error details found in a call's trailing metadata."""
    for key, value in metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return decode_error_details(value)
    return []


# What to do next, by gRPC status, when the gateway gives no per-peer details to go on.
_ADVICE = {
    "DEADLINE_EXCEEDED": "no answer in time; retry, or give connect() a longer {stage}",
    "PERMISSION_DENIED": "the identity is not allowed on this channel: check its MSP is a channel member",
    "NOT_FOUND": "check the channel name and that this peer has joined the channel",
    "FAILED_PRECONDITION": "check the channel and chaincode names and that the chaincode is committed",
    "INVALID_ARGUMENT": "the gateway refused the request as malformed",
    "UNAUTHENTICATED": "the peer did not accept the client's TLS certificate",
}
_GATEWAY_UNAVAILABLE_ADVICE = ("the gateway could not reach the peers or orderers it needs, or does not know the "
                               "channel: check the channel name and that the network's nodes are running")
_COMMIT_TIMEOUT_ADVICE = ("the transaction may still commit: ask for its status again, or give "
                          "connect() a longer commit_status_timeout")


# How gRPC's own transport reports a connection it could not make or lost (as opposed to an
# UNAVAILABLE status the gateway sends when it cannot reach other peers or does not know the channel).
_TRANSPORT_FAILURES = ("failed to connect to all addresses", "connections to all backends failing",
                       "connection refused", "dns resolution failed", "socket closed", "connection reset",
                       "broken pipe", "handshake", "hostname verification", "endpoint closing")


def is_transport_failure(code: str, message: str) -> bool:
    """Whether a failed call never reached the gateway (or lost it), rather than being refused by it."""
    return code == "UNAVAILABLE" and any(phrase in message.lower() for phrase in _TRANSPORT_FAILURES)


def error_message(operation: str, *, address: str, code: str, message: str,
                  details: Sequence[ErrorDetail], stage: str) -> str:
    """The text of a gateway error: what failed, where, the gateway's words, and what to do next.

    ``details`` are appended by :class:`~fedledger.errors.GatewayError` itself, one per line.
    """
    if is_transport_failure(code, message) and not details:
        return (f"{operation} failed: cannot reach the Fabric Gateway at {address} ({message}); "
                f"check that the peer is running there and that the TLS root certificate and server "
                f"name match its TLS certificate")
    text = f"{operation} failed at the Fabric Gateway {address}: {code}: {message}"
    if details:
        return text + "; the peers and orderers said:"
    if code == "DEADLINE_EXCEEDED" and stage == "commit_status":
        return f"{text}; {_COMMIT_TIMEOUT_ADVICE}"
    if code == "UNAVAILABLE":
        return f"{text}; {_GATEWAY_UNAVAILABLE_ADVICE}"
    advice = _ADVICE.get(code)
    return f"{text}; {advice.format(stage=f'{stage}_timeout')}" if advice else text


def rpc_error_parts(err: grpc.RpcError) -> tuple[str, str, list[ErrorDetail]]:
    """(status code name, status message, error details) of a failed gRPC call."""
    code = err.code() if isinstance(err, grpc.Call) else None
    name = str(code.name) if code is not None else "UNKNOWN"
    message = str(err.details()) if isinstance(err, grpc.Call) and err.details() else str(err)
    metadata = err.trailing_metadata() if isinstance(err, grpc.Call) else None
    return name, message, details_from_metadata(metadata)


class GatewayClient:
    """One gRPC channel to a Fabric Gateway peer, with the identity and signer that use it."""

    def __init__(self, channel: grpc.Channel, *, address: str, identity: Identity,
                 signer: Signer | None, timeouts: Timeouts) -> None:
        self._channel = channel
        self._stub = gateway_pb2_grpc.GatewayStub(channel)
        self.address = address
        self.identity = identity
        self.signer = signer
        self.timeouts = timeouts
        self.creator = serialized_identity(identity)

    def close(self) -> None:
        """Close the channel; calls in flight and open event streams are cancelled."""
        self._channel.close()

    def sign(self, message: bytes, what: str) -> bytes:
        """Sign with the gateway's signer, or explain how to sign off-line when it has none."""
        if self.signer is None:
            raise FabricError(f"{what} is not signed and the gateway has no signer: sign its digest() "
                              f"off-line and pass the signature to with_signature()")
        return self.signer.sign(message)

    def _failure(self, err: grpc.RpcError, operation: str, stage: str) -> tuple[str, str, list[ErrorDetail]]:
        """(message, status code name, details) for a failed call."""
        code, message, details = rpc_error_parts(err)
        text = error_message(operation, address=self.address, code=code, message=message,
                             details=details, stage=stage)
        return text, code, details

    def evaluate(self, request: Any, operation: str) -> Any:
        try:
            return self._stub.Evaluate(request, timeout=self.timeouts.evaluate)
        except grpc.RpcError as err:
            text, code, details = self._failure(err, operation, "evaluate")
            raise GatewayError(text, code=code, details=details, address=self.address) from None

    def endorse(self, request: Any, operation: str) -> Any:
        try:
            return self._stub.Endorse(request, timeout=self.timeouts.endorse)
        except grpc.RpcError as err:
            text, code, details = self._failure(err, operation, "endorse")
            raise EndorseError(str(request.transaction_id), text, code=code, details=details,
                               address=self.address) from None

    def submit(self, request: Any, operation: str) -> None:
        try:
            self._stub.Submit(request, timeout=self.timeouts.submit)
        except grpc.RpcError as err:
            text, code, details = self._failure(err, operation, "submit")
            raise SubmitError(str(request.transaction_id), text, code=code, details=details,
                              address=self.address) from None

    def commit_status(self, request: Any, tx_id: str, operation: str, timeout: float | None) -> Any:
        try:
            return self._stub.CommitStatus(request, timeout=timeout or self.timeouts.commit_status)
        except grpc.RpcError as err:
            text, code, details = self._failure(err, operation, "commit_status")
            raise CommitStatusError(tx_id, text, code=code, details=details, address=self.address) from None

    def chaincode_events(self, request: Any) -> Any:
        """Open the server stream (no deadline: it lasts until cancelled); its errors surface while
        iterating (see :meth:`stream_error`)."""
        return self._stub.ChaincodeEvents(request)

    def stream_error(self, err: grpc.RpcError, operation: str) -> GatewayError:
        """The error for a chaincode-event stream that failed."""
        text, code, details = self._failure(err, operation, "events")
        return GatewayError(text, code=code, details=details, address=self.address)
