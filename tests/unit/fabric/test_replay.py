"""A replayed envelope is told apart from a fresh success: the height before the submission decides."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.errors import CommitError, FabricError, ReplayedTransactionError, SubmitError
from fedledger.fabric import Status
from fedledger.fabric.ca import Enrollment
from fedledger.fabric.commit import replay_checked
from fedledger.fabric.contract import committed

from .certs import self_signed
from .fakes import FailedCall, FakeGateway, prepared_payload, scripted

VALID, DUPLICATE_TXID, MVCC_READ_CONFLICT = 0, 9, 11


@pytest.fixture(scope="module")
def enrollment() -> Enrollment:
    return self_signed("client", msp_id="ManufacturerMSP")


def test_a_status_in_the_block_the_channel_was_at_or_later_is_this_submissions(enrollment: Enrollment) -> None:
    fake = FakeGateway(height=5, statuses=[(VALID, 5)])
    with scripted(enrollment, fake) as contract:
        transaction = contract.new_signed_transaction(prepared_payload(tx_id="t5"), b"signature")
        result = committed(transaction.submit())

    assert result == b"ok"
    # The height is read before the envelope is sent, never after.
    assert fake.names() == ["Evaluate", "Submit", "CommitStatus"]


def test_a_transaction_endorsed_here_is_sent_without_a_height_read_the_first_time_only(
        enrollment: Enrollment) -> None:
    # Its id comes from a nonce this process drew: only this connection could have put it on the
    # ledger, so its first submission cannot be a replay. Sent again, it is checked like any envelope.
    fake = FakeGateway(height=5, statuses=[(VALID, 5), (VALID, 5)])
    with scripted(enrollment, fake) as contract:
        transaction = contract.new_proposal("RegisterCompany", ("a-co",)).endorse()
        assert committed(transaction.submit()) == b"ok"
        sent_again = transaction.with_signature(b"signature").submit()
        with pytest.raises(ReplayedTransactionError):
            committed(sent_again)

    assert fake.names() == ["Endorse", "Submit", "CommitStatus", "Evaluate", "Submit", "CommitStatus"]
    assert sent_again.height_before == 6


def test_a_status_in_an_older_block_is_the_originals_and_the_submission_a_replay(enrollment: Enrollment) -> None:
    fake = FakeGateway(height=5, statuses=[(VALID, 3), (VALID, 3)])
    with scripted(enrollment, fake) as contract:
        submitted = contract.new_signed_transaction(prepared_payload(tx_id="t3"), b"signature").submit()
        with pytest.raises(ReplayedTransactionError) as replay:
            submitted.status()
        with pytest.raises(ReplayedTransactionError):
            submitted.status()  # asked again, the answer does not change (and is not fetched again)

    err = replay.value
    assert isinstance(err, CommitError)
    assert (err.tx_id, err.block_number, err.original_block, err.height) == (submitted.tx_id, 3, 3, 5)
    assert (err.code, err.original_code) == ("DUPLICATE_TXID", "VALID")
    assert str(err) == (f"transaction {submitted.tx_id} was already committed in block 3 before this submission "
                        f"(the channel was at height 5): the envelope is a replay; nothing new was written. To write "
                        f"again, endorse a new proposal")
    assert fake.names().count("CommitStatus") == 1


def test_the_replay_of_a_transaction_that_committed_invalid_says_how_it_committed(enrollment: Enrollment) -> None:
    fake = FakeGateway(height=9, statuses=[(MVCC_READ_CONFLICT, 2)])
    with scripted(enrollment, fake) as contract:
        with pytest.raises(ReplayedTransactionError) as replay:
            committed(contract.new_signed_transaction(prepared_payload(tx_id="t2"), b"signature").submit())

    assert replay.value.original_code == "MVCC_READ_CONFLICT"
    assert "was already committed (as MVCC_READ_CONFLICT) in block 2 before this submission" in str(replay.value)


def test_a_copy_the_peers_marked_duplicate_is_reported_as_a_replay_in_words(enrollment: Enrollment) -> None:
    fake = FakeGateway(height=5, statuses=[(DUPLICATE_TXID, 7)])
    with scripted(enrollment, fake) as contract:
        submitted = contract.new_proposal("RegisterCompany", ("a-co",)).endorse().submit()
        status = submitted.status()
        with pytest.raises(ReplayedTransactionError) as replay:
            committed(submitted)

    assert status == Status("DUPLICATE_TXID", 7, submitted.tx_id)
    assert (replay.value.block_number, replay.value.duplicate_block, replay.value.original_block) == (7, 7, None)
    assert (f"transaction {submitted.tx_id} was already on the ledger when this copy was committed in block 7, as "
            f"DUPLICATE_TXID: the envelope is a replay; nothing new was written") in str(replay.value)


def test_without_a_signer_the_blocks_this_connection_saw_are_the_height(enrollment: Enrollment) -> None:
    # Signed off-line, the client cannot ask the peer; what it saw commit bounds the height from below.
    fake = FakeGateway(statuses=[(VALID, 4), (VALID, 4)])
    with scripted(enrollment, fake, signer=False) as contract:
        transaction = contract.new_signed_transaction(prepared_payload(tx_id="t9"), b"signature")
        first = transaction.submit()
        status = first.with_signature(b"status signature").status()
        replayed = transaction.submit()
        with pytest.raises(ReplayedTransactionError) as replay:
            replayed.with_signature(b"status signature").status()

    assert "Evaluate" not in fake.names()
    assert (first.height_before, status.block_number) == (0, 4)
    assert (replayed.height_before, replay.value.block_number, replay.value.height) == (5, 4, 5)


def test_when_the_height_cannot_be_read_nothing_is_submitted(enrollment: Enrollment) -> None:
    fake = FakeGateway(fail={"Evaluate": FailedCall(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")})
    with scripted(enrollment, fake) as contract:
        transaction = contract.new_signed_transaction(prepared_payload(tx_id="t7"), b"signature")
        with pytest.raises(SubmitError) as failed:
            transaction.submit()

    assert failed.value.tx_id == transaction.tx_id
    assert "reading the channel's height first (nothing is sent to ordering if this fails)" in str(failed.value)
    assert "Submit" not in fake.names()


def test_a_signed_transaction_is_rebuilt_from_its_bytes_and_signature(enrollment: Enrollment) -> None:
    payload = prepared_payload(tx_id="ab12", name="RegisterCompany", result=b'{"name":"a-co"}')
    with scripted(enrollment, FakeGateway()) as contract:
        transaction = contract.new_signed_transaction(payload, b"sig")
        with pytest.raises(FabricError, match="is for channel 'other', not 'fedledger'"):
            contract.new_signed_transaction(prepared_payload(channel="other"), b"sig")
        with pytest.raises(FabricError, match="an empty signature"):
            contract.new_signed_transaction(payload, b"")
        with pytest.raises(FabricError, match="does not parse"):
            contract.new_signed_transaction(b"\xff\xff\xff", b"sig")

    assert (transaction.tx_id, transaction.channel_name, transaction.transaction_name) == (
        "ab12", "fedledger", "RegisterCompany")
    assert transaction.bytes() == payload and transaction.signature == b"sig"
    assert transaction.result == b'{"name":"a-co"}'


@given(block=st.integers(0, 10**6), height=st.integers(0, 10**6))
def test_a_status_is_refused_exactly_when_its_block_is_below_the_height_before(block: int, height: int) -> None:
    status = Status("VALID", block, "t")
    if block < height:
        with pytest.raises(ReplayedTransactionError):
            replay_checked(status, height_before=height)
    else:
        assert replay_checked(status, height_before=height) is status
