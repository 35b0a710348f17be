"""Connect to a Fabric Gateway peer: the entry point of the Fabric client.

``connect(...) -> Gateway -> network(channel) -> contract(chaincode) -> evaluate / submit``, the
same call chain as Hyperledger's fabric-gateway SDKs. The connection is one gRPC channel over TLS,
always verified against the given root certificates; there is no plaintext mode.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from types import TracebackType

import grpc

from fedledger.errors import FabricError
from fedledger.fabric.client import GatewayClient, Timeouts
from fedledger.fabric.identity import Identity, Signer
from fedledger.fabric.network import Network

# Fabric peers accept messages of up to 100 MiB; gRPC's default limit of 4 MiB would cut large
# query results and blocks short.
MAX_MESSAGE_BYTES = 100 * 1024 * 1024

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")


def connect(address: str, *, identity: Identity, signer: Signer | None, tls_root_certificates: bytes,
            server_name: str | None = None, client_tls: tuple[bytes, bytes] | None = None,
            evaluate_timeout: float = 5.0, endorse_timeout: float = 15.0, submit_timeout: float = 5.0,
            commit_status_timeout: float = 60.0) -> Gateway:
    """Open a connection to the Fabric Gateway service of the peer at ``address``.

    The connection is made lazily: an unreachable peer shows up as a
    :class:`~fedledger.errors.GatewayError` naming ``address`` on the first call.

    Parameters
    ----------
    address
        ``host:port`` of the peer.
    identity
        The client identity that creates and signs every transaction.
    signer
        Its private key; ``None`` to sign every proposal, transaction and status request off-line
        (``digest()`` then ``with_signature()``).
    tls_root_certificates
        PEM root certificate(s) the peer's TLS certificate must chain to.
    server_name
        The host name to verify the peer's TLS certificate against, when ``address`` is not one of
        its names (e.g. ``127.0.0.1`` in front of ``peer0.org.example``).
    client_tls
        ``(certificate_chain_pem, private_key_pem)`` for mutual TLS, when the peer requires it.
    evaluate_timeout, endorse_timeout, submit_timeout, commit_status_timeout
        Seconds each kind of call may take.

    Raises
    ------
    FabricError
        A malformed address or certificate, an expired (or not yet valid) certificate, or a signer
        whose key is not the identity's.
    """
    if not _ADDRESS.match(address):
        raise FabricError(f"the gateway address must be host:port, got {address!r}")
    if b"-----BEGIN CERTIFICATE-----" not in tls_root_certificates:
        raise FabricError(f"the TLS root certificates for {address} are not PEM certificates")
    certificate = identity.certificate
    now = datetime.now(timezone.utc)
    if certificate.not_valid_after_utc < now:
        # Every peer would refuse it with "access denied"; say why here, before anything is sent.
        raise FabricError(f"the certificate of this {identity.msp_id} identity (fingerprint {identity.fingerprint[:16]}) "
                          f"expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; reenroll it at its CA "
                          "(CAClient.reenroll) or enroll a new one")
    if certificate.not_valid_before_utc > now:
        raise FabricError(f"the certificate of this {identity.msp_id} identity is not valid before "
                          f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; check this machine's clock")
    if signer is not None and not signer.matches(identity.certificate):
        raise FabricError(f"the signer's key does not match the certificate of the {identity.msp_id} identity "
                          f"(fingerprint {identity.fingerprint[:16]}); load the key issued with that certificate")
    private_key = certificate_chain = None
    if client_tls is not None:
        certificate_chain, private_key = client_tls
        if b"PRIVATE KEY" in certificate_chain or b"-----BEGIN CERTIFICATE-----" not in certificate_chain:
            raise FabricError("client_tls must be (certificate_chain_pem, private_key_pem), in that order")
    timeouts = Timeouts(evaluate=evaluate_timeout, endorse=endorse_timeout, submit=submit_timeout,
                        commit_status=commit_status_timeout)
    credentials = grpc.ssl_channel_credentials(root_certificates=tls_root_certificates,
                                               private_key=private_key, certificate_chain=certificate_chain)
    options: list[tuple[str, str | int]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    channel = grpc.secure_channel(address, credentials, options=options)
    return Gateway(GatewayClient(channel, address=address, identity=identity, signer=signer, timeouts=timeouts))


class Gateway:
    """A connection to one Fabric Gateway peer, used by one client identity.

    Close it when done (or use it as a context manager): that ends its gRPC channel and any
    open event streams.
    """

    def __init__(self, client: GatewayClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"Gateway({self._client.address!r}, msp_id={self._client.identity.msp_id!r})"

    @property
    def address(self) -> str:
        """The peer's ``host:port``."""
        return self._client.address

    @property
    def identity(self) -> Identity:
        """The client identity transactions are created by."""
        return self._client.identity

    def network(self, channel_name: str) -> Network:
        """The channel ``channel_name``."""
        return Network(self._client, channel_name)

    def close(self) -> None:
        """Close the connection; calls in flight and open event streams are cancelled."""
        self._client.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
