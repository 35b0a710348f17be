// Package vrf verifies ECVRF-EDWARDS25519-SHA512-TAI proofs (RFC 9381, suite 0x03) exactly as
// the FedLedger Python crypto core (clients/fedledger/crypto/vrf.py) does.
//
// The chaincode only verifies: a company proves off-chain, and every peer must then agree, bit
// for bit, on which proofs are valid and on their outputs. The rules are therefore those of the
// Python verifier, including its deliberate strictness beyond RFC 9381:
//
//   - every point encoding must be canonical (RFC 8032 section 5.1.3: y < p, and no "negative
//     zero" x), which filippo.io/edwards25519 does not enforce on its own;
//   - the public key and the proof's Gamma must be non-identity points of the prime-order
//     subgroup (RFC 9381 only asks this of the key's order, not of Gamma's);
//   - the proof's scalar s must be below the group order L.
//
// Nothing here reads a clock, draws randomness or uses floating point.
package vrf

import (
	"bytes"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"

	"filippo.io/edwards25519"
)

// Sizes, in bytes, of the suite's keys, proofs and outputs.
const (
	PublicKeySize = 32
	ProofSize     = 80
	OutputSize    = 64
)

const (
	suite         = 0x03
	pointSize     = 32
	challengeSize = 16 // cLen: RFC 9381 section 5.5 truncates the challenge to 128 bits.
	scalarSize    = 32
	// hashToCurveTries bounds the try-and-increment counter, which is one byte.
	hashToCurveTries = 256
)

// Reasons an input is refused. Every error Verify, ProofToHash and EncodeToCurve return is an
// *Error whose Reason is one of these, so callers can test it with errors.Is.
var (
	ErrLength        = errors.New("wrong length")
	ErrNotCanonical  = errors.New("not a canonical encoding of a curve point")
	ErrSmallOrder    = errors.New("a small-order point")
	ErrNotInSubgroup = errors.New("not in the prime-order subgroup")
	ErrScalarRange   = errors.New("scalar not below the group order")
	ErrInvalidProof  = errors.New("proof does not verify")
	ErrHashToCurve   = errors.New("hash to curve failed")
)

// Error says what is wrong with a key or proof, in the words of the Python verifier, so a client
// sees the same message whichever side refused its input.
type Error struct {
	// Reason is one of the Err* values of this package.
	Reason error
	msg    string
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the Reason, for errors.Is.
func (e *Error) Unwrap() error { return e.Reason }

func fail(reason error, format string, args ...any) *Error {
	return &Error{Reason: reason, msg: fmt.Sprintf(format, args...)}
}

var (
	identity = edwards25519.NewIdentityPoint()
	// groupOrderMinusOne is L - 1, the largest canonical scalar; (L-1)*P + P is L*P.
	groupOrderMinusOne = new(edwards25519.Scalar).Negate(scalarOne())
)

func scalarOne() *edwards25519.Scalar {
	one := make([]byte, scalarSize)
	one[0] = 1
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(one)
	if err != nil {
		panic("vrf: 1 is not a canonical scalar: " + err.Error())
	}
	return s
}

// Verify checks pi, a proof on alpha under publicKey (RFC 9381 section 5.3, validate_key=TRUE),
// and returns the 64-byte VRF output beta.
//
// It fails with an *Error saying what is wrong: a public key of the wrong length, not canonically
// encoded, of small order or outside the prime-order subgroup; a malformed proof (see
// ProofToHash); or a proof that does not verify.
func Verify(publicKey, alpha, pi []byte) ([]byte, error) {
	// The checks run in the order of the Python verifier, so both report the same first fault.
	if len(publicKey) != PublicKeySize {
		return nil, fail(ErrLength, "public key is %d bytes, expected %d", len(publicKey), PublicKeySize)
	}
	y, err := decodeSubgroupPoint(publicKey, "public key")
	if err != nil {
		return nil, err
	}
	gamma, c, s, err := decodeProof(pi)
	if err != nil {
		return nil, err
	}
	h, hBytes, err := encodeToCurve(publicKey, alpha)
	if err != nil {
		return nil, err
	}
	// U = s*B - c*Y and V = s*H - c*Gamma. Negating c mod L is exact because Y and Gamma were
	// checked to lie in the prime-order subgroup, and H lies there by construction.
	negC := new(edwards25519.Scalar).Negate(c)
	u := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(negC, y, s)
	v := new(edwards25519.Point).VarTimeMultiScalarMult(
		[]*edwards25519.Scalar{s, negC}, []*edwards25519.Point{h, gamma})
	expected := challenge(publicKey, hBytes, pi[:pointSize], u.Bytes(), v.Bytes())
	if subtle.ConstantTimeCompare(expected, pi[pointSize:pointSize+challengeSize]) != 1 {
		return nil, fail(ErrInvalidProof, "proof does not verify")
	}
	return gammaToHash(gamma), nil
}

// CheckPublicKey checks a public key as Verify does before it looks at any proof: 32 bytes, a
// canonically encoded point of the prime-order subgroup, not of small order. It fails with an
// *Error saying which.
func CheckPublicKey(publicKey []byte) error {
	if len(publicKey) != PublicKeySize {
		return fail(ErrLength, "public key is %d bytes, expected %d", len(publicKey), PublicKeySize)
	}
	_, err := decodeSubgroupPoint(publicKey, "public key")
	return err
}

// ProofToHash returns the 64-byte VRF output beta of pi (RFC 9381 section 5.2) without verifying
// the proof; use Verify for proofs from anyone else.
//
// It fails with an *Error if pi is not 80 bytes, its Gamma is not a canonically encoded
// non-identity point of the prime-order subgroup, or its scalar s is not below the group order.
func ProofToHash(pi []byte) ([]byte, error) {
	gamma, _, _, err := decodeProof(pi)
	if err != nil {
		return nil, err
	}
	return gammaToHash(gamma), nil
}

// EncodeToCurve hashes alpha, salted with salt (the public key, for this suite), to a point of
// the prime-order subgroup by try-and-increment (RFC 9381 section 5.4.1.1) and returns the
// point's 32-byte encoding H.
//
// It fails only if 256 tries in a row give no point, which happens with probability about 2^-256.
func EncodeToCurve(salt, alpha []byte) ([]byte, error) {
	_, encoded, err := encodeToCurve(salt, alpha)
	return encoded, err
}

func encodeToCurve(salt, alpha []byte) (*edwards25519.Point, []byte, error) {
	input := make([]byte, 0, 2+len(salt)+len(alpha)+2)
	input = append(input, suite, 0x01)
	input = append(input, salt...)
	input = append(input, alpha...)
	ctrAt := len(input)
	input = append(input, 0x00, 0x00)
	for ctr := 0; ctr < hashToCurveTries; ctr++ {
		input[ctrAt] = byte(ctr)
		digest := sha512.Sum512(input)
		candidate, ok := decodeCanonical(digest[:pointSize])
		if !ok {
			continue
		}
		// Multiplying by the cofactor lands in the prime-order subgroup; a small-order candidate
		// lands on the identity and the RFC moves on to the next counter.
		h := new(edwards25519.Point).MultByCofactor(candidate)
		if h.Equal(identity) == 1 {
			continue
		}
		return h, h.Bytes(), nil
	}
	return nil, nil, fail(ErrHashToCurve, "hash to curve failed after %d attempts", hashToCurveTries)
}

// decodeProof splits pi into Gamma, c and s and validates each (RFC 9381 section 5.4.4).
func decodeProof(pi []byte) (gamma *edwards25519.Point, c, s *edwards25519.Scalar, err error) {
	if len(pi) != ProofSize {
		return nil, nil, nil, fail(ErrLength, "proof is %d bytes, expected %d", len(pi), ProofSize)
	}
	gamma, err = decodeSubgroupPoint(pi[:pointSize], "proof's Gamma")
	if err != nil {
		return nil, nil, nil, err
	}
	// c is 16 bytes, far below L, so its zero-extension is always canonical.
	wideC := make([]byte, scalarSize)
	copy(wideC, pi[pointSize:pointSize+challengeSize])
	c, err = new(edwards25519.Scalar).SetCanonicalBytes(wideC)
	if err != nil {
		panic("vrf: a 128-bit challenge is not a canonical scalar: " + err.Error())
	}
	// s >= L would make proofs malleable (s and s + L act alike), so it is refused before any
	// reduction; SetCanonicalBytes refuses exactly the encodings of values >= L.
	s, err = new(edwards25519.Scalar).SetCanonicalBytes(pi[pointSize+challengeSize:])
	if err != nil {
		return nil, nil, nil, fail(ErrScalarRange, "proof's scalar s is not below the group order")
	}
	return gamma, c, s, nil
}

// decodeSubgroupPoint accepts only canonical encodings of non-identity points of the prime-order
// subgroup; what names the field in the error.
func decodeSubgroupPoint(encoding []byte, what string) (*edwards25519.Point, error) {
	point, ok := decodeCanonical(encoding)
	if !ok {
		return nil, fail(ErrNotCanonical, "%s is not a canonical encoding of a curve point", what)
	}
	if new(edwards25519.Point).MultByCofactor(point).Equal(identity) == 1 {
		return nil, fail(ErrSmallOrder, "%s is a small-order point", what)
	}
	// L*P is the identity exactly when P has no torsion component: the curve's group is the
	// order-L subgroup plus a torsion group of order 8, and L is odd, so L kills no torsion.
	lp := new(edwards25519.Point).ScalarMult(groupOrderMinusOne, point)
	lp.Add(lp, point)
	if lp.Equal(identity) != 1 {
		return nil, fail(ErrNotInSubgroup, "%s is not in the prime-order subgroup", what)
	}
	return point, nil
}

// decodeCanonical decodes a point as RFC 8032 section 5.1.3 does, refusing every non-canonical
// encoding. Point.SetBytes accepts y >= p and a set sign bit on x = 0; both re-encode to other
// bytes, so comparing the re-encoding with the input refuses exactly those.
func decodeCanonical(encoding []byte) (*edwards25519.Point, bool) {
	if len(encoding) != pointSize {
		return nil, false
	}
	point, err := new(edwards25519.Point).SetBytes(encoding)
	if err != nil {
		return nil, false
	}
	if !bytes.Equal(point.Bytes(), encoding) {
		return nil, false
	}
	return point, true
}

// challenge is the 16-byte challenge over the five points (RFC 9381 section 5.4.3).
func challenge(points ...[]byte) []byte {
	h := sha512.New()
	h.Write([]byte{suite, 0x02})
	for _, p := range points {
		h.Write(p)
	}
	h.Write([]byte{0x00})
	return h.Sum(nil)[:challengeSize]
}

// gammaToHash is beta = SHA-512(suite || 0x03 || encode(8*Gamma) || 0x00) (RFC 9381 section 5.2).
func gammaToHash(gamma *edwards25519.Point) []byte {
	eightGamma := new(edwards25519.Point).MultByCofactor(gamma)
	h := sha512.New()
	h.Write([]byte{suite, 0x03})
	h.Write(eightGamma.Bytes())
	h.Write([]byte{0x00})
	return h.Sum(nil)
}
