"""Unit tests of chaincode-event requests and checkpoints: where a stream starts and how it resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fabric_protos.gateway import gateway_pb2
from hypothesis import given
from hypothesis import strategies as st

from fedledger.errors import FabricError
from fedledger.fabric import ChaincodeEvent, FileCheckpointer, InMemoryCheckpointer
from fedledger.fabric.events import chaincode_events_request

CREATOR = b"serialized identity"


def request(**kwargs: object) -> gateway_pb2.ChaincodeEventsRequest:
    raw = chaincode_events_request(CREATOR, channel_name="fedledger", chaincode_name="fedledger",
                                   **kwargs)  # type: ignore[arg-type]
    return gateway_pb2.ChaincodeEventsRequest.FromString(raw)


def event(block: int, tx_id: str) -> ChaincodeEvent:
    return ChaincodeEvent(block, tx_id, "fedledger", "CompanyRegistered", b"{}")


def test_a_stream_starts_at_the_next_commit_unless_told_otherwise() -> None:
    plain = request()

    assert (plain.channel_id, plain.chaincode_id, plain.identity) == ("fedledger", "fedledger", CREATOR)
    # The gateway accepts "next commit" and "specified" only; it refuses "newest" and "oldest".
    assert plain.start_position.WhichOneof("Type") == "next_commit"
    assert plain.after_transaction_id == ""


def test_a_start_block_is_a_specified_position() -> None:
    from_block = request(start_block=42)

    assert from_block.start_position.WhichOneof("Type") == "specified"
    assert from_block.start_position.specified.number == 42
    assert from_block.after_transaction_id == ""
    with pytest.raises(FabricError, match="negative"):
        request(start_block=-1)


def test_a_checkpoint_wins_over_the_start_block_and_skips_the_processed_transaction() -> None:
    checkpointer = InMemoryCheckpointer()
    assert request(start_block=3, checkpointer=checkpointer).start_position.specified.number == 3

    checkpointer.checkpoint_chaincode_event(event(17, "tx-a"))
    after_event = request(start_block=3, checkpointer=checkpointer)
    checkpointer.checkpoint_block(17)
    after_block = request(start_block=3, checkpointer=checkpointer)

    assert after_event.start_position.specified.number == 17
    assert after_event.after_transaction_id == "tx-a"
    assert after_block.start_position.specified.number == 18
    assert after_block.after_transaction_id == ""


def test_a_file_checkpoint_survives_a_restart_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "listener" / "checkpoint.json"
    first = FileCheckpointer(path)
    assert (first.block_number, first.tx_id) == (None, None)

    first.checkpoint_chaincode_event(event(9, "tx-b"))
    again = FileCheckpointer(path)

    assert (again.block_number, again.tx_id) == (9, "tx-b")
    assert json.loads(path.read_text()) == {"block_number": 9, "tx_id": "tx-b"}
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.json"]


@given(st.lists(st.one_of(
    st.tuples(st.just("block"), st.integers(0, 2**40), st.just("")),
    st.tuples(st.just("event"), st.integers(0, 2**40), st.text("0123456789abcdef", min_size=1, max_size=64)),
), min_size=1, max_size=8))
def test_a_reloaded_file_checkpoint_equals_the_last_one_written(steps: list[tuple[str, int, str]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "checkpoint.json"
        memory, on_disk = InMemoryCheckpointer(), FileCheckpointer(path)
        for kind, block, tx_id in steps:
            for checkpointer in (memory, on_disk):
                if kind == "block":
                    checkpointer.checkpoint_block(block)
                else:
                    checkpointer.checkpoint_chaincode_event(event(block, tx_id))

        reloaded = FileCheckpointer(path)

        assert (reloaded.block_number, reloaded.tx_id) == (memory.block_number, memory.tx_id)


@pytest.mark.parametrize("content", ["{not json", '{"block_number": -1, "tx_id": null}',
                                     '{"block_number": "7", "tx_id": null}', '{"tx_id": "x"}'])
def test_a_damaged_checkpoint_file_is_refused_with_what_to_do(tmp_path: Path, content: str) -> None:
    path = tmp_path / "checkpoint.json"
    path.write_text(content)

    with pytest.raises(FabricError, match=f"checkpoint file {path} is damaged.*delete it"):
        FileCheckpointer(path)
