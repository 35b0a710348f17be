"""Unit tests of the file wallet: layout, private key mode, and damaged or duplicate entries."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fedledger.errors import WalletError
from fedledger.fabric.wallet import FileWallet

from .certs import self_signed


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_identity_is_stored_with_its_key_readable_by_the_owner_only(tmp_path: Path) -> None:
    wallet = FileWallet(tmp_path / "wallet")
    enrollment = self_signed("acme", msp_id="ManufacturerMSP", roles="participant")

    wallet.put("acme", enrollment)

    entry = tmp_path / "wallet" / "acme"
    assert mode(entry / "key.pem") == 0o600
    assert mode(entry) == 0o700 and mode(tmp_path / "wallet") == 0o700
    assert sorted(p.name for p in entry.iterdir()) == ["ca-chain.pem", "cert.pem", "identity.json", "key.pem"]
    again = wallet.get("acme")
    assert again.identity == enrollment.identity and again.signer.matches(enrollment.identity.certificate)
    assert again.attributes() == {"fedledger.role": "participant"}


def test_list_shows_metadata_and_never_keys(tmp_path: Path) -> None:
    wallet = FileWallet(tmp_path)
    for name in ("bolt", "acme"):
        wallet.put(name, self_signed(name))

    listed = wallet.list()

    assert [e["label"] for e in listed] == ["acme", "bolt"]
    assert all(set(e) == {"label", "msp_id", "enrollment_id", "fingerprint"} for e in listed)
    assert "PRIVATE KEY" not in repr(listed) + repr(wallet.get("acme"))


def test_a_duplicate_label_is_refused_unless_replacing(tmp_path: Path) -> None:
    wallet = FileWallet(tmp_path)
    first, second = self_signed("acme"), self_signed("acme")
    wallet.put("acme", first)

    with pytest.raises(WalletError, match="already in the wallet"):
        wallet.put("acme", second)
    assert wallet.get("acme").identity == first.identity
    wallet.put("acme", second, replace=True)
    assert wallet.get("acme").identity == second.identity


def test_missing_invalid_and_removed_entries(tmp_path: Path) -> None:
    wallet = FileWallet(tmp_path)
    wallet.put("acme", self_signed("acme"))

    wallet.remove("acme")

    with pytest.raises(WalletError, match="not in the wallet"):
        wallet.get("acme")
    with pytest.raises(WalletError, match="not in the wallet"):
        wallet.remove("acme")
    with pytest.raises(WalletError, match="label '../etc' is invalid"):
        wallet.get("../etc")
    assert FileWallet(tmp_path / "none").list() == []


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    wallet = FileWallet(tmp_path)
    wallet.put("acme", self_signed("acme"))
    (tmp_path / "acme" / "key.pem").chmod(0o644)

    with pytest.raises(WalletError, match="readable by others .*chmod 600"):
        wallet.get("acme")


def test_a_key_that_does_not_match_the_certificate_is_refused(tmp_path: Path) -> None:
    wallet = FileWallet(tmp_path)
    wallet.put("acme", self_signed("acme"))
    wallet.put("bolt", self_signed("bolt"))
    (tmp_path / "acme" / "key.pem").write_bytes((tmp_path / "bolt" / "key.pem").read_bytes())

    with pytest.raises(WalletError, match="does not match its certificate"):
        wallet.get("acme")


def test_a_damaged_entry_is_reported(tmp_path: Path) -> None:
    wallet = FileWallet(tmp_path)
    wallet.put("acme", self_signed("acme"))
    (tmp_path / "acme" / "identity.json").write_text("{broken")

    with pytest.raises(WalletError, match="wallet entry acme is damaged"):
        wallet.get("acme")
    with pytest.raises(WalletError, match="damaged"):
        wallet.list()
