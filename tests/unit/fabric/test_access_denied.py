"""Fabric's bare "access denied", explained: which check fails here, or what may be wrong where it cannot be checked."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import grpc
import pytest
from fabric_protos.gateway import gateway_pb2

from fedledger.errors import AccessDeniedError, DenialCause, EndorseError, ErrorDetail, GatewayError
from fedledger.fabric import Signer
from fedledger.fabric.ca import Enrollment
from fedledger.fabric.client import explain_denial, is_access_denied, signed_message

from .certs import self_signed
from .fakes import FailedCall, FakeGateway, packed, rpc_status, scripted

PEER = "127.0.0.1:7051"
ENDORSER_DENIAL = "error validating proposal: access denied: channel [fedledger] creator org [ManufacturerMSP]"
UNPLACED_DENIAL = ("error validating proposal: access denied: channel [fedledger] creator org unknown, creator is "
                   "malformed")
ORDERER_DENIAL = ("received unsuccessful response from orderer: status=FORBIDDEN, info=implicit policy evaluation "
                  "failed - 0 sub-policies were satisfied, but this policy requires 1 of the 'Writers' sub-policies "
                  "to be satisfied: permission denied")
READERS_DENIAL = ("Failed evaluating policy on signed data during check policy on channel [fedledger] with policy "
                  "[/Channel/Application/Readers]")


@pytest.fixture(scope="module")
def enrollment() -> Enrollment:
    return self_signed("client", msp_id="ManufacturerMSP")


def denied_with_details(message: str, code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION) -> FailedCall:
    """A call the gateway failed with one peer's ``message`` attached, as it reports endorser errors."""
    detail = gateway_pb2.ErrorDetail(address=PEER, msp_id="ManufacturerMSP", message=message)
    return FailedCall(code, f"evaluate call to endorser returned error: {message}",
                      rpc_status(code.value[0], message, [packed(detail)]))


@pytest.mark.parametrize(("code", "message", "details", "denied"), [
    ("PERMISSION_DENIED", READERS_DENIAL, [], True),
    ("FAILED_PRECONDITION", f"evaluate call to endorser returned error: {ENDORSER_DENIAL}", [], True),
    ("ABORTED", "failed to endorse transaction, see attached details for more info",
     [ErrorDetail(PEER, "ManufacturerMSP", ENDORSER_DENIAL)], True),
    ("ABORTED", ORDERER_DENIAL, [], True),
    # A chaincode may use the words itself: its refusal is not Fabric's.
    ("ABORTED", "failed to endorse transaction, see attached details for more info",
     [ErrorDetail(PEER, "ManufacturerMSP", "chaincode response 500, access denied: admins only")], False),
    ("UNAVAILABLE", "failed to connect to all addresses", [], False),
], ids=["readers policy", "endorser", "endorser detail", "orderer", "chaincode's own words", "unreachable"])
def test_fabrics_refusals_of_an_identity_are_told_from_other_failures(
        code: str, message: str, details: list[ErrorDetail], denied: bool) -> None:
    assert is_access_denied(code, message, details) is denied


def test_a_signature_by_another_key_is_found_by_verifying_it(enrollment: Enrollment) -> None:
    other = Signer.generate()
    pem = enrollment.identity.certificate_pem

    by_other = explain_denial("ManufacturerMSP", pem, signed=(b"message", other.sign(b"message")))
    by_own = explain_denial("ManufacturerMSP", pem, signed=(b"message", enrollment.signer.sign(b"message")))
    garbage = explain_denial("ManufacturerMSP", pem, signed=(b"message", b"not DER"))
    by_signer = explain_denial("ManufacturerMSP", pem, signer=other)

    assert by_other == (DenialCause.KEY_MISMATCH,
                        "the signing key does not belong to certificate CN=client (ManufacturerMSP): the signature was "
                        "made with another key; sign with the private key issued with that certificate", "CN=client")
    assert garbage[0] is by_signer[0] is DenialCause.KEY_MISMATCH
    assert by_own[0] is DenialCause.UNEXPLAINED


def test_a_certificate_outside_its_validity_period_is_named_with_its_dates() -> None:
    old = self_signed("old", valid_days=(-30, -2))
    early = self_signed("early", valid_days=(2, 30))

    expired = explain_denial("TestMSP", old.identity.certificate_pem, signer=old.signer)
    not_yet = explain_denial("TestMSP", early.identity.certificate_pem, signer=early.signer)
    back_then = explain_denial("TestMSP", old.identity.certificate_pem, signer=old.signer,
                               now=datetime.now(timezone.utc) - timedelta(days=10))

    end = old.identity.certificate.not_valid_after_utc
    assert expired == (DenialCause.EXPIRED, f"certificate CN=old (TestMSP) expired on {end:%Y-%m-%d %H:%M} UTC; "
                                            f"reenroll it at its CA or enroll a new identity", "CN=old")
    assert not_yet[0] is DenialCause.NOT_YET_VALID and "check this machine's clock" in not_yet[1]
    assert back_then[0] is DenialCause.UNEXPLAINED


def test_what_cannot_be_checked_here_is_said_as_what_it_may_be(enrollment: Enrollment) -> None:
    pem = enrollment.identity.certificate_pem

    unplaced = explain_denial("ManufacturerMSP", pem, signer=enrollment.signer, unplaced=True, channel_name="fedledger")
    unexplained = explain_denial("ManufacturerMSP", pem, signer=enrollment.signer)
    unparsable = explain_denial("ManufacturerMSP", b"not a certificate")

    assert unplaced[:2] == (DenialCause.UNKNOWN_MSP,
                            "the peer could not place certificate CN=client (ManufacturerMSP) in any organization of "
                            "channel fedledger: ManufacturerMSP is not one of the channel's MSPs, or the certificate "
                            "was not issued by one of ManufacturerMSP's CAs")
    assert unexplained[:2] == (DenialCause.UNEXPLAINED,
                               "the peer denied access to CN=client (ManufacturerMSP): the certificate may be revoked, "
                               "expired, or not issued by a CA of the channel's MSP ManufacturerMSP")
    assert unparsable[0] is DenialCause.UNKNOWN_MSP and "not a PEM X.509 certificate" in unparsable[1]
    assert "access denied" not in unplaced[1] + unexplained[1]


def test_an_evaluation_signed_with_another_key_raises_the_explained_error(enrollment: Enrollment) -> None:
    fake = FakeGateway(fail={"Evaluate": denied_with_details(ENDORSER_DENIAL)})
    other = Signer.generate()
    with scripted(enrollment, fake, signer=False) as contract:
        proposal = contract.new_proposal("Version")
        with pytest.raises(AccessDeniedError) as denied:
            proposal.with_signature(other.sign(proposal.bytes())).evaluate()

    err = denied.value
    assert isinstance(err, GatewayError)
    assert (err.cause, err.stage, err.tx_id, err.msp_id, err.subject, err.code) == (
        DenialCause.KEY_MISMATCH, "evaluate", proposal.tx_id, "ManufacturerMSP", "CN=client", "FAILED_PRECONDITION")
    lines = str(err).splitlines()
    assert lines[0] == (f"evaluating Version (tx {proposal.tx_id}) on channel fedledger failed at the Fabric Gateway "
                        f"127.0.0.1:1: the signing key does not belong to certificate CN=client (ManufacturerMSP): "
                        f"the signature was made with another key; sign with the private key issued with that "
                        f"certificate")
    # The peer's own words follow, one line per peer.
    assert lines[1:] == [f"  - {PEER} (ManufacturerMSP): {ENDORSER_DENIAL}"]


def test_an_endorsement_by_an_unplaced_creator_names_the_msp_and_the_channel(enrollment: Enrollment) -> None:
    fake = FakeGateway(fail={"Endorse": denied_with_details(UNPLACED_DENIAL, grpc.StatusCode.ABORTED)})
    with scripted(enrollment, fake) as contract:
        with pytest.raises(AccessDeniedError) as denied:
            contract.submit("WhoAmI")

    assert (denied.value.cause, denied.value.stage) == (DenialCause.UNKNOWN_MSP, "endorse")
    assert "could not place certificate CN=client (ManufacturerMSP) in any organization of channel fedledger" in str(
        denied.value)


def test_the_orderer_and_the_commit_status_refusals_are_explained_with_fabrics_words_kept(
        enrollment: Enrollment) -> None:
    other = Signer.generate()
    orderer = FakeGateway(fail={"Submit": FailedCall(grpc.StatusCode.ABORTED, ORDERER_DENIAL)})
    readers = FakeGateway(height=1, statuses=[], fail={
        "CommitStatus": FailedCall(grpc.StatusCode.PERMISSION_DENIED, READERS_DENIAL)})
    with scripted(enrollment, orderer) as contract:
        transaction = contract.new_proposal("WhoAmI").endorse()
        with pytest.raises(AccessDeniedError) as submitted:
            transaction.with_signature(other.sign(transaction.bytes())).submit()
    with scripted(enrollment, readers) as contract:
        with pytest.raises(AccessDeniedError) as status:
            contract.submit("WhoAmI")

    assert (submitted.value.cause, submitted.value.stage) == (DenialCause.KEY_MISMATCH, "submit")
    assert str(submitted.value).endswith(f"(Fabric said ABORTED: {ORDERER_DENIAL})")
    assert (status.value.cause, status.value.stage) == (DenialCause.UNEXPLAINED, "commit_status")
    assert "the peer denied access to CN=client (ManufacturerMSP)" in str(status.value)


def test_other_failures_keep_their_stage_errors(enrollment: Enrollment) -> None:
    chaincode = "chaincode response 500, company name \"Bad Name!\" is invalid"
    fake = FakeGateway(fail={"Endorse": denied_with_details(chaincode, grpc.StatusCode.ABORTED)})
    with scripted(enrollment, fake) as contract:
        with pytest.raises(EndorseError) as refused:
            contract.submit("RegisterCompany", ("Bad Name!",))

    assert not isinstance(refused.value, AccessDeniedError)
    assert chaincode in str(refused.value)


def test_the_creator_is_read_from_the_signed_bytes_of_each_kind_of_request(enrollment: Enrollment) -> None:
    fake = FakeGateway(height=3, statuses=[(0, 3)])
    with scripted(enrollment, fake) as contract:
        contract.submit("WhoAmI")
        contract.evaluate("WhoAmI")
    requests = dict(fake.calls)

    for name in ("Endorse", "Evaluate", "Submit", "CommitStatus"):
        signed = signed_message(requests[name])
        assert signed is not None, name
        assert (signed.msp_id, signed.certificate_pem) == ("ManufacturerMSP", enrollment.identity.certificate_pem)
        assert explain_denial(signed.msp_id, signed.certificate_pem,
                              signed=(signed.message, signed.signature))[0] is DenialCause.UNEXPLAINED
    assert signed_message(gateway_pb2.CommitStatusResponse()) is None


def test_endorsers_that_disagree_raise_the_mismatch_error_and_a_chaincode_refusal_does_not(
        enrollment: Enrollment) -> None:
    from fedledger.errors import EndorsementMismatchError

    def endorse_failing(*messages: str) -> type[BaseException]:
        details = [packed(gateway_pb2.ErrorDetail(address=PEER, msp_id="WarehouseMSP", message=m)) for m in messages]
        call = FailedCall(grpc.StatusCode.ABORTED, "failed to collect enough transaction endorsements, see attached "
                          "details for more info", rpc_status(10, "failed to collect", details))
        with scripted(enrollment, FakeGateway(fail={"Endorse": call})) as contract:
            with pytest.raises(EndorseError) as raised:
                contract.submit_async("Vote", ["t", "1", "true", "", ""])
        return type(raised.value)

    assert endorse_failing("ProposalResponsePayloads do not match") is EndorsementMismatchError
    assert endorse_failing("chaincode response 500, round 1 of task t is closed") is EndorseError
    assert endorse_failing("ProposalResponsePayloads do not match",
                           "chaincode response 500, round 1 of task t is closed") is EndorseError
