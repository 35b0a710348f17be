"""FedLedger's crypto core: packed Paillier, threshold and escrow key custody, ECVRF sortition.

Pure library code: no I/O, no Fabric, no Flower. Typical use for one round::

    layout = Layout(clip=4.0, max_summands=10, max_weight=1024)
    update = encrypt_vector(public_key, values, layout, pool=pool)       # each company
    total = aggregate(updates, weights)                                   # the aggregator
    partials = [partial_decrypt(share, total) for share in my_shares]     # t committee members
    average = combine_partials(tpk, total, partials).values / total.total_weight
"""

from fedledger.crypto.escrow import EscrowRecord, EscrowShare, escrow_private_key, recover_private_key
from fedledger.crypto.packing import Layout
from fedledger.crypto.paillier import (
    DEFAULT_KEY_BITS,
    PrivateKey,
    PublicKey,
    RandomnessPool,
    generate_keypair,
)
from fedledger.crypto.serialization import (
    dump_escrow_record,
    dump_escrow_share,
    dump_key_share,
    dump_partial,
    dump_private_key,
    dump_threshold_key,
    dump_vector,
    load_escrow_record,
    load_escrow_share,
    load_key_share,
    load_partial,
    load_private_key,
    load_threshold_key,
    load_vector,
)
from fedledger.crypto.sortition import Candidate, Selection, select, sortition_input
from fedledger.crypto.threshold import (
    KeyShare,
    PartialDecryption,
    ThresholdDecryption,
    ThresholdPublicKey,
    combine_partials,
    deal_threshold_key,
    partial_decrypt,
    verify_partial,
)
from fedledger.crypto.vector import EncryptedVector, aggregate, decrypt_vector, encrypt_vector
from fedledger.crypto.vrf import VrfKeyPair, proof_to_hash, prove, verify

__all__ = [
    "Candidate",
    "DEFAULT_KEY_BITS",
    "EncryptedVector",
    "EscrowRecord",
    "EscrowShare",
    "KeyShare",
    "Layout",
    "PartialDecryption",
    "PrivateKey",
    "PublicKey",
    "RandomnessPool",
    "Selection",
    "ThresholdDecryption",
    "ThresholdPublicKey",
    "VrfKeyPair",
    "aggregate",
    "combine_partials",
    "deal_threshold_key",
    "decrypt_vector",
    "dump_escrow_record",
    "dump_escrow_share",
    "dump_key_share",
    "dump_partial",
    "dump_private_key",
    "dump_threshold_key",
    "dump_vector",
    "encrypt_vector",
    "escrow_private_key",
    "generate_keypair",
    "load_escrow_record",
    "load_escrow_share",
    "load_key_share",
    "load_partial",
    "load_private_key",
    "load_threshold_key",
    "load_vector",
    "partial_decrypt",
    "proof_to_hash",
    "prove",
    "recover_private_key",
    "select",
    "sortition_input",
    "verify",
    "verify_partial",
]
