"""The gRPC client of one Fabric Gateway peer: its stub, timeouts, signing, and typed errors.

Every call to the Gateway service goes through :class:`GatewayClient`, which turns a failed gRPC
call into a :class:`~fedledger.errors.GatewayError` of the stage that failed. The gateway attaches
a ``google.rpc.Status`` to its errors (gRPC trailing metadata ``grpc-status-details-bin``) whose
details are ``gateway.ErrorDetail`` messages: one per peer or orderer that refused, carrying the
chaincode's own message. Those details are decoded here and shown in the error.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import proposal_pb2
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from fedledger.errors import (
    AccessDeniedError,
    CommitStatusAccessDeniedError,
    CommitStatusError,
    DenialCause,
    EndorseAccessDeniedError,
    EndorseError,
    EndorsementMismatchError,
    ErrorDetail,
    FabricError,
    GatewayError,
    SubmitAccessDeniedError,
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


# Fabric tells a client no more than "access denied" (a peer's check of the proposal's creator and
# signature, or its ACL), "FORBIDDEN" (the orderer's Writers policy on the envelope) or the gRPC status
# PERMISSION_DENIED (the gateway's Readers policy, for commit status and events). Only these words say
# which refusal it was, so they are read here, once; everything above sees an AccessDeniedError.
_ACCESS_DENIED_PHRASES = ("access denied", "status=FORBIDDEN")
# A chaincode's own refusal is relayed as "chaincode response <status>, <its message>": its words are its own.
_CHAINCODE_RESPONSE = "chaincode response"
# The peer's words when it could not place the creator in any MSP of the channel.
_UNPLACED_CREATOR_PHRASE = "creator org unknown"
# What the gateway says of an endorser whose simulation differs from the first one's.
_PAYLOAD_MISMATCH = "ProposalResponsePayloads do not match"


def is_access_denied(code: str, message: str, details: Sequence[ErrorDetail]) -> bool:
    """Whether a failed call is Fabric refusing the identity that signed it (not a chaincode refusing)."""
    if code == "PERMISSION_DENIED":
        return True
    texts = [message, *(d.message for d in details)]
    return any(phrase in text for text in texts if not text.startswith(_CHAINCODE_RESPONSE)
               for phrase in _ACCESS_DENIED_PHRASES)


@dataclass(frozen=True)
class SignedMessage:
    """What a request's signature covers, the signature, and the creator the request names."""

    message: bytes
    signature: bytes
    msp_id: str
    certificate_pem: bytes


def signed_message(request: Any) -> SignedMessage | None:
    """The signed bytes, signature and creator of a Gateway request (None for a request of another kind).

    The creator is read from the signed bytes themselves, as the peer reads it: a transaction built
    elsewhere may name another identity than the gateway's.
    """
    try:
        if isinstance(request, (gateway_pb2.EvaluateRequest, gateway_pb2.EndorseRequest)):
            signed = request.proposed_transaction
            header = common_pb2.Header.FromString(proposal_pb2.Proposal.FromString(signed.proposal_bytes).header)
            creator = common_pb2.SignatureHeader.FromString(header.signature_header).creator
            message, signature = bytes(signed.proposal_bytes), bytes(signed.signature)
        elif isinstance(request, gateway_pb2.SubmitRequest):
            envelope = request.prepared_transaction
            payload = common_pb2.Payload.FromString(envelope.payload)
            creator = common_pb2.SignatureHeader.FromString(payload.header.signature_header).creator
            message, signature = bytes(envelope.payload), bytes(envelope.signature)
        elif isinstance(request, gateway_pb2.SignedCommitStatusRequest):
            creator = gateway_pb2.CommitStatusRequest.FromString(request.request).identity
            message, signature = bytes(request.request), bytes(request.signature)
        elif isinstance(request, gateway_pb2.SignedChaincodeEventsRequest):
            creator = gateway_pb2.ChaincodeEventsRequest.FromString(request.request).identity
            message, signature = bytes(request.request), bytes(request.signature)
        else:
            return None
        identity = identities_pb2.SerializedIdentity.FromString(creator)
    except DecodeError:
        return None
    return SignedMessage(message, signature, str(identity.mspid), bytes(identity.id_bytes))


def _signed_by(certificate: x509.Certificate, message: bytes, signature: bytes) -> bool | None:
    """Whether ``signature`` over ``message`` verifies with the certificate's key (None: not an EC key)."""
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return None
    try:
        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def explain_denial(msp_id: str, certificate_pem: bytes, *, signed: tuple[bytes, bytes] | None = None,
                   signer: Signer | None = None, unplaced: bool = False, channel_name: str = "",
                   refuser: str = "the peer", now: datetime | None = None) -> tuple[DenialCause, str, str]:
    """Why Fabric most likely refused an identity: (cause, what to say, the certificate's subject).

    Checks, in order, what can be checked here: that the signature was made with the certificate's
    key (``signed`` is (message, signature); without it, that ``signer`` is the certificate's key),
    that the certificate is within its validity period at ``now``, and whether the peer said it could
    not place the certificate in its MSP (``unplaced``). What none of them explains is said as such.
    """
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError:
        return (DenialCause.UNKNOWN_MSP, f"the creator's certificate (MSP {msp_id}) is not a PEM X.509 certificate; "
                                         f"load the identity's certificate again from its wallet", "")
    subject = certificate.subject.rfc4514_string() or "(no subject)"
    who = f"certificate {subject} ({msp_id})"
    key_matches = _signed_by(certificate, *signed) if signed is not None else (
        signer.matches(certificate) if signer is not None else None)
    if key_matches is False:
        return (DenialCause.KEY_MISMATCH, f"the signing key does not belong to {who}: the signature was made with "
                                          f"another key; sign with the private key issued with that certificate",
                subject)
    now = now or datetime.now(timezone.utc)
    if certificate.not_valid_after_utc < now:
        return (DenialCause.EXPIRED, f"{who} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
                                     f"reenroll it at its CA or enroll a new identity", subject)
    if certificate.not_valid_before_utc > now:
        start = f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M}"
        return (DenialCause.NOT_YET_VALID, f"{who} is not valid before {start} UTC; check this machine's clock",
                subject)
    channel = f" of channel {channel_name}" if channel_name else ""
    if unplaced:
        return (DenialCause.UNKNOWN_MSP, f"{refuser} could not place {who} in any organization{channel}: {msp_id} is "
                                         f"not one of the channel's MSPs, or the certificate was not issued by one of "
                                         f"{msp_id}'s CAs", subject)
    return (DenialCause.UNEXPLAINED, f"{refuser} denied access to {subject} ({msp_id}): the certificate may be "
                                     f"revoked, expired, or not issued by a CA of the channel's MSP {msp_id}", subject)


def rpc_error_parts(err: grpc.RpcError) -> tuple[str, str, list[ErrorDetail]]:
    """(status code name, status message, error details) of a failed gRPC call."""
    code = err.code() if isinstance(err, grpc.Call) else None
    name = str(code.name) if code is not None else "UNKNOWN"
    message = str(err.details()) if isinstance(err, grpc.Call) and err.details() else str(err)
    metadata = err.trailing_metadata() if isinstance(err, grpc.Call) else None
    return name, message, details_from_metadata(metadata)


# The error each call raises when it fails for a reason other than access denied (others: GatewayError).
StageError = type[EndorseError] | type[SubmitError] | type[CommitStatusError]
_STAGE_ERRORS: dict[str, StageError] = {"endorse": EndorseError, "submit": SubmitError,
                                        "commit_status": CommitStatusError}
# The access-denied error of each stage error: both at once.
_DENIED_AT: dict[StageError, type[AccessDeniedError]] = {
    EndorseError: EndorseAccessDeniedError, SubmitError: SubmitAccessDeniedError,
    CommitStatusError: CommitStatusAccessDeniedError}


class GatewayClient:
    """One gRPC channel to a Fabric Gateway peer, with the identity and signer that use it.

    It also remembers, per channel, the greatest height it has seen (a block a transaction committed
    in, a height read): a transaction submitted afterwards commits in a block at least that high.
    """

    def __init__(self, channel: grpc.Channel, *, address: str, identity: Identity,
                 signer: Signer | None, timeouts: Timeouts) -> None:
        self._channel = channel
        self._stub = gateway_pb2_grpc.GatewayStub(channel)
        self.address = address
        self.identity = identity
        self.signer = signer
        self.timeouts = timeouts
        self.creator = serialized_identity(identity)
        self._heights: dict[str, int] = {}
        self._lock = threading.Lock()
        # Every transaction id this connection has sent to ordering (a few dozen bytes each).
        self._sent: set[str] = set()

    def close(self) -> None:
        """Close the channel; calls in flight and open event streams are cancelled."""
        self._channel.close()

    def sign(self, message: bytes, what: str) -> bytes:
        """Sign with the gateway's signer, or explain how to sign off-line when it has none."""
        if self.signer is None:
            raise FabricError(f"{what} is not signed and the gateway has no signer: sign its digest() "
                              f"off-line and pass the signature to with_signature()")
        return self.signer.sign(message)

    def observe_height(self, channel_name: str, height: int) -> None:
        """Note that channel ``channel_name`` has at least ``height`` blocks."""
        with self._lock:
            self._heights[channel_name] = max(height, self._heights.get(channel_name, 0))

    def first_submission(self, tx_id: str) -> bool:
        """Note that ``tx_id`` is being sent to ordering; whether this connection never sent it before."""
        with self._lock:
            first = tx_id not in self._sent
            self._sent.add(tx_id)
            return first

    def known_height(self, channel_name: str) -> int:
        """The greatest height of ``channel_name`` seen through this connection (0 before any)."""
        with self._lock:
            return self._heights.get(channel_name, 0)

    def _error(self, err: grpc.RpcError, *, operation: str, stage: str, request: Any = None,
               tx_id: str = "", error: StageError | None = None) -> GatewayError:
        """The typed error for a failed call: AccessDeniedError, explained, or ``error`` (by default the stage's)."""
        code, message, details = rpc_error_parts(err)
        kind = error or _STAGE_ERRORS.get(stage)
        if is_access_denied(code, message, details):
            return self.access_denied(operation, stage=stage, request=request, tx_id=tx_id, code=code,
                                      message=message, details=details, kind=kind)
        text = error_message(operation, address=self.address, code=code, message=message, details=details,
                             stage=stage)
        if kind is None:
            return GatewayError(text, code=code, details=details, address=self.address)
        if kind is EndorseError and details and all(_PAYLOAD_MISMATCH in d.message for d in details):
            # Fabric 2.5's gateway gives this cause only in words: it is typed here, once.
            kind = EndorsementMismatchError
        return kind(tx_id, text, code=code, details=details, address=self.address)

    def access_denied(self, operation: str, *, stage: str, request: Any, tx_id: str, code: str, message: str,
                      details: Sequence[ErrorDetail], kind: StageError | None = None) -> AccessDeniedError:
        """An AccessDeniedError that says, where it can, why the identity was refused; also the
        ``kind`` of stage error (EndorseError, ...) the call raises otherwise.

        The creator and the signature are read from ``request`` itself; without one (an event
        stream), the gateway's identity and signer are checked instead.
        """
        signed = signed_message(request)
        msp_id, certificate_pem = ((signed.msp_id, signed.certificate_pem) if signed and signed.certificate_pem
                                   else (self.identity.msp_id, self.identity.certificate_pem))
        channel_name = str(getattr(request, "channel_id", "")) if request is not None else ""
        cause, explanation, subject = explain_denial(
            msp_id, certificate_pem, signed=(signed.message, signed.signature) if signed else None,
            signer=None if signed else self.signer, channel_name=channel_name,
            unplaced=any(_UNPLACED_CREATOR_PHRASE in text for text in [message, *(d.message for d in details)]),
            refuser="the ordering service" if stage == "submit" else "the peer")
        # Without per-peer details the gateway's own words would be lost: keep them after the explanation.
        words = "" if details else f" (Fabric said {code}: {message})"
        text = f"{operation} failed at the Fabric Gateway {self.address}: {explanation}{words}"
        denied = _DENIED_AT.get(kind, AccessDeniedError) if kind is not None else AccessDeniedError
        return denied(text, cause=cause, stage=stage, tx_id=tx_id, msp_id=msp_id, subject=subject,
                      code=code, details=details, address=self.address)

    def evaluate(self, request: Any, operation: str, *, error: StageError | None = None, tx_id: str = "") -> Any:
        """Evaluate a proposal; a failure raises ``error`` for ``tx_id`` (by default a GatewayError)."""
        try:
            return self._stub.Evaluate(request, timeout=self.timeouts.evaluate)
        except grpc.RpcError as err:
            raise self._error(err, operation=operation, stage="evaluate", request=request,
                              tx_id=tx_id or str(request.transaction_id), error=error) from None

    def endorse(self, request: Any, operation: str) -> Any:
        try:
            return self._stub.Endorse(request, timeout=self.timeouts.endorse)
        except grpc.RpcError as err:
            raise self._error(err, operation=operation, stage="endorse", request=request,
                              tx_id=str(request.transaction_id)) from None

    def submit(self, request: Any, operation: str) -> None:
        try:
            self._stub.Submit(request, timeout=self.timeouts.submit)
        except grpc.RpcError as err:
            raise self._error(err, operation=operation, stage="submit", request=request,
                              tx_id=str(request.transaction_id)) from None

    def commit_status(self, request: Any, tx_id: str, operation: str, timeout: float | None) -> Any:
        try:
            return self._stub.CommitStatus(request, timeout=timeout or self.timeouts.commit_status)
        except grpc.RpcError as err:
            raise self._error(err, operation=operation, stage="commit_status", request=request,
                              tx_id=tx_id) from None

    def chaincode_events(self, request: Any) -> Any:
        """Open the server stream (no deadline: it lasts until cancelled); its errors surface while
        iterating (see :meth:`stream_error`)."""
        return self._stub.ChaincodeEvents(request)

    def stream_error(self, err: grpc.RpcError, operation: str, request: Any = None) -> GatewayError:
        """The error for a chaincode-event stream that failed."""
        return self._error(err, operation=operation, stage="events", request=request)
