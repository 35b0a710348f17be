"""Unit tests of gateway errors: the gateway's per-peer details decoded from a google.rpc.Status."""

from __future__ import annotations

from fabric_protos.gateway import gateway_pb2
from google.protobuf import any_pb2, wrappers_pb2

from fedledger.errors import EndorseError, ErrorDetail, FabricError, GatewayError
from fedledger.fabric.client import STATUS_DETAILS_KEY, decode_error_details, details_from_metadata, error_message

from .fakes import packed, rpc_status

CHAINCODE_MESSAGE = 'company name "Bad Name!" is invalid: use 1-64 of a-z 0-9 . _ -, starting with a letter or digit'


ENDORSE_STATUS = rpc_status(10, "failed to endorse transaction, see attached details for more info", [
    packed(gateway_pb2.ErrorDetail(address="peer0.manufacturer.fedledger.local:7051", msp_id="ManufacturerMSP",
                                   message=f"chaincode response 500, {CHAINCODE_MESSAGE}")),
    packed(wrappers_pb2.StringValue(value="not an error detail")),
    packed(gateway_pb2.ErrorDetail(address="peer0.warehouse.fedledger.local:9051", msp_id="WarehouseMSP",
                                   message=f"chaincode response 500, {CHAINCODE_MESSAGE}")),
])


def test_error_details_are_decoded_from_the_grpc_status_and_other_details_skipped() -> None:
    details = decode_error_details(ENDORSE_STATUS)

    assert details == [
        ErrorDetail("peer0.manufacturer.fedledger.local:7051", "ManufacturerMSP",
                    f"chaincode response 500, {CHAINCODE_MESSAGE}"),
        ErrorDetail("peer0.warehouse.fedledger.local:9051", "WarehouseMSP",
                    f"chaincode response 500, {CHAINCODE_MESSAGE}"),
    ]


def test_details_are_found_in_the_trailing_metadata_and_garbage_is_ignored() -> None:
    metadata: list[tuple[str, str | bytes]] = [("content-type", "application/grpc"),
                                                (STATUS_DETAILS_KEY, ENDORSE_STATUS)]

    assert len(details_from_metadata(metadata)) == 2
    assert details_from_metadata([("content-type", "application/grpc")]) == []
    assert details_from_metadata(None) == []
    assert decode_error_details(b"\xff\xff\xff not a status") == []
    assert decode_error_details(rpc_status(2, "no details", [])) == []


def test_the_chaincodes_message_surfaces_verbatim_with_the_ids_involved() -> None:
    details = decode_error_details(ENDORSE_STATUS)
    text = error_message("endorsing RegisterCompany (tx abc123) on channel fedledger", address="127.0.0.1:7051",
                         code="ABORTED", message="failed to endorse transaction, see attached details for more info",
                         details=details, stage="endorse")

    err = EndorseError("abc123", text, code="ABORTED", details=details, address="127.0.0.1:7051")

    assert isinstance(err, GatewayError) and isinstance(err, FabricError)
    assert CHAINCODE_MESSAGE in str(err)
    assert "abc123" in str(err) and "127.0.0.1:7051" in str(err) and "RegisterCompany" in str(err)
    assert "peer0.warehouse.fedledger.local:9051 (WarehouseMSP): chaincode response 500" in str(err)
    assert (err.tx_id, err.code, err.address) == ("abc123", "ABORTED", "127.0.0.1:7051")
    assert err.details == tuple(details)


def test_messages_say_what_to_do_next() -> None:
    unreachable = error_message("evaluating Version", address="10.0.0.9:7051", code="UNAVAILABLE",
                                message="failed to connect to all addresses", details=[], stage="evaluate")
    slow = error_message("endorsing X", address="a:1", code="DEADLINE_EXCEEDED", message="Deadline Exceeded",
                         details=[], stage="endorse")
    uncommitted = error_message("reading the commit status", address="a:1", code="DEADLINE_EXCEEDED",
                                message="Deadline Exceeded", details=[], stage="commit_status")

    # Fabric's gateway also answers UNAVAILABLE itself, e.g. for a channel its peer has not joined.
    unknown_channel = error_message("evaluating Version on channel nochannel", address="10.0.0.9:7051",
                                    code="UNAVAILABLE", details=[], stage="evaluate",
                                    message="failed to get config for channel [nochannel]: "
                                            "could not get last config for channel nochannel")

    assert "cannot reach the Fabric Gateway at 10.0.0.9:7051" in unreachable
    assert "TLS root certificate and server name" in unreachable
    assert "cannot reach" not in unknown_channel
    assert "failed at the Fabric Gateway 10.0.0.9:7051: UNAVAILABLE: failed to get config" in unknown_channel
    assert "check the channel name" in unknown_channel
    assert "longer endorse_timeout" in slow
    assert "may still commit" in uncommitted
