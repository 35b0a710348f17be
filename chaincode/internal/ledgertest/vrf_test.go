package ledgertest_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"fedledger/chaincode/internal/ledgertest"
	"fedledger/chaincode/vrf"
)

// vrfVectorsFile holds RFC 9381's vectors, shared with chaincode/vrf and the Python tests.
const vrfVectorsFile = "../../../tests/vectors/ecvrf_edwards25519_sha512_tai.json"

func TestTheVRFProverReproducesTheRFCVectors(t *testing.T) {
	raw, err := os.ReadFile(vrfVectorsFile)
	if err != nil {
		t.Fatalf("reading the shared vectors: %v", err)
	}
	var doc struct {
		Suite   string `json:"suite"`
		Vectors []struct {
			Name, SK, PK, Alpha, Pi, Beta string
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || doc.Suite != "ECVRF-EDWARDS25519-SHA512-TAI" || len(doc.Vectors) == 0 {
		t.Fatalf("parsing %s: suite %q, %d vectors, %v", vrfVectorsFile, doc.Suite, len(doc.Vectors), err)
	}
	for _, v := range doc.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			key, err := ledgertest.NewVRFKey(unhex(t, v.SK))
			if err != nil {
				t.Fatal(err)
			}

			pi, err := key.Prove(unhex(t, v.Alpha))

			if err != nil || key.PublicHex() != v.PK || hex.EncodeToString(pi) != v.Pi {
				t.Fatalf("key %s, proof %x (%v); want key %s, proof %s", key.PublicHex(), pi, err, v.PK, v.Pi)
			}
			beta, err := vrf.Verify(key.Public, unhex(t, v.Alpha), pi)
			if err != nil || hex.EncodeToString(beta) != v.Beta {
				t.Fatalf("the proof verifies to %x (%v), want %s", beta, err, v.Beta)
			}
		})
	}
}

func TestEachIdentityProvesUnderItsOwnDeterministicVRFKey(t *testing.T) {
	alice := ledgertest.NewIdentity(t, "Org1MSP", "alice", "")
	again := ledgertest.NewIdentity(t, "Org1MSP", "alice", "")
	bob := ledgertest.NewIdentity(t, "Org1MSP", "bob", "")
	alpha := []byte("round 1")

	pi := alice.VRF.ProveHex(t, alpha)

	if alice.VRF.PublicHex() != again.VRF.PublicHex() || bytes.Equal(alice.VRF.Public, bob.VRF.Public) {
		t.Fatal("VRF keys are not one per MSP id and name")
	}
	if err := vrf.CheckPublicKey(alice.VRF.Public); err != nil {
		t.Fatalf("the public key is refused: %v", err)
	}
	if _, err := vrf.Verify(alice.VRF.Public, alpha, unhex(t, pi)); err != nil {
		t.Fatalf("alice's proof does not verify: %v", err)
	}
	if _, err := vrf.Verify(bob.VRF.Public, alpha, unhex(t, pi)); err == nil {
		t.Fatal("alice's proof verifies under bob's key")
	}
	if _, err := ledgertest.NewVRFKey(make([]byte, 31)); err == nil {
		t.Fatal("a 31-byte secret key was accepted")
	}
}

func TestAdvanceLetsLedgerTimePassBetweenTransactions(t *testing.T) {
	l, alice := newLedger(t)
	mustOK(t, l.Invoke(alice, "TxInfo"))
	next := l.Now()

	l.Advance(90 * time.Second)
	r := mustOK(t, l.Invoke(alice, "TxInfo"))

	if want := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC); !next.Equal(want) {
		t.Fatalf("Now before Advance = %v, want %v (one second per transaction)", next, want)
	}
	if got, want := strings.Split(string(r.Payload), "|")[1], next.Add(90*time.Second).Format(time.RFC3339); got != want {
		t.Fatalf("the transaction after Advance(90s) is stamped %s, want %s", got, want)
	}
	if want := next.Add(91 * time.Second); !l.Now().Equal(want) {
		t.Fatalf("Now after it = %v, want %v: the clock goes on a second per transaction from there", l.Now(), want)
	}
}

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}
