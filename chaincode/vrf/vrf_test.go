package vrf

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"filippo.io/edwards25519"
)

// vectorsFile is shared with the Python tests (tests/unit/crypto/test_vrf.py).
const vectorsFile = "../../tests/vectors/ecvrf_edwards25519_sha512_tai.json"

type rfcVector struct {
	Name  string `json:"name"`
	SK    string `json:"sk"`
	PK    string `json:"pk"`
	Alpha string `json:"alpha"`
	H     string `json:"h"`
	Pi    string `json:"pi"`
	Beta  string `json:"beta"`
}

type vectorsDocument struct {
	Suite   string      `json:"suite"`
	Vectors []rfcVector `json:"vectors"`
}

func loadVectors(tb testing.TB) []rfcVector {
	tb.Helper()
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		tb.Fatalf("reading the shared vectors: %v", err)
	}
	var doc vectorsDocument
	if err := json.Unmarshal(raw, &doc); err != nil {
		tb.Fatalf("parsing %s: %v", vectorsFile, err)
	}
	if doc.Suite != "ECVRF-EDWARDS25519-SHA512-TAI" {
		tb.Fatalf("vectors are for suite %q", doc.Suite)
	}
	return doc.Vectors
}

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// example is RFC 9381 example 17 (one-byte alpha), the proof the rejection tests forge from.
func example(t *testing.T) (publicKey, alpha, pi []byte) {
	t.Helper()
	v := loadVectors(t)[1]
	return unhex(t, v.PK), unhex(t, v.Alpha), unhex(t, v.Pi)
}

// Encodings of special points, as in the Python tests.
var (
	identityEncoding = append([]byte{0x01}, make([]byte, 31)...)
	// (0, -1), of order 2: y = p - 1.
	orderTwoEncoding = append(append([]byte{0xec}, bytes.Repeat([]byte{0xff}, 30)...), 0x7f)
	// (sqrt(-1), 0), of order 4.
	orderFourEncoding = make([]byte, 32)
	// A point of order 8; TestTheSmallOrderPointsHaveTheirOrders checks it.
	orderEightEncoding = mustHex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// aliasAboveP is the 32-byte encoding whose y field is p + k (k < 19), with the sign bit set or not.
func aliasAboveP(k int, sign bool) []byte {
	enc := append(append([]byte{byte(0xed + k)}, bytes.Repeat([]byte{0xff}, 30)...), 0x7f)
	if sign {
		enc[31] |= 0x80
	}
	return enc
}

func decodePoint(tb testing.TB, enc []byte) *edwards25519.Point {
	tb.Helper()
	p, err := new(edwards25519.Point).SetBytes(enc)
	if err != nil {
		tb.Fatalf("decoding %x: %v", enc, err)
	}
	return p
}

// withTorsion adds a small-order point to enc's point: still on the curve, out of the subgroup.
func withTorsion(tb testing.TB, enc, torsion []byte) []byte {
	tb.Helper()
	sum := new(edwards25519.Point).Add(decodePoint(tb, enc), decodePoint(tb, torsion))
	return sum.Bytes()
}

func forge(pi []byte, at int, part []byte) []byte {
	out := bytes.Clone(pi)
	copy(out[at:], part)
	return out
}

// requireError checks that err is an *Error with the given reason and exact message.
func requireError(t *testing.T, err error, reason error, message string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want %q", message)
	}
	var vrfErr *Error
	if !errors.As(err, &vrfErr) {
		t.Fatalf("error %T %q is not a *vrf.Error", err, err)
	}
	if !errors.Is(err, reason) {
		t.Errorf("error %q has reason %v, want %v", err, vrfErr.Reason, reason)
	}
	if err.Error() != message {
		t.Errorf("error %q, want %q", err, message)
	}
}

// prove is RFC 9381 section 5.1 (with the nonce of section 5.4.2.2), for tests only: the
// chaincode never proves. TestTheTestProverGivesTheRFCProofs pins it to the RFC.
func prove(tb testing.TB, secretKey, alpha []byte) (publicKey, pi []byte) {
	tb.Helper()
	digest := sha512.Sum512(secretKey)
	x, err := new(edwards25519.Scalar).SetBytesWithClamping(digest[:32])
	if err != nil {
		tb.Fatal(err)
	}
	publicKey = new(edwards25519.Point).ScalarBaseMult(x).Bytes()
	h, hBytes, err := encodeToCurve(publicKey, alpha)
	if err != nil {
		tb.Fatal(err)
	}
	gamma := new(edwards25519.Point).ScalarMult(x, h)
	nonce := sha512.Sum512(append(bytes.Clone(digest[32:]), hBytes...))
	k, err := new(edwards25519.Scalar).SetUniformBytes(nonce[:])
	if err != nil {
		tb.Fatal(err)
	}
	kB := new(edwards25519.Point).ScalarBaseMult(k)
	kH := new(edwards25519.Point).ScalarMult(k, h)
	c := challenge(publicKey, hBytes, gamma.Bytes(), kB.Bytes(), kH.Bytes())
	wideC := make([]byte, 32)
	copy(wideC, c)
	cScalar, err := new(edwards25519.Scalar).SetCanonicalBytes(wideC)
	if err != nil {
		tb.Fatal(err)
	}
	s := new(edwards25519.Scalar).MultiplyAdd(cScalar, x, k)
	pi = append(append(gamma.Bytes(), c...), s.Bytes()...)
	return publicKey, pi
}

// RFC 9381 Appendix B.3 vectors

func TestTheVectorsFileHoldsTheThreeRFCExamples(t *testing.T) {
	vectors := loadVectors(t)

	var names []string
	for _, v := range vectors {
		names = append(names, v.Name)
	}

	if got := strings.Join(names, ", "); got != "example 16, example 17, example 18" {
		t.Fatalf("vectors are %s", got)
	}
}

func TestEncodeToCurveGivesTheRFCPointH(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			h, err := EncodeToCurve(unhex(t, v.PK), unhex(t, v.Alpha))

			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(h); got != v.H {
				t.Fatalf("h = %s, want %s", got, v.H)
			}
		})
	}
}

func TestVerifyAcceptsTheRFCProofsAndReturnsTheirOutputs(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			beta, err := Verify(unhex(t, v.PK), unhex(t, v.Alpha), unhex(t, v.Pi))

			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(beta); got != v.Beta {
				t.Fatalf("beta = %s, want %s", got, v.Beta)
			}
		})
	}
}

func TestProofToHashGivesTheRFCOutputs(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			beta, err := ProofToHash(unhex(t, v.Pi))

			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(beta); got != v.Beta {
				t.Fatalf("beta = %s, want %s", got, v.Beta)
			}
		})
	}
}

func TestTheTestProverGivesTheRFCProofs(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			publicKey, pi := prove(t, unhex(t, v.SK), unhex(t, v.Alpha))

			if got := hex.EncodeToString(publicKey); got != v.PK {
				t.Errorf("pk = %s, want %s", got, v.PK)
			}
			if got := hex.EncodeToString(pi); got != v.Pi {
				t.Errorf("pi = %s, want %s", got, v.Pi)
			}
		})
	}
}

// Proofs made by the Python prover (fedledger.crypto.vrf.prove) outside the RFC vectors. The first
// alpha needs hash-to-curve counter 4 (the RFC examples need only 0 and 1); the second is long.
func TestVerifyAgreesWithThePythonProver(t *testing.T) {
	long := make([]byte, 200)
	for i := range long {
		long[i] = byte(i)
	}
	cases := []struct {
		name             string
		publicKey, alpha []byte
		h, pi, beta      string
	}{
		{
			name:      "hash to curve at counter 4",
			publicKey: mustHex("937e9cf13437384408012ed2a3067baa00a93008bcd89d0451fdb5caadf115c9"),
			alpha:     []byte("round 9"),
			h:         "baa6ea3609299bf73a6cec048274bcb127b2427b85eb3d2eff24198d25218163",
			pi: "1a45e0c9aca64dd4c0e60923b721f7fc1e92e1b26543025e1fe50bc56412d45d1c41dc97f1be8cf68fd2fc60b6f7ebd6" +
				"e7631d3dceb96108e6ffd1633c122a3ca4cba880b0a8a88b4672d5d47b81ef03",
			beta: "5700d96442654d0333c85c3387629abdab4d18bb2860dd67681d6e602acc010a" +
				"1edbafc58763c8cac2ebc3f60405099beadf0e0f3f13555d3de82eaf9d7f7628",
		},
		{
			name:      "200-byte alpha",
			publicKey: mustHex("297e35298d1ffc8b3907d3d02ae15a503f637659ec6d0a67f2fd0d78daeace45"),
			alpha:     long,
			h:         "592fa055059cf83c8c95d0650317a351c579eac03faa4cbfeadb724d5c45e59e",
			pi: "ce2ac3403f0da38bdc9d42eb85d88554dbb3c9edc7d936bd49645371d6e6a7d00efbc503646d6e93c3c1ec1c79b59914" +
				"4eab784bfdde9f5f9a538d2481599c46b22b1572e0aed480edff1e869af9dd0a",
			beta: "b611844772367ef6f39ef435bc443a9c231fbbecca8009d0663934ccb0da43f1" +
				"abcab745c717f1222c3e81c1816b09bc4d32e9ed2a122fd7a6ac884e107b62d5",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := EncodeToCurve(tc.publicKey, tc.alpha)
			if err != nil {
				t.Fatal(err)
			}
			beta, err := Verify(tc.publicKey, tc.alpha, mustHex(tc.pi))

			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(h); got != tc.h {
				t.Errorf("h = %s, want %s", got, tc.h)
			}
			if got := hex.EncodeToString(beta); got != tc.beta {
				t.Errorf("beta = %s, want %s", got, tc.beta)
			}
		})
	}
}

// Rejections

func TestAProofForAnotherAlphaDoesNotVerify(t *testing.T) {
	publicKey, alpha, pi := example(t)

	_, err := Verify(publicKey, append(bytes.Clone(alpha), 0x00), pi)

	requireError(t, err, ErrInvalidProof, "proof does not verify")
}

func TestAProofUnderAnotherPublicKeyDoesNotVerify(t *testing.T) {
	_, alpha, pi := example(t)
	otherKey := unhex(t, loadVectors(t)[0].PK)

	_, err := Verify(otherKey, alpha, pi)

	requireError(t, err, ErrInvalidProof, "proof does not verify")
}

func TestAFlippedBitAnywhereInAProofPartIsRejected(t *testing.T) {
	publicKey, alpha, pi := example(t)
	parts := []struct {
		name       string
		start, end int
	}{{"Gamma", 0, 32}, {"c", 32, 48}, {"s", 48, 80}}
	for _, part := range parts {
		t.Run(part.name, func(t *testing.T) {
			for bit := part.start * 8; bit < part.end*8; bit++ {
				forged := bytes.Clone(pi)
				forged[bit/8] ^= 1 << (bit % 8)

				if beta, err := Verify(publicKey, alpha, forged); err == nil {
					t.Fatalf("bit %d flipped: accepted with beta %x", bit, beta)
				}
			}
		})
	}
}

func TestSAtOrAboveTheGroupOrderIsRejected(t *testing.T) {
	publicKey, alpha, pi := example(t)
	// L in little-endian, then s + L (the same scalar mod L: accepting it makes proofs malleable)
	// and the largest 32-byte value.
	l := mustHex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
	sPlusL := addLittleEndian(pi[48:], l)
	for name, s := range map[string][]byte{
		"s = L":         l,
		"s + L":         sPlusL,
		"s = 2^256 - 1": bytes.Repeat([]byte{0xff}, 32),
	} {
		t.Run(name, func(t *testing.T) {
			forged := forge(pi, 48, s)

			_, err := Verify(publicKey, alpha, forged)
			requireError(t, err, ErrScalarRange, "proof's scalar s is not below the group order")
			_, err = ProofToHash(forged)
			requireError(t, err, ErrScalarRange, "proof's scalar s is not below the group order")
		})
	}
}

func addLittleEndian(a, b []byte) []byte {
	out := make([]byte, len(a))
	carry := 0
	for i := range a {
		sum := int(a[i]) + int(b[i]) + carry
		out[i] = byte(sum)
		carry = sum >> 8
	}
	return out
}

func TestAProofOfTheWrongLengthIsRejected(t *testing.T) {
	publicKey, alpha, pi := example(t)
	for _, length := range []int{0, 79, 81, 160} {
		forged := append(bytes.Clone(pi), pi...)[:length]
		want := "proof is " + strconv.Itoa(length) + " bytes, expected 80"

		_, err := Verify(publicKey, alpha, forged)
		requireError(t, err, ErrLength, want)
		_, err = ProofToHash(forged)
		requireError(t, err, ErrLength, want)
	}
}

func TestAPublicKeyOfTheWrongLengthIsRejected(t *testing.T) {
	publicKey, alpha, pi := example(t)
	for _, length := range []int{0, 31, 33} {
		key := append(bytes.Clone(publicKey), publicKey...)[:length]

		_, err := Verify(key, alpha, pi)

		requireError(t, err, ErrLength, "public key is "+strconv.Itoa(length)+" bytes, expected 32")
	}
}

func TestTheSmallOrderPointsHaveTheirOrders(t *testing.T) {
	for order, enc := range map[int][]byte{
		1: identityEncoding, 2: orderTwoEncoding, 4: orderFourEncoding, 8: orderEightEncoding,
	} {
		p := decodePoint(t, enc)
		if !bytes.Equal(p.Bytes(), enc) {
			t.Errorf("order %d point: %x is not canonical", order, enc)
		}
		multiple := new(edwards25519.Point).Set(p)
		for n := 1; n < order; n++ {
			if multiple.Equal(identity) == 1 {
				t.Errorf("point %x has order %d, want %d", enc, n, order)
			}
			multiple.Add(multiple, p)
		}
		if multiple.Equal(identity) != 1 {
			t.Errorf("point %x does not have order %d", enc, order)
		}
	}
}

func TestASmallOrderPublicKeyIsRejected(t *testing.T) {
	_, alpha, pi := example(t)
	for name, key := range map[string][]byte{
		"identity": identityEncoding, "order 2": orderTwoEncoding,
		"order 4": orderFourEncoding, "order 8": orderEightEncoding,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Verify(key, alpha, pi)

			requireError(t, err, ErrSmallOrder, "public key is a small-order point")
		})
	}
}

func TestEveryEncodingWithYAbovePIsRejectedAsNonCanonical(t *testing.T) {
	publicKey, alpha, pi := example(t)
	filippoAccepts := 0
	for k := 0; k < 19; k++ {
		for _, sign := range []bool{false, true} {
			enc := aliasAboveP(k, sign)
			if _, err := new(edwards25519.Point).SetBytes(enc); err == nil {
				filippoAccepts++
			}

			_, err := Verify(enc, alpha, pi)
			requireError(t, err, ErrNotCanonical, "public key is not a canonical encoding of a curve point")
			_, err = Verify(publicKey, alpha, forge(pi, 0, enc))
			requireError(t, err, ErrNotCanonical, "proof's Gamma is not a canonical encoding of a curve point")
			_, err = ProofToHash(forge(pi, 0, enc))
			requireError(t, err, ErrNotCanonical, "proof's Gamma is not a canonical encoding of a curve point")
		}
	}
	// Point.SetBytes alone would take these; only the re-encoding check refuses them.
	if filippoAccepts == 0 {
		t.Fatal("no alias above p decodes with Point.SetBytes; the test lost its point")
	}
}

func TestANegativeZeroXIsRejectedAsNonCanonical(t *testing.T) {
	publicKey, alpha, pi := example(t)
	for name, enc := range map[string][]byte{
		"identity with sign bit": forge(identityEncoding, 31, []byte{0x80}),
		"order 2 with sign bit":  forge(orderTwoEncoding, 31, []byte{0xff}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Verify(enc, alpha, pi)
			requireError(t, err, ErrNotCanonical, "public key is not a canonical encoding of a curve point")
			_, err = Verify(publicKey, alpha, forge(pi, 0, enc))
			requireError(t, err, ErrNotCanonical, "proof's Gamma is not a canonical encoding of a curve point")
		})
	}
}

func TestAPublicKeyOffTheCurveIsRejected(t *testing.T) {
	_, alpha, pi := example(t)
	offCurve := append([]byte{0x02}, make([]byte, 31)...)

	_, err := Verify(offCurve, alpha, pi)

	requireError(t, err, ErrNotCanonical, "public key is not a canonical encoding of a curve point")
}

func TestAPublicKeyOutsideThePrimeOrderSubgroupIsRejected(t *testing.T) {
	publicKey, alpha, pi := example(t)
	for name, torsion := range map[string][]byte{"order 2": orderTwoEncoding, "order 8": orderEightEncoding} {
		t.Run(name, func(t *testing.T) {
			_, err := Verify(withTorsion(t, publicKey, torsion), alpha, pi)

			requireError(t, err, ErrNotInSubgroup, "public key is not in the prime-order subgroup")
		})
	}
}

func TestAGammaOutsideThePrimeOrderSubgroupIsRejectedDeliberately(t *testing.T) {
	publicKey, alpha, pi := example(t)
	for name, torsion := range map[string][]byte{"order 2": orderTwoEncoding, "order 8": orderEightEncoding} {
		t.Run(name, func(t *testing.T) {
			// RFC 9381 alone would give this Gamma the same beta (8*T is the identity); FedLedger
			// refuses it outright, as the Python verifier does.
			forged := forge(pi, 0, withTorsion(t, pi[:32], torsion))

			_, err := Verify(publicKey, alpha, forged)
			requireError(t, err, ErrNotInSubgroup, "proof's Gamma is not in the prime-order subgroup")
			_, err = ProofToHash(forged)
			requireError(t, err, ErrNotInSubgroup, "proof's Gamma is not in the prime-order subgroup")
		})
	}
}

func TestASmallOrderGammaIsRejected(t *testing.T) {
	publicKey, alpha, pi := example(t)
	for name, gamma := range map[string][]byte{
		"identity": identityEncoding, "order 2": orderTwoEncoding,
		"order 4": orderFourEncoding, "order 8": orderEightEncoding,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Verify(publicKey, alpha, forge(pi, 0, gamma))

			requireError(t, err, ErrSmallOrder, "proof's Gamma is a small-order point")
		})
	}
}

func TestAZeroChallengeAndZeroSDoNotVerify(t *testing.T) {
	publicKey, alpha, pi := example(t)
	// U and V are then the identity: the verifier must simply refuse.
	forged := forge(pi, 32, make([]byte, 48))

	_, err := Verify(publicKey, alpha, forged)

	requireError(t, err, ErrInvalidProof, "proof does not verify")
}

func TestTheKeyIsCheckedBeforeTheProofAsInPython(t *testing.T) {
	_, alpha, pi := example(t)

	_, err := Verify(identityEncoding, alpha, pi[:79])

	requireError(t, err, ErrSmallOrder, "public key is a small-order point")
}

func TestVerifyDoesNotModifyItsArguments(t *testing.T) {
	publicKey, alpha, pi := example(t)
	keyCopy, alphaCopy, piCopy := bytes.Clone(publicKey), bytes.Clone(alpha), bytes.Clone(pi)

	if _, err := Verify(publicKey, alpha, pi); err != nil {
		t.Fatal(err)
	}

	if !bytes.Equal(publicKey, keyCopy) || !bytes.Equal(alpha, alphaCopy) || !bytes.Equal(pi, piCopy) {
		t.Fatal("Verify modified its arguments")
	}
}

// Invariants

// FuzzVerify never panics, and whatever it accepts has the output ProofToHash gives.
func FuzzVerify(f *testing.F) {
	for _, v := range loadVectors(f) {
		pk, alpha, pi := unhex(f, v.PK), unhex(f, v.Alpha), unhex(f, v.Pi)
		f.Add(pk, alpha, pi)
		f.Add(pk, alpha, forge(pi, 0, orderEightEncoding))
		f.Add(aliasAboveP(3, false), alpha, pi)
	}
	f.Fuzz(func(t *testing.T, publicKey, alpha, pi []byte) {
		beta, err := Verify(publicKey, alpha, pi)
		if err != nil {
			var vrfErr *Error
			if !errors.As(err, &vrfErr) || vrfErr.Reason == nil {
				t.Fatalf("error %q is not a *vrf.Error with a reason", err)
			}
			return
		}
		if len(beta) != OutputSize {
			t.Fatalf("beta is %d bytes", len(beta))
		}
		fromProof, err := ProofToHash(pi)
		if err != nil {
			t.Fatalf("Verify accepted a proof ProofToHash refuses: %v", err)
		}
		if !bytes.Equal(beta, fromProof) {
			t.Fatalf("Verify gave beta %x, ProofToHash %x", beta, fromProof)
		}
	})
}

// FuzzProveVerify: every honest proof verifies to its own output and to no other alpha.
func FuzzProveVerify(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(unhex(f, v.SK), unhex(f, v.Alpha), []byte("other"))
	}
	f.Fuzz(func(t *testing.T, seed, alpha, other []byte) {
		secretKey := sha512.Sum512(seed) // any fuzz input becomes a 32-byte secret key
		publicKey, pi := prove(t, secretKey[:32], alpha)

		beta, err := Verify(publicKey, alpha, pi)

		if err != nil {
			t.Fatalf("an honest proof was refused: %v", err)
		}
		if fromProof, _ := ProofToHash(pi); !bytes.Equal(beta, fromProof) {
			t.Fatalf("Verify gave beta %x, ProofToHash %x", beta, fromProof)
		}
		if !bytes.Equal(other, alpha) {
			_, err := Verify(publicKey, other, pi)
			requireError(t, err, ErrInvalidProof, "proof does not verify")
		}
	})
}
