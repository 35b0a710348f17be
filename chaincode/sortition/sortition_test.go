package sortition

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"testing"

	"fedledger/chaincode/vrf"
)

// vectorsFile is shared with the Python tests (tests/unit/crypto/test_sortition.py).
const vectorsFile = "../../tests/vectors/sortition.json"

type vectorCandidate struct {
	Company string `json:"company"`
	PK      string `json:"pk"`
	Pi      string `json:"pi"`
	Beta    string `json:"beta"`
	Stake   int64  `json:"stake"`
}

type vectorCase struct {
	Name          string            `json:"name"`
	TaskID        string            `json:"task_id"`
	Round         uint64            `json:"round"`
	Seed          string            `json:"seed"`
	Alpha         string            `json:"alpha"`
	CommitteeSize int               `json:"committee_size"`
	Candidates    []vectorCandidate `json:"candidates"`
	Expected      struct {
		Leader       string   `json:"leader"`
		Committee    []string `json:"committee"`
		CombinedSeed string   `json:"combined_seed"`
	} `json:"expected"`
}

func loadCases(tb testing.TB) []vectorCase {
	tb.Helper()
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		tb.Fatalf("reading the shared vectors: %v", err)
	}
	var doc struct {
		Cases []vectorCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		tb.Fatalf("parsing %s: %v", vectorsFile, err)
	}
	if len(doc.Cases) == 0 {
		tb.Fatalf("%s holds no cases", vectorsFile)
	}
	return doc.Cases
}

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func candidatesOf(tb testing.TB, c vectorCase) []Candidate {
	tb.Helper()
	out := make([]Candidate, 0, len(c.Candidates))
	for _, row := range c.Candidates {
		out = append(out, Candidate{Company: row.Company, PublicKey: unhex(tb, row.PK), Proof: unhex(tb, row.Pi), Stake: row.Stake})
	}
	return out
}

// firstCase is "three companies, committee of one": acme 10, globex 30, initech 60.
func firstCase(t *testing.T) (candidates []Candidate, alpha []byte) {
	t.Helper()
	c := loadCases(t)[0]
	return candidatesOf(t, c), unhex(t, c.Alpha)
}

func withCandidate(candidates []Candidate, company string, change func(*Candidate)) []Candidate {
	out := slices.Clone(candidates)
	for i := range out {
		if out[i].Company == company {
			change(&out[i])
		}
	}
	return out
}

func proofOf(candidates []Candidate, company string) []byte {
	for _, c := range candidates {
		if c.Company == company {
			return c.Proof
		}
	}
	panic("no candidate " + company)
}

// requireError checks that err is an *Error with the given reason, company and exact message.
func requireError(t *testing.T, err error, reason error, company, message string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want %q", message)
	}
	var sortitionErr *Error
	if !errors.As(err, &sortitionErr) {
		t.Fatalf("error %T %q is not a *sortition.Error", err, err)
	}
	if !errors.Is(err, reason) {
		t.Errorf("error %q has reason %v, want %v", err, sortitionErr.Reason, reason)
	}
	if sortitionErr.Company != company {
		t.Errorf("error %q names company %q, want %q", err, sortitionErr.Company, company)
	}
	if err.Error() != message {
		t.Errorf("error %q, want %q", err, message)
	}
}

// Shared vectors (the Python tests check the same file)

func TestTheVectorsFileReproduces(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			alpha, err := Input(c.TaskID, c.Round, unhex(t, c.Seed))
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(alpha); got != c.Alpha {
				t.Fatalf("alpha = %s, want %s", got, c.Alpha)
			}
			for _, row := range c.Candidates {
				beta, err := vrf.Verify(unhex(t, row.PK), alpha, unhex(t, row.Pi))
				if err != nil {
					t.Fatalf("%s: %v", row.Company, err)
				}
				if got := hex.EncodeToString(beta); got != row.Beta {
					t.Fatalf("%s: beta = %s, want %s", row.Company, got, row.Beta)
				}
			}

			selection, err := Select(candidatesOf(t, c), alpha, c.CommitteeSize)

			if err != nil {
				t.Fatal(err)
			}
			if selection.Leader != c.Expected.Leader {
				t.Errorf("leader = %q, want %q", selection.Leader, c.Expected.Leader)
			}
			if !slices.Equal(selection.Committee, c.Expected.Committee) {
				t.Errorf("committee = %q, want %q", selection.Committee, c.Expected.Committee)
			}
			if got := hex.EncodeToString(selection.Seed); got != c.Expected.CombinedSeed {
				t.Errorf("seed = %s, want %s", got, c.Expected.CombinedSeed)
			}
		})
	}
}

func TestTheCombinedSeedCoversExactlyTheStakedCompanies(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			var outputs []Output
			for _, row := range c.Candidates {
				if row.Stake > 0 {
					outputs = append(outputs, Output{Company: row.Company, Beta: unhex(t, row.Beta)})
				}
			}
			slices.Reverse(outputs)

			seed, err := CombinedSeed(outputs)

			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(seed); got != c.Expected.CombinedSeed {
				t.Fatalf("seed = %s, want %s", got, c.Expected.CombinedSeed)
			}
		})
	}
}

func TestTheVectorsDrawWithTheirStakesAlone(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			var stakes []Stake
			for _, row := range c.Candidates {
				if row.Stake > 0 {
					stakes = append(stakes, Stake{Company: row.Company, Amount: row.Stake})
				}
			}

			drawn, err := Draw(unhex(t, c.Expected.CombinedSeed), stakes, c.CommitteeSize+1)

			if err != nil {
				t.Fatal(err)
			}
			want := append([]string{c.Expected.Leader}, c.Expected.Committee...)
			if !slices.Equal(drawn, want) {
				t.Fatalf("drawn %q, want %q", drawn, want)
			}
		})
	}
}

// Determinism

func TestSelectionIsDeterministicAndIgnoresCandidateOrder(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			candidates := candidatesOf(t, c)
			alpha := unhex(t, c.Alpha)
			first, err := Select(candidates, alpha, c.CommitteeSize)
			if err != nil {
				t.Fatal(err)
			}

			for shift := range candidates {
				reordered := append(slices.Clone(candidates[shift:]), candidates[:shift]...)
				for _, order := range [][]Candidate{reordered, reversed(reordered)} {
					again, err := Select(order, alpha, c.CommitteeSize)
					if err != nil {
						t.Fatal(err)
					}
					if again.Leader != first.Leader || !slices.Equal(again.Committee, first.Committee) ||
						!bytes.Equal(again.Seed, first.Seed) {
						t.Fatalf("order %v gave %+v, first order %+v", companies(order), again, first)
					}
				}
			}
		})
	}
}

func reversed(candidates []Candidate) []Candidate {
	out := slices.Clone(candidates)
	slices.Reverse(out)
	return out
}

func companies(candidates []Candidate) []string {
	var out []string
	for _, c := range candidates {
		out = append(out, c.Company)
	}
	return out
}

func TestSelectLeavesTheCallersSliceAlone(t *testing.T) {
	candidates, alpha := firstCase(t)
	candidates = reversed(candidates)
	before := companies(candidates)

	if _, err := Select(candidates, alpha, 1); err != nil {
		t.Fatal(err)
	}

	if after := companies(candidates); !slices.Equal(before, after) {
		t.Fatalf("candidates reordered from %q to %q", before, after)
	}
}

func TestACommitteeOfZeroIsJustALeader(t *testing.T) {
	candidates, alpha := firstCase(t)

	selection, err := Select(candidates, alpha, 0)

	if err != nil {
		t.Fatal(err)
	}
	if selection.Leader == "" || len(selection.Committee) != 0 {
		t.Fatalf("selection %+v", selection)
	}
}

func TestTheLeaderIsNeverOnTheCommittee(t *testing.T) {
	candidates, alpha := firstCase(t)

	selection, err := Select(candidates, alpha, 2)

	if err != nil {
		t.Fatal(err)
	}
	all := append([]string{selection.Leader}, selection.Committee...)
	slices.Sort(all)
	if !slices.Equal(all, []string{"acme", "globex", "initech"}) {
		t.Fatalf("selection %+v does not hold each company once", selection)
	}
}

// Refusals

func TestZeroStakeCompaniesAreNeverChosenButTheirProofsAreChecked(t *testing.T) {
	c := loadCases(t)[1] // holds "zero-stake-co"
	candidates, alpha := candidatesOf(t, c), unhex(t, c.Alpha)
	forged := withCandidate(candidates, "zero-stake-co", func(z *Candidate) { z.Proof = proofOf(candidates, "acme") })

	_, err := Select(forged, alpha, c.CommitteeSize)

	requireError(t, err, vrf.ErrInvalidProof, "zero-stake-co", `company "zero-stake-co": proof does not verify`)
}

func TestAnInvalidProofNamesItsCompany(t *testing.T) {
	candidates, alpha := firstCase(t)
	// globex publishes acme's proof.
	forged := withCandidate(candidates, "globex", func(g *Candidate) { g.Proof = proofOf(candidates, "acme") })

	_, err := Select(forged, alpha, 1)

	requireError(t, err, vrf.ErrInvalidProof, "globex", `company "globex": proof does not verify`)
	var vrfErr *vrf.Error
	if !errors.As(err, &vrfErr) {
		t.Fatalf("error %q does not wrap the *vrf.Error", err)
	}
}

func TestProofsOnAnotherAlphaAreRefusedInCompanyIDOrder(t *testing.T) {
	candidates, _ := firstCase(t)
	otherAlpha := unhex(t, loadCases(t)[1].Alpha)

	_, err := Select(reversed(candidates), otherAlpha, 1)

	requireError(t, err, vrf.ErrInvalidProof, "acme", `company "acme": proof does not verify`)
}

func TestAMalformedProofNamesItsCompany(t *testing.T) {
	candidates, alpha := firstCase(t)
	forged := withCandidate(candidates, "acme", func(a *Candidate) { a.Proof = a.Proof[:79] })

	_, err := Select(forged, alpha, 1)

	requireError(t, err, vrf.ErrLength, "acme", `company "acme": proof is 79 bytes, expected 80`)
}

func TestDuplicateCompanyIDsAreRefused(t *testing.T) {
	candidates, alpha := firstCase(t)

	_, err := Select(append(slices.Clone(candidates), candidates[0]), alpha, 1)

	requireError(t, err, ErrDuplicateCompany, "acme", `duplicate company id "acme"`)
}

func TestANegativeStakeIsRefused(t *testing.T) {
	candidates, alpha := firstCase(t)
	forged := withCandidate(candidates, "globex", func(g *Candidate) { g.Stake = -1 })

	_, err := Select(forged, alpha, 1)

	requireError(t, err, ErrNegativeStake, "globex", `stake of company "globex" is negative (-1)`)
}

func TestStakesPastTheInt64LimitAreRefused(t *testing.T) {
	candidates, alpha := firstCase(t)
	forged := withCandidate(candidates, "acme", func(a *Candidate) { a.Stake = math.MaxInt64 })

	_, err := Select(forged, alpha, 1)

	requireError(t, err, ErrTotalStake, "",
		"total stake 9223372036854775897 exceeds the maximum 9223372036854775807")
}

func TestStakesSummingToExactlyTheLimitAreAccepted(t *testing.T) {
	candidates, alpha := firstCase(t)
	forged := withCandidate(candidates, "acme", func(a *Candidate) { a.Stake = math.MaxInt64 - 90 })

	if _, err := Select(forged, alpha, 2); err != nil {
		t.Fatal(err)
	}
}

func TestTooFewStakedCompaniesForTheCommitteeAreRefused(t *testing.T) {
	c := loadCases(t)[1] // five companies, four with stake

	_, err := Select(candidatesOf(t, c), unhex(t, c.Alpha), 4)

	requireError(t, err, ErrTooFewCandidates, "", "a leader and a committee of 4 need 5 companies with stake, got 4")
}

func TestANegativeCommitteeSizeIsRefused(t *testing.T) {
	candidates, alpha := firstCase(t)

	_, err := Select(candidates, alpha, -1)

	requireError(t, err, ErrCommitteeSize, "", "committee size must be a non-negative integer, got -1")
}

func TestNoCandidatesCannotElectALeader(t *testing.T) {
	_, err := Select(nil, []byte("alpha"), 0)

	requireError(t, err, ErrTooFewCandidates, "", "a leader and a committee of 0 need 1 companies with stake, got 0")
}

func TestCompanyIDsMustBeNonEmptyUTF8(t *testing.T) {
	candidates, alpha := firstCase(t)
	cases := map[string]struct{ id, message string }{
		"empty":         {"", "company id must be a non-empty string"},
		"invalid UTF-8": {"ac\xffme", `company id "ac\xffme" is not valid UTF-8 text`},
		// Python strings may hold a lone surrogate but cannot encode it; Go refuses its encoding.
		"surrogate": {"\xed\xa0\x80", `company id "\xed\xa0\x80" is not valid UTF-8 text`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			forged := withCandidate(candidates, "acme", func(a *Candidate) { a.Company = tc.id })

			_, err := Select(forged, alpha, 1)

			requireError(t, err, ErrInvalidID, tc.id, tc.message)
		})
	}
}

func TestCombinedSeedRefusesBadOutputs(t *testing.T) {
	beta := make([]byte, 64)

	_, err := CombinedSeed([]Output{{"acme", beta}, {"acme", beta}})
	requireError(t, err, ErrDuplicateCompany, "acme", `duplicate company id "acme"`)
	_, err = CombinedSeed([]Output{{"acme", beta[:63]}})
	requireError(t, err, ErrOutputLength, "acme", `VRF output of company "acme" must be 64 bytes`)
	_, err = CombinedSeed([]Output{{"", beta}})
	requireError(t, err, ErrInvalidID, "", "company id must be a non-empty string")
}

// Input

func TestInputIsTheDocumentedLayout(t *testing.T) {
	alpha, err := Input("t\u00e4sk", math.MaxUint64, []byte{0xaa, 0xbb})

	if err != nil {
		t.Fatal(err)
	}
	want := []byte("fedledger/sortition/v1")
	want = append(want, 0, 0, 0, 5, 't', 0xc3, 0xa4, 's', 'k')
	want = append(want, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	want = append(want, 0, 0, 0, 2, 0xaa, 0xbb)
	if !bytes.Equal(alpha, want) {
		t.Fatalf("alpha = %x, want %x", alpha, want)
	}
}

func TestInputIsLengthPrefixed(t *testing.T) {
	// Without length prefixes these two would both be "ab" || "c".
	first, _ := Input("ab", 1, []byte("c"))
	second, _ := Input("a", 1, []byte("bc"))

	if bytes.Equal(first, second) {
		t.Fatal("two different (task, seed) pairs gave the same input")
	}
}

func TestInputRefusesABadTaskID(t *testing.T) {
	_, err := Input("", 1, nil)
	requireError(t, err, ErrInvalidID, "", "task id must be a non-empty string")
	_, err = Input("\xff", 1, nil)
	requireError(t, err, ErrInvalidID, "\xff", `task id "\xff" is not valid UTF-8 text`)
}

// Draw

func TestAZeroStakeCannotBeDrawn(t *testing.T) {
	_, err := Draw(make([]byte, 64), []Stake{{"acme", 1}, {"idle", 0}}, 1)

	requireError(t, err, ErrZeroStake, "idle", `company "idle" has zero stake and cannot be drawn`)
}

func TestDrawRefusesBadStakesAndCounts(t *testing.T) {
	seed := make([]byte, 64)

	_, err := Draw(seed, []Stake{{"acme", -5}}, 1)
	requireError(t, err, ErrNegativeStake, "acme", `stake of company "acme" is negative (-5)`)
	_, err = Draw(seed, []Stake{{"acme", 1}, {"acme", 2}}, 1)
	requireError(t, err, ErrDuplicateCompany, "acme", `duplicate company id "acme"`)
	_, err = Draw(seed, []Stake{{"acme", math.MaxInt64}, {"globex", math.MaxInt64}, {"hooli", math.MaxInt64}}, 1)
	requireError(t, err, ErrTotalStake, "", "total stake 27670116110564327421 exceeds the maximum 9223372036854775807")
	for _, count := range []int{-1, 3} {
		_, err = Draw(seed, []Stake{{"acme", 1}, {"globex", 2}}, count)
		requireError(t, err, ErrDrawCount, "", fmt.Sprintf("cannot draw %d of 2 companies", count))
	}
}

func TestDrawingNoneGivesNone(t *testing.T) {
	drawn, err := Draw(nil, nil, 0)

	if err != nil || len(drawn) != 0 {
		t.Fatalf("drawn %q, err %v", drawn, err)
	}
}

func TestTheLeaderSlotTracksStake(t *testing.T) {
	const trials = 2000
	heavy := 0
	for i := 0; i < trials; i++ {
		seed := sha512.Sum512([]byte(fmt.Sprintf("trial %d", i)))
		drawn, err := Draw(seed[:], []Stake{{"light", 1}, {"heavy", 3}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if drawn[0] == "heavy" {
			heavy++
		}
	}

	// Expected 75%; 65-85% is more than 7 standard deviations either side.
	if heavy < trials*65/100 || heavy > trials*85/100 {
		t.Fatalf("heavy led %d of %d draws", heavy, trials)
	}
}

func TestCommitteeSeatsTrackStakeAmongThoseLeft(t *testing.T) {
	const trials = 3000
	aSecond := 0
	for i := 0; i < trials; i++ {
		seed := sha512.Sum512([]byte(fmt.Sprintf("seat %d", i)))
		drawn, err := Draw(seed[:], []Stake{{"a", 1}, {"b", 2}, {"c", 3}}, 2)
		if err != nil {
			t.Fatal(err)
		}
		if drawn[1] == "a" {
			aSecond++
		}
	}

	// P(a second) = P(b first) * 1/4 + P(c first) * 1/3 = 1/3 * 1/4 + 1/2 * 1/3 = 0.25.
	if aSecond < trials*21/100 || aSecond > trials*29/100 {
		t.Fatalf("a was drawn second %d of %d times", aSecond, trials)
	}
}

// Invariants

// stakesFrom turns fuzz bytes into up to 8 stakes: each entry is a 1-byte id length, the id, and
// an 8-byte stake. Anything left over is ignored.
func stakesFrom(data []byte) []Stake {
	var stakes []Stake
	for len(stakes) < 8 && len(data) > 0 {
		n := int(data[0] % 5)
		data = data[1:]
		if len(data) < n+8 {
			break
		}
		amount := int64(binary.BigEndian.Uint64(data[n:]) >> 2) // below 2^62: four can sum safely
		stakes = append(stakes, Stake{Company: string(data[:n]), Amount: amount})
		data = data[n+8:]
	}
	return stakes
}

// FuzzDraw: Draw never panics; when it succeeds it draws count distinct companies of the pool, and
// the result does not depend on the order of the stakes.
func FuzzDraw(f *testing.F) {
	f.Add(make([]byte, 64), []byte("\x04acme\x00\x00\x00\x00\x00\x00\x00\x0a\x03bob\x00\x00\x00\x00\x00\x00\x00\x1e"), 2)
	f.Add([]byte("seed"), []byte("\x02\xc3\xa4\x00\x00\x00\x00\x00\x00\x00\x04\x01z\x00\x00\x00\x00\x00\x00\x00\x00"), 1)
	f.Fuzz(func(t *testing.T, seed, encoded []byte, count int) {
		stakes := stakesFrom(encoded)

		drawn, err := Draw(seed, stakes, count)

		if err != nil {
			var sortitionErr *Error
			if !errors.As(err, &sortitionErr) {
				t.Fatalf("error %q is not a *sortition.Error", err)
			}
			return
		}
		if len(drawn) != count {
			t.Fatalf("drew %d, asked for %d", len(drawn), count)
		}
		seen := map[string]bool{}
		for _, company := range drawn {
			if seen[company] {
				t.Fatalf("%q drawn twice", company)
			}
			seen[company] = true
			if !slices.ContainsFunc(stakes, func(s Stake) bool { return s.Company == company }) {
				t.Fatalf("%q is not in the pool", company)
			}
		}
		reversedStakes := slices.Clone(stakes)
		slices.Reverse(reversedStakes)
		again, err := Draw(seed, reversedStakes, count)
		if err != nil || !slices.Equal(again, drawn) {
			t.Fatalf("reversed stakes drew %q (err %v), first order %q", again, err, drawn)
		}
	})
}

// FuzzInput: distinct (task, round, seed) triples give distinct inputs.
func FuzzInput(f *testing.F) {
	f.Add("ab", uint64(1), []byte("c"), "a", uint64(1), []byte("bc"))
	f.Add("task", uint64(0), []byte{}, "task", uint64(1), []byte{})
	f.Fuzz(func(t *testing.T, taskA string, roundA uint64, seedA []byte, taskB string, roundB uint64, seedB []byte) {
		a, errA := Input(taskA, roundA, seedA)
		b, errB := Input(taskB, roundB, seedB)
		if errA != nil || errB != nil {
			return
		}
		same := taskA == taskB && roundA == roundB && bytes.Equal(seedA, seedB)
		if bytes.Equal(a, b) != same {
			t.Fatalf("inputs equal: %v, triples equal: %v", bytes.Equal(a, b), same)
		}
	})
}
