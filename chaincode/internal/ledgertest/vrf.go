package ledgertest

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"testing"

	"filippo.io/edwards25519"

	"fedledger/chaincode/vrf"
)

// VRFKey is an ECVRF-EDWARDS25519-SHA512-TAI key pair (RFC 9381, suite 0x03), for tests only:
// the chaincode's vrf package verifies and never proves, as on a peer, so tests that stand for
// a company proving its leader-election VRF need a prover. It follows RFC 9381 section 5.1
// exactly, nonce included (section 5.4.2.2, as RFC 8032 signs), so its proofs are the RFC's
// test vectors and the Python prover's proofs bit for bit. Nothing here is constant-time: a test
// key guards nothing.
type VRFKey struct {
	secret []byte // the 32-byte secret key SK
	x      *edwards25519.Scalar
	// Public is the 32-byte public key Y = x*B.
	Public []byte
}

// NewVRFKey returns the key pair of a 32-byte secret key, as RFC 8032 section 5.1.5 derives it.
func NewVRFKey(secret []byte) (*VRFKey, error) {
	if len(secret) != 32 {
		return nil, fmt.Errorf("ledgertest: a VRF secret key is 32 bytes, got %d", len(secret))
	}
	h := sha512.Sum512(secret)
	x, err := new(edwards25519.Scalar).SetBytesWithClamping(h[:32])
	if err != nil {
		return nil, fmt.Errorf("ledgertest: clamping the VRF secret: %w", err)
	}
	public := new(edwards25519.Point).ScalarBaseMult(x).Bytes()
	return &VRFKey{secret: append([]byte(nil), secret...), x: x, Public: public}, nil
}

// vrfKeyFor is the deterministic VRF key of an identity, so elections replay alike in every run.
func vrfKeyFor(mspID, name string) *VRFKey {
	secret := sha256.Sum256([]byte("ledgertest/vrf/" + mspID + "/" + name))
	key, err := NewVRFKey(secret[:])
	if err != nil {
		// A 32-byte secret always gives a key; if it does not, edwards25519 is broken.
		panic(err)
	}
	return key
}

// PublicHex is the public key as 64 lower-case hex digits, as RecordCompanyKeys takes it.
func (k *VRFKey) PublicHex() string { return hex.EncodeToString(k.Public) }

// Prove returns the 80-byte proof pi = Gamma || c || s of alpha (RFC 9381 section 5.1).
func (k *VRFKey) Prove(alpha []byte) ([]byte, error) {
	hBytes, err := vrf.EncodeToCurve(k.Public, alpha)
	if err != nil {
		return nil, err
	}
	h, err := new(edwards25519.Point).SetBytes(hBytes)
	if err != nil {
		return nil, fmt.Errorf("ledgertest: H does not decode: %w", err)
	}
	gamma := new(edwards25519.Point).ScalarMult(k.x, h)
	// Nonce (section 5.4.2.2): k = SHA-512(SHA-512(SK)[32:64] || H) mod L.
	hashedSecret := sha512.Sum512(k.secret)
	nonceHash := sha512.New()
	nonceHash.Write(hashedSecret[32:])
	nonceHash.Write(hBytes)
	nonce, err := new(edwards25519.Scalar).SetUniformBytes(nonceHash.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("ledgertest: reducing the nonce: %w", err)
	}
	u := new(edwards25519.Point).ScalarBaseMult(nonce)
	v := new(edwards25519.Point).ScalarMult(nonce, h)
	// Challenge (section 5.4.3): the first 16 bytes of SHA-512(0x03 || 0x02 || Y || H || Gamma ||
	// U || V || 0x00).
	challengeHash := sha512.New()
	challengeHash.Write([]byte{0x03, 0x02})
	for _, p := range [][]byte{k.Public, hBytes, gamma.Bytes(), u.Bytes(), v.Bytes()} {
		challengeHash.Write(p)
	}
	challengeHash.Write([]byte{0x00})
	c := challengeHash.Sum(nil)[:16]
	wideC := make([]byte, 32)
	copy(wideC, c)
	cScalar, err := new(edwards25519.Scalar).SetCanonicalBytes(wideC)
	if err != nil {
		return nil, fmt.Errorf("ledgertest: a 128-bit challenge is not a scalar: %w", err)
	}
	// s = (k + c*x) mod L.
	s := new(edwards25519.Scalar).MultiplyAdd(cScalar, k.x, nonce)
	proof := make([]byte, 0, vrf.ProofSize)
	proof = append(proof, gamma.Bytes()...)
	proof = append(proof, c...)
	return append(proof, s.Bytes()...), nil
}

// ProveHex is Prove in hex (160 digits), as SubmitElectionProof takes it; it fails the test on
// an error, which only a broken curve library could cause.
func (k *VRFKey) ProveHex(tb testing.TB, alpha []byte) string {
	tb.Helper()
	proof, err := k.Prove(alpha)
	if err != nil {
		tb.Fatalf("ledgertest: proving: %v", err)
	}
	return hex.EncodeToString(proof)
}
