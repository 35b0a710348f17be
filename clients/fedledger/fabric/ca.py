"""A client for the Fabric CA REST API: CA info, register, enroll, reenroll, revoke and CRLs.

Enrollment authenticates with the enrollment id and secret (HTTP Basic); every other call is
signed by an enrolled identity with Fabric CA's token: ``base64(cert) "." base64(signature)``,
the signature (low-S ECDSA, SHA-256) over ``method "." b64(uri) "." b64(body) "." b64(cert)``.
TLS is always verified against the CA's own chain, given by the caller; there is no switch to
turn verification off.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from fedledger.errors import CAError, CAUnreachableError, FabricError
from fedledger.fabric.identity import Identity, Signer

# The Fabric CA's attribute extension: JSON {"attrs": {...}} in certificates it issues.
ATTRIBUTE_EXTENSION_OID = x509.ObjectIdentifier("1.2.3.4.5.6.7.8.1")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, repr=False)
class Enrollment:
    """An enrolled identity: its certificate, its signer (private key) and the CA chain."""

    identity: Identity
    signer: Signer = field(compare=False)
    ca_chain_pem: bytes

    def __repr__(self) -> str:
        return f"Enrollment(msp_id={self.identity.msp_id!r}, fingerprint={self.identity.fingerprint[:16]})"

    @property
    def enrollment_id(self) -> str:
        """The certificate's common name: the id the CA knows the identity by."""
        cn = self.identity.certificate.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        return str(cn[0].value) if cn else ""

    def attributes(self) -> dict[str, str]:
        """The Fabric CA attributes the certificate carries (e.g. ``fedledger.role``)."""
        try:
            ext = self.identity.certificate.extensions.get_extension_for_oid(ATTRIBUTE_EXTENSION_OID)
        except x509.ExtensionNotFound:
            return {}
        value = ext.value
        raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b"{}"
        attrs = json.loads(raw).get("attrs", {})
        return {str(k): str(v) for k, v in attrs.items()}


@dataclass(frozen=True)
class CAInfo:
    """What the CA says about itself."""

    ca_name: str
    ca_chain_pem: bytes
    version: str


@dataclass(frozen=True)
class Revocation:
    """The certificates a revocation covered (serial, AKI in hex) and the CRL it produced."""

    revoked: tuple[tuple[str, str], ...]
    crl_pem: bytes

    def crl(self) -> x509.CertificateRevocationList:
        """The parsed CRL."""
        return x509.load_pem_x509_crl(self.crl_pem)


class CAClient:
    """One Fabric CA server (and, optionally, one named CA on it).

    Parameters
    ----------
    url
        ``https://host:port`` of the CA.
    msp_id
        The MSP the CA's identities belong to (recorded with every enrollment).
    tls_root_pem
        The CA's TLS root certificate(s): the server's certificate must chain to one of them.
    ca_name
        The CA's name when the server hosts several.
    timeout
        Seconds for each request.
    """

    def __init__(self, url: str, *, msp_id: str, tls_root_pem: bytes, ca_name: str = "", timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme != "https" or not parsed.hostname:
            raise FabricError(f"the CA url must be https://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self.msp_id = msp_id
        self.ca_name = ca_name
        self.timeout = timeout
        try:
            self._tls = ssl.create_default_context(cadata=tls_root_pem.decode("ascii"))
        except (ssl.SSLError, ValueError) as err:
            raise FabricError(f"the CA's TLS root is not a usable PEM certificate: {err}") from None

    # -- requests -------------------------------------------------------------------------

    def _call(self, operation: str, method: str, path: str, body: dict[str, Any] | None,
              *, auth: Enrollment | tuple[str, str] | None) -> dict[str, Any]:
        uri = f"/api/v1/{path}"
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        request = urllib.request.Request(self.url + uri, data=data if body is not None else None, method=method)
        request.add_header("Content-Type", "application/json")
        if isinstance(auth, tuple):
            request.add_header("Authorization", "Basic " + _b64(f"{auth[0]}:{auth[1]}".encode()))
        elif auth is not None:
            request.add_header("Authorization", self._token(auth, method, uri, data))
        try:
            with urllib.request.urlopen(request, context=self._tls, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            payload = err.read()
        except (urllib.error.URLError, socket.timeout, ConnectionError, ssl.SSLError) as err:
            reason = getattr(err, "reason", err)
            raise CAUnreachableError(self.url, str(reason)) from None
        try:
            document = json.loads(payload)
        except ValueError:
            raise CAError(operation, [f"the CA answered with non-JSON: {payload[:120]!r}"]) from None
        if not document.get("success"):
            errors = document.get("errors") or []
            raise CAError(operation, [str(e.get("message", e)) for e in errors],
                          [int(e.get("code", 0)) for e in errors])
        result = document.get("result")
        return result if isinstance(result, dict) else {}

    @staticmethod
    def _token(enrollment: Enrollment, method: str, uri: str, body: bytes) -> str:
        cert = _b64(enrollment.identity.certificate_pem)
        payload = ".".join([method, _b64(uri.encode()), _b64(body), cert])
        return cert + "." + _b64(enrollment.signer.sign(payload.encode()))

    def _with_ca_name(self, body: dict[str, Any], key: str = "caname") -> dict[str, Any]:
        if self.ca_name:
            body[key] = self.ca_name
        return body

    # -- operations -----------------------------------------------------------------------

    def info(self) -> CAInfo:
        """The CA's name, certificate chain and server version."""
        result = self._call("cainfo", "POST", "cainfo", self._with_ca_name({}), auth=None)
        return CAInfo(str(result.get("CAName", "")), base64.b64decode(result.get("CAChain", "")),
                      str(result.get("Version", "")))

    def enroll(self, enrollment_id: str, secret: str, *, profile: str = "", hosts: tuple[str, ...] = (),
               attributes: tuple[str, ...] = ()) -> Enrollment:
        """Enroll with an id and secret: a fresh key, a CSR, and the CA-signed certificate.

        ``profile="tls"`` asks for a TLS certificate (with ``hosts`` as its SANs);
        ``attributes`` names the registered attributes the certificate must carry.
        """
        signer = Signer.generate()
        body: dict[str, Any] = {"certificate_request": signer.certificate_signing_request(enrollment_id, hosts=hosts).decode()}
        if profile:
            body["profile"] = profile
        if hosts:
            body["hosts"] = list(hosts)
        if attributes:
            body["attr_reqs"] = [{"name": a, "optional": False} for a in attributes]
        result = self._call(f"enrollment of {enrollment_id}", "POST", "enroll",
                            self._with_ca_name(body, "CAName"), auth=(enrollment_id, secret))
        return self._enrollment(result, signer)

    def reenroll(self, current: Enrollment) -> Enrollment:
        """A new key and certificate for an enrolled identity, authorized by its current one."""
        signer = Signer.generate()
        body = {"certificate_request": signer.certificate_signing_request(current.enrollment_id).decode()}
        result = self._call(f"reenrollment of {current.enrollment_id}", "POST", "reenroll",
                            self._with_ca_name(body), auth=current)
        return self._enrollment(result, signer)

    def _enrollment(self, result: dict[str, Any], signer: Signer) -> Enrollment:
        cert = base64.b64decode(result.get("Cert", ""))
        chain = base64.b64decode((result.get("ServerInfo") or {}).get("CAChain", ""))
        identity = Identity(self.msp_id, cert)
        if not signer.matches(identity.certificate):
            raise CAError("enrollment", ["the issued certificate does not carry the requested public key"])
        return Enrollment(identity, signer, chain)

    def register(self, registrar: Enrollment, enrollment_id: str, *, secret: str = "", identity_type: str = "client",
                 affiliation: str = "", attributes: dict[str, str] | None = None, max_enrollments: int = 0) -> str:
        """Register an identity (by a registrar); returns its enrollment secret.

        Attributes are put into enrollment certificates by default (``ecert``), which is how
        ``fedledger.role`` reaches the chaincode.
        """
        body: dict[str, Any] = {"id": enrollment_id, "type": identity_type, "affiliation": affiliation}
        if secret:
            body["secret"] = secret
        if max_enrollments:
            body["max_enrollments"] = max_enrollments
        if attributes:
            body["attrs"] = [{"name": k, "value": v, "ecert": True} for k, v in sorted(attributes.items())]
        result = self._call(f"registration of {enrollment_id}", "POST", "register", self._with_ca_name(body), auth=registrar)
        return str(result.get("secret", secret))

    def revoke(self, registrar: Enrollment, *, enrollment_id: str = "", serial: str = "", aki: str = "",
               reason: str = "") -> Revocation:
        """Revoke an identity (all its certificates) or one certificate (serial + AKI); returns the new CRL."""
        if not enrollment_id and not (serial and aki):
            raise FabricError("revoke needs an enrollment id, or a certificate's serial and AKI")
        body: dict[str, Any] = {"gencrl": True}
        for k, v in (("id", enrollment_id), ("serial", serial), ("aki", aki), ("reason", reason)):
            if v:
                body[k] = v
        what = enrollment_id or f"certificate {serial}"
        result = self._call(f"revocation of {what}", "POST", "revoke", self._with_ca_name(body), auth=registrar)
        revoked = tuple((str(c.get("Serial", "")), str(c.get("AKI", ""))) for c in result.get("RevokedCerts") or [])
        return Revocation(revoked, _crl_pem(result.get("CRL", "")))

    def generate_crl(self, registrar: Enrollment) -> bytes:
        """The CA's current CRL (PEM)."""
        result = self._call("CRL generation", "POST", "gencrl", self._with_ca_name({}), auth=registrar)
        return _crl_pem(result.get("CRL", ""))


def _crl_pem(b64: str) -> bytes:
    raw = base64.b64decode(b64) if b64 else b""
    if raw.startswith(b"-----BEGIN"):
        return raw
    return b"-----BEGIN X509 CRL-----\n" + base64.encodebytes(raw) + b"-----END X509 CRL-----\n" if raw else b""
