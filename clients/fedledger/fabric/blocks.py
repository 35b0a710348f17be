"""An auditor's check of a channel's ledger: every block's hashes and signatures, and peers compared.

The check trusts no peer's word. Blocks are read from a peer through the Fabric Gateway (system
chaincode ``qscc``: ``GetChainInfo`` for the height and the peer's current block hash,
``GetBlockByNumber`` for each block), then verified here, the way Fabric's own committers and
orderers verify them (Fabric v2.5: ``protoutil/blockutils.go``, ``internal/peer/gossip/mcs.go``,
``orderer/common/multichannel/blockwriter.go``, ``msp/mspimplvalidate.go``):

- block numbers run 0, 1, 2, ... and each header's ``previous_hash`` is the hash of the block
  before's header: SHA-256 of the DER encoding of ``SEQUENCE { INTEGER number, OCTET STRING
  previous_hash, OCTET STRING data_hash }`` (``protoutil.BlockHeaderBytes``);
- each header's ``data_hash`` is SHA-256 of the block's data entries concatenated
  (``protoutil.BlockDataHash``);
- each block after the genesis block carries an orderer's signature over ``metadata.value ||
  signature_header || header bytes`` by an identity of an orderer organization, and its signed
  metadata names the right last configuration block;
- each transaction's creator signed its payload (ECDSA, SHA-256, low-S, DER) with a certificate
  that chains to a root CA of the MSP it names and is not on that MSP's revocation list;
- each transaction the peer recorded as VALID has a transaction id of ``sha256(nonce + creator)``
  not used by an earlier valid one, and endorsements whose signatures over
  ``proposal_response_payload || endorser`` verify against endorsers chaining to their MSPs.

The MSPs come from the channel configuration in effect for each block: the genesis block's, then
each later configuration block's from the next block on. The genesis block is the trust anchor:
pass its known hash (``trusted_genesis_hash``) and compare peers of several organizations, since a
chain rebuilt from a forged genesis block with forged CAs would be consistent with itself.

Not checked: whether endorsements satisfy the chaincode's endorsement policy, the admins'
signatures on configuration updates, certificate expiry (Fabric's MSPs validate a certificate as of
its own start date), and private data.

Why qscc through the Gateway rather than the peer's Deliver service: it reuses the client's one
connection, TLS and signing mechanism (:func:`~fedledger.fabric.connect`, ``Contract.evaluate``)
and its typed errors; it gives the peer's own chain info (height and current block hash) to hold
the fetched blocks against; and both are allowed by the same ACL (the channel's ``Readers``). It
costs one round trip per block, a few overlapped (:func:`fetch_chain`'s ``workers``): measured on
the test consortium, 100 blocks (600 kB) in about 0.15 s, and verifying them about 0.1 s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fabric_protos.common import common_pb2, configtx_pb2, ledger_pb2
from fabric_protos.msp import identities_pb2, msp_config_pb2
from fabric_protos.peer import proposal_response_pb2, transaction_pb2
from google.protobuf.message import DecodeError

from fedledger.errors import FabricError
from fedledger.fabric.commit import validation_code_name
from fedledger.fabric.gateway import Gateway
from fedledger.fabric.identity import P256_ORDER

# The order of the P-384 group; Fabric accepts P-256 and P-384 keys, and low-S against either order.
P384_ORDER = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16)
_HALF_ORDER = {"secp256r1": P256_ORDER // 2, "secp384r1": P384_ORDER // 2}

# How many blocks fetch_chain asks for at once: round trips overlap, and the peer is not flooded.
DEFAULT_FETCH_WORKERS = 4
# A validation chain deeper than this (leaf, intermediates, root) is refused rather than followed.
_MAX_CHAIN_DEPTH = 8
_VALID = "VALID"
_DEFINED_CODES = frozenset(int(code) for code in transaction_pb2.TxValidationCode.values())


class BlockFetchError(FabricError):
    """A peer's answer about the chain could not be used (the call itself succeeded)."""

    def __init__(self, address: str, channel_name: str, reason: str, *, block_number: int | None = None) -> None:
        where = f" block {block_number} of" if block_number is not None else ""
        super().__init__(f"reading{where} channel {channel_name} from the peer at {address}: {reason}")
        self.address, self.channel_name, self.block_number = address, channel_name, block_number


class Check(StrEnum):
    """What a check verifies; its value is the name reports print."""

    STRUCTURE = "structure"                          # blocks, envelopes and headers parse; one channel
    BLOCK_NUMBERS = "block-numbers"                  # header.number runs 0, 1, 2, ...
    PREVIOUS_HASHES = "previous-hashes"              # header.previous_hash = hash of the previous header
    DATA_HASHES = "data-hashes"                      # header.data_hash = SHA-256 of the data entries
    ORDERER_SIGNATURES = "orderer-signatures"        # each block signed by an orderer org; last config
    CREATOR_SIGNATURES = "creator-signatures"        # each envelope signed by its creator, low-S
    CREATOR_CERTIFICATES = "creator-certificates"    # each creator chains to its MSP, not revoked
    TRANSACTION_IDS = "transaction-ids"              # valid txs: id = sha256(nonce + creator), unique
    ENDORSEMENTS = "endorsements"                    # valid txs: endorser signatures and certificates
    VALIDATION_CODES = "validation-codes"            # the peer recorded a defined code for every transaction
    GENESIS_BLOCK = "genesis-block"                  # block 0 is the trusted genesis block
    CHAIN_INFO = "chain-info"                        # the last block is the peer's current block
    SAME_BLOCK_HASHES = "same-block-hashes"          # every peer holds the same blocks
    SAME_VALIDATION_CODES = "same-validation-codes"  # every peer recorded the same validation codes


@dataclass(frozen=True)
class Problem:
    """One failure of a check: where (block, transaction) and why."""

    block_number: int
    tx_id: str
    reason: str

    def __str__(self) -> str:
        tx = f", tx {self.tx_id}" if self.tx_id else ""
        return f"block {self.block_number}{tx}: {self.reason}"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check over a chain: how many items it looked at, and what failed."""

    name: Check
    checked: int
    problems: tuple[Problem, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        """The first failure, naming its block and transaction ("" when the check passed)."""
        if not self.problems:
            return ""
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"{self.problems[0]}{more}"


@dataclass(frozen=True)
class TransactionRecord:
    """A transaction as the block records it."""

    index: int
    tx_id: str
    type: str                  # the channel header's type: ENDORSER_TRANSACTION, CONFIG, ...
    creator_msp_id: str
    validation_code: str       # what the peer recorded: VALID, MVCC_READ_CONFLICT, ... or NOT_RECORDED
    endorser_msp_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class BlockRecord:
    """A block's header, hashes (lower-case hex), signers and transactions."""

    number: int
    hash: str
    previous_hash: str
    data_hash: str
    config: bool
    orderer_msp_ids: tuple[str, ...]
    transactions: tuple[TransactionRecord, ...]


@dataclass(frozen=True)
class MspRecord:
    """An MSP of the channel configuration, from the configuration block that defined it."""

    config_block: int
    msp_id: str
    orderer: bool                          # an organization of the ordering service
    root_fingerprints: tuple[str, ...]     # SHA-256 of each root CA certificate's DER, hex
    intermediate_fingerprints: tuple[str, ...]
    revoked_serials: tuple[int, ...]


@dataclass(frozen=True)
class ChainReport:
    """Every check over one copy of a channel's chain; ``ok`` when each passed."""

    channel: str
    source: str                           # where the blocks came from ("" when verified as given)
    height: int                           # how many blocks were given
    blocks: tuple[BlockRecord, ...]       # those that parse, in the order given
    msps: tuple[MspRecord, ...]
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(check for check in self.checks if not check.passed)

    def check(self, name: Check | str) -> CheckResult:
        """The result of check ``name``; raises KeyError when that check did not run."""
        for result in self.checks:
            if result.name == name:
                return result
        raise KeyError(f"no {name} check in this report (checks run: {', '.join(c.name for c in self.checks)})")


@dataclass(frozen=True)
class Chain:
    """A channel's blocks as one peer holds them, with that peer's own chain info."""

    channel: str
    msp_id: str                 # the organization whose peer answered
    address: str                # the gateway that was asked
    height: int
    current_block_hash: str     # hex, as the peer reports it
    blocks: tuple[bytes, ...] = field(repr=False)

    @property
    def source(self) -> str:
        return f"{self.msp_id} peer via {self.address}"


@dataclass(frozen=True)
class PeerView:
    """One peer's account of the chain: its height and current block hash."""

    msp_id: str
    address: str
    height: int
    current_block_hash: str


@dataclass(frozen=True)
class PeerAgreement:
    """Whether every peer holds the same blocks (and recorded the same validation codes) up to the
    lowest height among them; a peer a block or two behind is not a failure."""

    peers: tuple[PeerView, ...]
    common_height: int
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(check.passed for check in self.checks)


@dataclass(frozen=True)
class LedgerAudit:
    """Each peer's chain verified on its own, and the peers compared."""

    chains: tuple[ChainReport, ...]
    agreement: PeerAgreement

    @property
    def ok(self) -> bool:
        return self.agreement.ok and all(report.ok for report in self.chains)


# -- Fabric's block hashes -------------------------------------------------------------------


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def block_header_bytes(number: int, previous_hash: bytes, data_hash: bytes) -> bytes:
    """Fabric's ``BlockHeaderBytes``: DER of ``SEQUENCE { INTEGER, OCTET STRING, OCTET STRING }``.

    The number is a non-negative DER INTEGER: minimal big-endian two's complement, so a leading
    zero byte when its top bit is set (Go's ``asn1.Marshal`` of a ``big.Int``).
    """
    if number < 0:
        raise FabricError(f"a block number cannot be negative, got {number}")
    integer = number.to_bytes(number.bit_length() // 8 + 1, "big")
    return _der(0x30, _der(0x02, integer) + _der(0x04, previous_hash) + _der(0x04, data_hash))


def block_header_hash(number: int, previous_hash: bytes, data_hash: bytes) -> bytes:
    """Fabric's ``BlockHeaderHash``: SHA-256 of :func:`block_header_bytes`, the hash the next block links to."""
    return hashlib.sha256(block_header_bytes(number, previous_hash, data_hash)).digest()


def block_data_hash(entries: Sequence[bytes]) -> bytes:
    """Fabric's ``BlockDataHash`` (v2.5): SHA-256 of the block's data entries concatenated."""
    return hashlib.sha256(b"".join(entries)).digest()


def _header_hash(block: Any) -> bytes:
    header = block.header
    return block_header_hash(int(header.number), bytes(header.previous_hash), bytes(header.data_hash))


# -- MSPs from the channel configuration ------------------------------------------------------


def _fingerprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class _Msp:
    """An X.509 MSP's trust material: root and intermediate CAs, and serials revoked per issuer."""

    msp_id: str
    orderer: bool
    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...]
    unsupported: str = ""   # why identities of this MSP cannot be checked (e.g. Idemix)

    def record(self, config_block: int) -> MspRecord:
        serials = sorted({entry.serial_number for crl in self.crls for entry in crl})
        return MspRecord(config_block, self.msp_id, self.orderer, tuple(_fingerprint(c) for c in self.roots),
                         tuple(_fingerprint(c) for c in self.intermediates), tuple(serials))


# What cryptography raises for a certificate that loads (it parses lazily) but whose key, names or
# extensions are malformed: bytes from a block are untrusted input, and a bad one is a finding.
_MALFORMED = (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion)


def _malformed(certificate: x509.Certificate) -> str | None:
    """Why the fields a check reads from ``certificate`` are unreadable, or None."""
    try:
        certificate.public_key()
        certificate.subject.rfc4514_string()
        certificate.issuer.rfc4514_string()
        certificate.not_valid_before_utc, certificate.not_valid_after_utc  # noqa: B018
        certificate.extensions  # noqa: B018
    except _MALFORMED as err:
        return f"the certificate is malformed ({err})"
    return None


def _load_certificates(pems: Sequence[bytes], what: str) -> tuple[x509.Certificate, ...]:
    certificates: list[x509.Certificate] = []
    for pem in pems:
        try:
            certificates.extend(x509.load_pem_x509_certificates(bytes(pem)))
        except _MALFORMED as err:
            raise ValueError(f"a {what} certificate does not parse ({err})") from None
    for certificate in certificates:
        if problem := _malformed(certificate):
            raise ValueError(f"a {what} certificate: {problem}")
    return tuple(certificates)


def _load_crl(pem: bytes) -> x509.CertificateRevocationList:
    try:
        crl = x509.load_pem_x509_crl(pem)
        crl.issuer.rfc4514_string()
        for entry in crl:
            entry.serial_number  # noqa: B018
    except _MALFORMED as err:
        raise ValueError(f"a revocation list does not parse ({err})") from None
    return crl


def _msp_from_value(raw: bytes, *, orderer: bool, org: str) -> _Msp:
    config = msp_config_pb2.MSPConfig.FromString(raw)
    if int(config.type) != 0:   # 0 is FABRIC (X.509); 1 is IDEMIX
        return _Msp(org, orderer, (), (), (), unsupported=f"MSP type {int(config.type)} (not X.509) is not checked here")
    fabric = msp_config_pb2.FabricMSPConfig.FromString(config.config)
    crls = [_load_crl(bytes(pem)) for pem in fabric.revocation_list]
    return _Msp(str(fabric.name), orderer, _load_certificates(fabric.root_certs, "root CA"),
                _load_certificates(fabric.intermediate_certs, "intermediate CA"), tuple(crls))


def _channel_msps(config_envelope: bytes) -> dict[str, _Msp]:
    """The MSPs a ``ConfigEnvelope`` defines: each organization of its Application and Orderer groups.

    Raises ValueError (with the organization named) when the configuration does not parse.
    """
    envelope = configtx_pb2.ConfigEnvelope.FromString(config_envelope)
    channel_group = envelope.config.channel_group
    msps: dict[str, _Msp] = {}
    for group_name, orderer in (("Application", False), ("Orderer", True)):
        if group_name not in channel_group.groups:
            continue
        for org, group in channel_group.groups[group_name].groups.items():
            if "MSP" not in group.values:
                raise ValueError(f"organization {org} of the {group_name} group has no MSP value")
            try:
                msp = _msp_from_value(bytes(group.values["MSP"].value), orderer=orderer, org=org)
            except (DecodeError, ValueError) as err:
                raise ValueError(f"the MSP of organization {org} ({group_name}) is unreadable: {err}") from None
            known = msps.get(msp.msp_id)
            # An organization in both groups (peers and orderers) is one MSP; it may sign blocks.
            msps[msp.msp_id] = msp if known is None else _Msp(
                msp.msp_id, True, known.roots, known.intermediates, known.crls, known.unsupported)
    return msps


# -- signatures and certificate chains ---------------------------------------------------------


def signature_problem(certificate: x509.Certificate, signature: bytes, message: bytes) -> str | None:
    """Why ``signature`` is not a valid Fabric signature of ``message`` by ``certificate``, or None.

    Fabric's rule (``bccsp/sw/ecdsa.go``): an ECDSA signature over SHA-256 of the message, DER
    encoded, whose s is at most half the curve order.
    """
    try:
        key = certificate.public_key()
    except _MALFORMED:
        return "the signer's certificate holds no readable public key"
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return f"the certificate's key is {type(key).__name__}, not an ECDSA key"
    half_order = _HALF_ORDER.get(key.curve.name)
    if half_order is None:
        return f"the certificate's curve {key.curve.name} is not one Fabric signs with"
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        return "the signature is not a DER-encoded ECDSA signature"
    if r <= 0 or s <= 0:
        return "the signature's r or s is not positive"
    if s > half_order:
        return "the signature has a high S value, which Fabric refuses (s must be at most half the curve order)"
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, *_MALFORMED):
        return "the signature does not verify against the signer's certificate"
    return None


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (InvalidSignature, *_MALFORMED):
        return False
    return True


def _chain_problem(certificate: x509.Certificate, msp: _Msp) -> str | None:
    """Why ``certificate`` is not a valid identity of ``msp``, or None (``msp/mspimplvalidate.go``).

    The certificate must not be a CA; it must chain through the MSP's intermediates to one of its
    roots, each link's signature verifying and each CA valid at the certificate's own start date
    plus one second (Fabric validates as of then, so an old block's identities stay valid after
    they expire); and its issuer's revocation lists in the MSP must not list its serial.
    """
    if msp.unsupported:
        return msp.unsupported
    if _is_ca(certificate):
        return "the certificate is a CA certificate, which Fabric refuses as an identity"
    when = certificate.not_valid_before_utc + timedelta(seconds=1)
    roots = {c.public_bytes(serialization.Encoding.DER) for c in msp.roots}
    current, issuer = certificate, None
    for _ in range(_MAX_CHAIN_DEPTH):
        candidates = [c for c in (*msp.intermediates, *msp.roots) if c.subject == current.issuer]
        parent = next((c for c in candidates if _issued_by(current, c)), None)
        if parent is None:
            return (f"the certificate (issuer {current.issuer.rfc4514_string()}) does not chain to a root CA "
                    f"of {msp.msp_id}")
        if not (parent.not_valid_before_utc <= when <= parent.not_valid_after_utc) or not _is_ca(parent):
            return f"its CA {parent.subject.rfc4514_string()} was not a valid CA certificate when it was issued"
        issuer = issuer or parent
        if parent.public_bytes(serialization.Encoding.DER) in roots:
            break
        current = parent
    else:
        return f"its chain to a root CA of {msp.msp_id} is longer than {_MAX_CHAIN_DEPTH} certificates"
    issuer_key = issuer.public_key()
    for crl in msp.crls:
        # Only a list the issuer itself signed can revoke what it issued (as Fabric checks).
        if crl.issuer == issuer.subject and isinstance(issuer_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey) \
                and _signed_by(crl, issuer_key) \
                and crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None:
            return f"the certificate (serial {certificate.serial_number:x}) is revoked by {msp.msp_id}'s CRL"
    return None


def _signed_by(crl: x509.CertificateRevocationList,
               key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> bool:
    try:
        return bool(crl.is_signature_valid(key))
    except _MALFORMED:
        return False


# -- the verifier -----------------------------------------------------------------------------


def _parse(message_type: Any, raw: bytes) -> Any:
    """The message, or None when the bytes are not one."""
    try:
        return message_type.FromString(raw)
    except (DecodeError, RuntimeError):
        return None


@dataclass(frozen=True)
class _Identity:
    """A signer named by serialized identity bytes, resolved against the configuration in effect."""

    msp_id: str
    certificate: x509.Certificate | None
    problem: str | None   # why it is not a valid identity of its MSP


class _Verifier:
    """Walks a chain block by block, keeping the configuration in effect and each check's findings."""

    def __init__(self) -> None:
        self.checked: dict[Check, int] = {check: 0 for check in Check}
        self.problems: dict[Check, list[Problem]] = {check: [] for check in Check}
        self.channel = ""
        self.msps: dict[str, _Msp] = {}
        self.msp_records: list[MspRecord] = []
        self.last_config = 0
        self.previous_hash: bytes | None = None
        self.valid_tx_ids: dict[str, int] = {}
        self.records: list[BlockRecord] = []
        self._identities: dict[tuple[int, bytes, bool], _Identity] = {}

    def fail(self, check: Check, block_number: int, tx_id: str, reason: str) -> None:
        self.problems[check].append(Problem(block_number, tx_id, reason))

    def count(self, check: Check) -> None:
        self.checked[check] += 1

    def identity(self, serialized: bytes, *, orderer: bool) -> _Identity:
        """The signer of ``serialized`` bytes, checked against its MSP (an orderer org's, if ``orderer``)."""
        key = (self.last_config, serialized, orderer)
        if key not in self._identities:
            self._identities[key] = self._resolve(serialized, orderer=orderer)
        return self._identities[key]

    def _resolve(self, serialized: bytes, *, orderer: bool) -> _Identity:
        identity = _parse(identities_pb2.SerializedIdentity, serialized)
        if identity is None:
            return _Identity("", None, "the signer is not a serialized MSP identity")
        msp_id = str(identity.mspid)
        try:
            certificate = x509.load_pem_x509_certificate(bytes(identity.id_bytes))
        except _MALFORMED:
            return _Identity(msp_id, None, f"the signer's certificate ({msp_id}) is not a PEM X.509 certificate")
        if problem := _malformed(certificate):
            return _Identity(msp_id, None, f"the signer's certificate ({msp_id}): {problem}")
        msp = self.msps.get(msp_id)
        if msp is None:
            return _Identity(msp_id, certificate, f"no MSP {msp_id!r} in the channel configuration of "
                                                  f"block {self.last_config}")
        if orderer and not msp.orderer:
            return _Identity(msp_id, certificate, f"{msp_id} is not an organization of the ordering service")
        problem = _chain_problem(certificate, msp)
        return _Identity(msp_id, certificate, f"{msp_id}: {problem}" if problem else None)

    def verify(self, position: int, raw: bytes) -> None:
        block = _parse(common_pb2.Block, raw)
        if block is None or not block.HasField("header"):
            self.fail(Check.STRUCTURE, position, "", "does not parse as a Fabric block with a header")
            self.previous_hash = None
            return
        number = int(block.header.number)
        self.count(Check.BLOCK_NUMBERS)
        if number != position:
            self.fail(Check.BLOCK_NUMBERS, number, "", f"found at position {position}: blocks must run 0, 1, 2, ... "
                                                       f"with none missing")
        header_hash = _header_hash(block)
        self.count(Check.PREVIOUS_HASHES)
        previous = bytes(block.header.previous_hash)
        if position == 0 and previous:
            self.fail(Check.PREVIOUS_HASHES, number, "", "the genesis block names a previous hash")
        elif self.previous_hash is not None and previous != self.previous_hash:
            self.fail(Check.PREVIOUS_HASHES, number, "", f"previous_hash {previous.hex()[:16]}... is not the hash "
                                                         f"{self.previous_hash.hex()[:16]}... of the block before")
        self.previous_hash = header_hash
        entries = [bytes(entry) for entry in block.data.data]
        self.count(Check.DATA_HASHES)
        if block_data_hash(entries) != bytes(block.header.data_hash):
            self.fail(Check.DATA_HASHES, number, "", "data_hash is not the SHA-256 of the block's data")
        metadata = [bytes(m) for m in block.metadata.metadata]
        flags = metadata[common_pb2.BlockMetadataIndex.TRANSACTIONS_FILTER] \
            if len(metadata) > common_pb2.BlockMetadataIndex.TRANSACTIONS_FILTER else b""

        transactions, config = [], None
        for index, entry in enumerate(entries):
            record, config_envelope = self._transaction(position, number, index, entry, flags, len(entries))
            transactions.append(record)
            config = config_envelope if config_envelope is not None else config
        orderers = self._orderer_signatures(position, number, block, metadata, is_config=config is not None)
        self.records.append(BlockRecord(number, header_hash.hex(), previous.hex(), bytes(block.header.data_hash).hex(),
                                        config is not None, orderers, tuple(transactions)))
        if config is not None:
            self._apply_config(number, config)
        elif position == 0:
            self.fail(Check.STRUCTURE, number, "", "the genesis block holds no channel configuration")

    def _apply_config(self, number: int, config_envelope: bytes) -> None:
        try:
            msps = _channel_msps(config_envelope)
            records = [msp.record(number) for msp in msps.values()]
        except (DecodeError, *_MALFORMED) as err:
            self.fail(Check.STRUCTURE, number, "", f"its channel configuration is unreadable: {err}")
            return
        self.msps, self.last_config = msps, number
        self.msp_records.extend(records)

    def _transaction(self, position: int, number: int, index: int, entry: bytes, flags: bytes,
                     count: int) -> tuple[TransactionRecord, bytes | None]:
        """Check one envelope; return its record and, for a configuration transaction, its ConfigEnvelope."""
        code = validation_code_name(flags[index]) if index < len(flags) else "NOT_RECORDED"
        envelope = _parse(common_pb2.Envelope, entry)
        payload = _parse(common_pb2.Payload, bytes(envelope.payload)) if envelope is not None else None
        channel_header = signature_header = None
        if payload is not None:
            channel_header = _parse(common_pb2.ChannelHeader, bytes(payload.header.channel_header))
            signature_header = _parse(common_pb2.SignatureHeader, bytes(payload.header.signature_header))
        if payload is None or channel_header is None or signature_header is None:
            self.fail(Check.STRUCTURE, number, "", f"transaction {index} is not an envelope with a payload header")
            return TransactionRecord(index, "", "UNREADABLE", "", code), None
        tx_id, kind = str(channel_header.tx_id), int(channel_header.type)
        type_name = common_pb2.HeaderType.Name(kind) if kind in common_pb2.HeaderType.values() else f"TYPE_{kind}"
        if position == 0 and index == 0:
            self.channel = str(channel_header.channel_id)
        elif str(channel_header.channel_id) != self.channel:
            self.fail(Check.STRUCTURE, number, tx_id, f"names channel {channel_header.channel_id!r}, "
                                                      f"not {self.channel!r}")
        self.count(Check.VALIDATION_CODES)
        if index >= len(flags):
            self.fail(Check.VALIDATION_CODES, number, tx_id, f"the peer recorded no validation code for transaction "
                                                             f"{index} of {count}")
        elif flags[index] not in _DEFINED_CODES:
            self.fail(Check.VALIDATION_CODES, number, tx_id, f"the peer recorded validation code {flags[index]}, "
                                                             f"which Fabric does not define")
        creator = bytes(signature_header.creator)
        creator_msp = ""
        # The genesis block's configuration is unsigned by design (configtxgen makes it); it is the anchor.
        if not (position == 0 and kind == common_pb2.HeaderType.CONFIG and not creator):
            creator_msp = self._creator(number, tx_id, creator, bytes(envelope.payload), bytes(envelope.signature))
        endorsers: tuple[str, ...] = ()
        config = None
        if kind == common_pb2.HeaderType.ENDORSER_TRANSACTION:
            endorsers = self._endorser_transaction(number, tx_id, payload, signature_header, code)
        elif kind == common_pb2.HeaderType.CONFIG:
            config = bytes(payload.data)
            if count != 1:
                self.fail(Check.STRUCTURE, number, tx_id, "a configuration transaction shares its block")
        return TransactionRecord(index, tx_id, type_name, creator_msp, code, endorsers), config

    def _creator(self, number: int, tx_id: str, creator: bytes, payload: bytes, signature: bytes) -> str:
        self.count(Check.CREATOR_SIGNATURES)
        self.count(Check.CREATOR_CERTIFICATES)
        signer = self.identity(creator, orderer=False)
        if signer.problem:
            self.fail(Check.CREATOR_CERTIFICATES, number, tx_id, f"the creator is not a valid identity: {signer.problem}")
        if signer.certificate is None:
            self.fail(Check.CREATOR_SIGNATURES, number, tx_id, "the creator's certificate is unreadable, so its "
                                                               "signature cannot be checked")
        else:
            problem = signature_problem(signer.certificate, signature, payload)
            if problem:
                self.fail(Check.CREATOR_SIGNATURES, number, tx_id, f"creator {signer.msp_id}: {problem}")
        return signer.msp_id

    def _endorser_transaction(self, number: int, tx_id: str, payload: Any, signature_header: Any,
                              code: str) -> tuple[str, ...]:
        valid = code == _VALID
        if valid:
            # The committing peer checks these; a VALID flag on a transaction that fails them is the peer's word only.
            self.count(Check.TRANSACTION_IDS)
            expected = hashlib.sha256(bytes(signature_header.nonce) + bytes(signature_header.creator)).hexdigest()
            if tx_id != expected:
                self.fail(Check.TRANSACTION_IDS, number, tx_id, "the transaction id is not sha256(nonce + creator)")
            elif tx_id in self.valid_tx_ids:
                self.fail(Check.TRANSACTION_IDS, number, tx_id, f"a valid transaction with this id is already in "
                                                                f"block {self.valid_tx_ids[tx_id]}")
            else:
                self.valid_tx_ids[tx_id] = number
        transaction = _parse(transaction_pb2.Transaction, bytes(payload.data))
        if transaction is None or not transaction.actions:
            self.fail(Check.STRUCTURE, number, tx_id, "the endorser transaction has no actions")
            return ()
        endorsers: list[str] = []
        if valid:
            self.count(Check.ENDORSEMENTS)
        for action in transaction.actions:
            action_payload = _parse(transaction_pb2.ChaincodeActionPayload, bytes(action.payload))
            if action_payload is None:
                self.fail(Check.STRUCTURE, number, tx_id, "a transaction action does not parse")
                continue
            response_payload = bytes(action_payload.action.proposal_response_payload)
            if _parse(proposal_response_pb2.ProposalResponsePayload, response_payload) is None:
                self.fail(Check.STRUCTURE, number, tx_id, "a proposal response payload does not parse")
            if valid and not action_payload.action.endorsements:
                self.fail(Check.ENDORSEMENTS, number, tx_id, "a valid transaction action carries no endorsements")
            for endorsement in action_payload.action.endorsements:
                endorser = self.identity(bytes(endorsement.endorser), orderer=False)
                endorsers.append(endorser.msp_id)
                if not valid:
                    continue   # the peers rejected it; its endorsements change nothing
                problem = endorser.problem
                if problem is None and endorser.certificate is not None:
                    signed = response_payload + bytes(endorsement.endorser)
                    problem = signature_problem(endorser.certificate, bytes(endorsement.signature), signed)
                if problem:
                    self.fail(Check.ENDORSEMENTS, number, tx_id, f"endorsement by {endorser.msp_id or '?'}: {problem}")
        return tuple(endorsers)

    def _orderer_signatures(self, position: int, number: int, block: Any, metadata: list[bytes], *,
                            is_config: bool) -> tuple[str, ...]:
        """Check the orderer's block signature (``mcs.VerifyBlock``) and the last config it signed."""
        if position == 0:
            return ()   # configtxgen leaves the genesis block unsigned; trusted_genesis_hash anchors it
        self.count(Check.ORDERER_SIGNATURES)
        signed = _parse(common_pb2.Metadata, metadata[common_pb2.BlockMetadataIndex.SIGNATURES]) if metadata else None
        if signed is None or not signed.signatures:
            self.fail(Check.ORDERER_SIGNATURES, number, "", "the block carries no orderer signature")
            return ()
        value, header = bytes(signed.value), block_header_bytes(
            int(block.header.number), bytes(block.header.previous_hash), bytes(block.header.data_hash))
        signers: list[str] = []
        for signature in signed.signatures:
            if not signature.signature_header:
                self.fail(Check.ORDERER_SIGNATURES, number, "", "a block signature has no signature header "
                                                                "(BFT identifier headers are not checked here)")
                continue
            signature_header = _parse(common_pb2.SignatureHeader, bytes(signature.signature_header))
            if signature_header is None:
                self.fail(Check.ORDERER_SIGNATURES, number, "", "a block signature's header does not parse")
                continue
            signer = self.identity(bytes(signature_header.creator), orderer=True)
            signers.append(signer.msp_id)
            problem = signer.problem
            if problem is None and signer.certificate is not None:
                problem = signature_problem(signer.certificate, bytes(signature.signature),
                                            value + bytes(signature.signature_header) + header)
            if problem:
                self.fail(Check.ORDERER_SIGNATURES, number, "", f"orderer signature by {signer.msp_id or '?'}: {problem}")
        block_metadata = _parse(common_pb2.OrdererBlockMetadata, value)
        expected = number if is_config else self.last_config
        if block_metadata is None:
            self.fail(Check.ORDERER_SIGNATURES, number, "", "the signed orderer metadata does not parse")
        elif int(block_metadata.last_config.index) != expected:
            self.fail(Check.ORDERER_SIGNATURES, number, "", f"the orderer signed block "
                                                            f"{block_metadata.last_config.index} as the last "
                                                            f"configuration block, but it is block {expected}")
        return tuple(signers)

    def report(self, *, source: str, height: int, ran: Sequence[Check]) -> ChainReport:
        checks = tuple(CheckResult(check, self.checked[check], tuple(self.problems[check])) for check in ran)
        return ChainReport(self.channel, source, height, tuple(self.records), tuple(self.msp_records), checks)


_BLOCK_CHECKS = (Check.STRUCTURE, Check.BLOCK_NUMBERS, Check.PREVIOUS_HASHES, Check.DATA_HASHES,
                 Check.ORDERER_SIGNATURES, Check.CREATOR_SIGNATURES, Check.CREATOR_CERTIFICATES,
                 Check.TRANSACTION_IDS, Check.ENDORSEMENTS, Check.VALIDATION_CODES)


def verify_blocks(blocks: Sequence[bytes], *, trusted_genesis_hash: str | None = None,
                  current_block_hash: str | None = None, source: str = "") -> ChainReport:
    """Verify a channel's chain from its genesis block, with no network: a pure function.

    Parameters
    ----------
    blocks
        Serialized ``common.Block`` messages, block 0 first (as :func:`fetch_chain` returns them).
    trusted_genesis_hash
        The hex header hash of the channel's genesis block, known independently (e.g. hashed from
        the block the channel was created with): adds the ``genesis-block`` check.
    current_block_hash
        The hex hash a peer reports as its current block: adds the ``chain-info`` check that it is
        the hash of the last block given.
    source
        Where the blocks came from, for the report.

    Returns
    -------
    ChainReport
        Every check's result; a failed check never raises.

    Raises
    ------
    FabricError
        No blocks were given.
    """
    if not blocks:
        raise FabricError("a chain to verify needs at least its genesis block")
    verifier = _Verifier()
    for position, raw in enumerate(blocks):
        verifier.verify(position, raw)
    ran = list(_BLOCK_CHECKS)
    if trusted_genesis_hash is not None:
        ran.append(Check.GENESIS_BLOCK)
        verifier.count(Check.GENESIS_BLOCK)
        genesis = verifier.records[0].hash if verifier.records and verifier.records[0].number == 0 else ""
        if genesis != trusted_genesis_hash.lower():
            verifier.fail(Check.GENESIS_BLOCK, 0, "", f"the genesis block's hash {genesis[:16] or '(none)'}... is not "
                                                      f"the trusted {trusted_genesis_hash[:16]}...")
    if current_block_hash is not None:
        ran.append(Check.CHAIN_INFO)
        verifier.count(Check.CHAIN_INFO)
        last = verifier.records[-1] if verifier.records else None
        if last is None or last.hash != current_block_hash.lower():
            where = last.number if last else len(blocks) - 1
            verifier.fail(Check.CHAIN_INFO, where, "", f"the peer's current block hash {current_block_hash[:16]}... "
                                                       f"is not the hash of the last block fetched")
    return verifier.report(source=source, height=len(blocks), ran=ran)


def verify_chain(chain: Chain, *, trusted_genesis_hash: str | None = None) -> ChainReport:
    """Verify a fetched chain (:func:`verify_blocks`), holding its last block to the peer's chain info."""
    return verify_blocks(chain.blocks, trusted_genesis_hash=trusted_genesis_hash,
                         current_block_hash=chain.current_block_hash, source=chain.source)


def block_hash(block: bytes) -> str:
    """The hex header hash of a serialized block: for ``trusted_genesis_hash``, the channel's genesis block file's."""
    parsed = _parse(common_pb2.Block, block)
    if parsed is None or not parsed.HasField("header"):
        raise FabricError("the block given does not parse as a Fabric block with a header")
    return _header_hash(parsed).hex()


# -- peers ----------------------------------------------------------------------------------


def _chain_info(gateway: Gateway, channel_name: str, msp_id: str) -> Any:
    contract = gateway.network(channel_name).contract("qscc")
    raw = contract.evaluate("GetChainInfo", [channel_name], endorsing_organizations=[msp_id])
    info = _parse(ledger_pb2.BlockchainInfo, raw)
    if info is None:
        raise BlockFetchError(gateway.address, channel_name, "its chain info does not parse")
    if info.HasField("bootstrappingSnapshotInfo"):
        first = int(info.bootstrappingSnapshotInfo.lastBlockInSnapshot) + 1
        raise BlockFetchError(gateway.address, channel_name, f"the peer joined from a snapshot and holds blocks "
                                                             f"from {first} only; audit a peer with the whole chain")
    return info


def fetch_chain(gateway: Gateway, channel_name: str, *, peer_msp_id: str | None = None,
                workers: int = DEFAULT_FETCH_WORKERS) -> Chain:
    """Read every block of ``channel_name`` (0 to the height) from one organization's peer.

    Each call is a ``qscc`` evaluation pinned to ``peer_msp_id``, so the gateway answers from that
    organization's peer (its own, when it is the gateway's organization) and no other.

    Parameters
    ----------
    gateway
        A connection to the peer, as any identity its channel lets read (``Readers``).
    channel_name
        The channel.
    peer_msp_id
        The MSP id of the peer's organization; by default the gateway identity's own.
    workers
        How many blocks to ask for at once.

    Raises
    ------
    GatewayError
        The peer could not be reached, or refused (the identity may not read the channel).
    BlockFetchError
        The peer's chain info is unusable, or it joined from a snapshot and lacks early blocks.
    """
    if workers < 1:
        raise FabricError(f"fetching blocks needs at least one worker, got {workers}")
    msp_id = peer_msp_id or gateway.identity.msp_id
    info = _chain_info(gateway, channel_name, msp_id)
    height = int(info.height)
    contract = gateway.network(channel_name).contract("qscc")

    def block(number: int) -> bytes:
        return contract.evaluate("GetBlockByNumber", [channel_name, str(number)], endorsing_organizations=[msp_id])

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch-block") as pool:
        blocks = tuple(pool.map(block, range(height)))
    return Chain(channel_name, msp_id, gateway.address, height, bytes(info.currentBlockHash).hex(), blocks)


def _hashes_and_flags(chain: Chain) -> Iterator[tuple[str, bytes]]:
    for raw in chain.blocks:
        block = _parse(common_pb2.Block, raw)
        if block is None or not block.HasField("header"):
            yield "", b""
            continue
        metadata = block.metadata.metadata
        index = common_pb2.BlockMetadataIndex.TRANSACTIONS_FILTER
        yield _header_hash(block).hex(), bytes(metadata[index]) if len(metadata) > index else b""


def compare_chains(chains: Sequence[Chain]) -> PeerAgreement:
    """Whether every peer holds the same block hashes, and recorded the same validation codes, for
    every block up to the lowest height among them (a pure function of the fetched chains)."""
    if not chains:
        raise FabricError("comparing peers needs at least one fetched chain")
    views = tuple(PeerView(c.msp_id, c.address, c.height, c.current_block_hash) for c in chains)
    common = min(len(c.blocks) for c in chains)
    columns = [list(_hashes_and_flags(c))[:common] for c in chains]
    same_hashes: list[Problem] = []
    same_flags: list[Problem] = []
    for number in range(common):
        hashes = {c.msp_id: column[number][0] for c, column in zip(chains, columns, strict=True)}
        if len(set(hashes.values())) > 1:
            held = ", ".join(f"{msp} holds {value[:16] or '(unreadable)'}" for msp, value in hashes.items())
            same_hashes.append(Problem(number, "", f"the peers disagree: {held}"))
        flags = {c.msp_id: column[number][1] for c, column in zip(chains, columns, strict=True)}
        if len(set(flags.values())) > 1:
            same_flags.append(Problem(number, "", "the peers recorded different validation codes: " + ", ".join(
                f"{msp} {[validation_code_name(code) for code in value]}" for msp, value in flags.items())))
    checks = (CheckResult(Check.SAME_BLOCK_HASHES, common, tuple(same_hashes)),
              CheckResult(Check.SAME_VALIDATION_CODES, common, tuple(same_flags)))
    return PeerAgreement(views, common, checks)


def audit_ledger(peers: Mapping[str, Gateway], channel_name: str, *, trusted_genesis_hash: str | None = None,
                 workers: int = DEFAULT_FETCH_WORKERS) -> LedgerAudit:
    """Fetch the chain from each organization's peer, verify each copy, and compare them.

    Parameters
    ----------
    peers
        MSP id of each organization -> a gateway connected to that organization's peer. Connect to
        each peer directly: through a single gateway, that one peer relays every answer.
    channel_name
        The channel.
    trusted_genesis_hash
        The genesis block's known hex hash (:func:`block_hash` of the channel's block file).
    workers
        Blocks asked for at once from each peer.

    Raises
    ------
    GatewayError, BlockFetchError
        As for :func:`fetch_chain`.
    """
    if not peers:
        raise FabricError("auditing the ledger needs at least one peer")
    chains = [fetch_chain(gateway, channel_name, peer_msp_id=msp_id, workers=workers)
              for msp_id, gateway in peers.items()]
    reports = tuple(verify_chain(chain, trusted_genesis_hash=trusted_genesis_hash) for chain in chains)
    return LedgerAudit(reports, compare_chains(chains))
