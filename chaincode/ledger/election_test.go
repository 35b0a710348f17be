package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"fedledger/chaincode/internal/ledgertest"
	"fedledger/chaincode/sortition"
	"fedledger/chaincode/vrf"
)

// at moves the ledger's clock so that the next transaction is stamped at unix second ts.
func (c *consortium) at(t *testing.T, ts int64) {
	t.Helper()
	d := ts - c.ledger.Now().Unix()
	if d < 0 {
		t.Fatalf("ledger time is already %d, past %d", c.ledger.Now().Unix(), ts)
	}
	c.ledger.Advance(time.Duration(d) * time.Second)
}

func TestRoundSeedsChainFromSeed0(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1")
	c.ok(t, c.publisher, "FailRound", "mnist-1", "1", "no updates")
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "2")

	seed0, _ := hex.DecodeString(strings.Repeat("5e", 32))
	seed1 := chainSeed(seed0, 1)
	seed2 := chainSeed(seed1, 2)

	if got := c.round(t, 1).Seed; got != hex.EncodeToString(seed1) {
		t.Fatalf("round 1 seed = %s, want SHA-256(tag || seed0 || 1) = %x", got, seed1)
	}
	if got := c.round(t, 2).Seed; got != hex.EncodeToString(seed2) {
		t.Fatalf("round 2 seed = %s, want SHA-256(tag || seed_1 || 2) = %x", got, seed2)
	}
}

// chainSeed recomputes seed_n = SHA-256("fedledger/round-seed/v1" || seed_{n-1} || u64be(n)).
func chainSeed(previous []byte, n uint64) []byte {
	h := sha256.New()
	h.Write([]byte("fedledger/round-seed/v1"))
	h.Write(previous)
	h.Write(binary.BigEndian.AppendUint64(nil, n))
	return h.Sum(nil)
}

func TestAnElectionProofIsVerifiedOnTheRoundSeedAndRecorded(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1")
	alpha := c.alpha(t, "mnist-1", 1)
	proof := c.acme.VRF.ProveHex(t, alpha)

	r := c.ok(t, c.acme, "SubmitElectionProof", "mnist-1", "1", proof)

	var proofs []ElectionProof
	c.get(t, &proofs, "GetElectionProofs", "mnist-1", "1")
	raw, _ := hex.DecodeString(proof)
	beta, err := vrf.Verify(c.acme.VRF.Public, alpha, raw)
	if err != nil {
		t.Fatal(err)
	}
	want := []ElectionProof{{TaskID: "mnist-1", Round: 1, Member: "acme", Proof: proof, Output: hex.EncodeToString(beta), TxID: r.TxID}}
	if !reflect.DeepEqual(proofs, want) {
		t.Fatalf("GetElectionProofs = %+v, want %+v", proofs, want)
	}
	if r.Event == nil || r.Event.Name != "ElectionProofSubmitted" {
		t.Fatalf("event = %+v", r.Event)
	}
}

func TestElectionProofRejections(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	outsider := ledgertest.NewIdentity(t, "CarrierMSP", "outsider", "participant,committee")
	c.ok(t, outsider, "RegisterCompany", "outsider", "participant,committee", "")
	c.ok(t, outsider, "RecordCompanyKeys", keys(outsider, "outsider")...)
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1")
	alpha := c.alpha(t, "mnist-1", 1)
	acmeProof := c.acme.VRF.ProveHex(t, alpha)
	// A hex digit of the challenge c (bytes 32 to 47), changed.
	forged := []byte(acmeProof)
	if forged[80] == '0' {
		forged[80] = '1'
	} else {
		forged[80] = '0'
	}
	sTooBig := acmeProof[:96] + "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff1f"
	notVerified := "does not verify on the seed of round 1 of task mnist-1 under its recorded VRF key"
	cases := []struct {
		want        string
		id          *ledgertest.Identity
		task, round string
		proof       string
	}{
		{"the election proof of acme " + notVerified + ": proof does not verify", c.acme, "mnist-1", "1", string(forged)},
		{"the election proof of acme " + notVerified + ": proof's scalar s is not below the group order", c.acme, "mnist-1", "1", sTooBig},
		{"the election proof of bolt " + notVerified, c.bolt, "mnist-1", "1", acmeProof},
		{"the election proof of acme " + notVerified, c.acme, "mnist-1", "1", c.acme.VRF.ProveHex(t, []byte("another input"))},
		{"the election proof must be 160 lower-case hex digits (an ECVRF-EDWARDS25519-SHA512-TAI proof), got 2 characters", c.acme, "mnist-1", "1", "ab"},
		{"the election proof must be 160 lower-case hex digits (an ECVRF-EDWARDS25519-SHA512-TAI proof), got 160 characters", c.acme, "mnist-1", "1",
			upper(acmeProof)},
		{"company outsider is not on the committee of task mnist-1 and stands for no election", outsider, "mnist-1", "1", outsider.VRF.ProveHex(t, alpha)},
		{"company pub does not hold the committee role", c.publisher, "mnist-1", "1", acmeProof},
		{"is not a registered company", ledgertest.NewIdentity(t, "CarrierMSP", "nobody", "committee"), "mnist-1", "1", acmeProof},
		{"round 2 of task mnist-1 has not been opened", c.acme, "mnist-1", "2", acmeProof},
		{"task nope does not exist", c.acme, "nope", "1", acmeProof},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, tc.id, "SubmitElectionProof", tc.task, tc.round, tc.proof)
	}

	c.ok(t, c.admin3, "SetCompanyStatus", "cargo", "demoted")
	c.refused(t, "company cargo is demoted and may not stand for leader", c.cargo, "SubmitElectionProof", "mnist-1", "1",
		c.cargo.VRF.ProveHex(t, alpha))
	c.ok(t, c.acme, "SubmitElectionProof", "mnist-1", "1", acmeProof)
	c.refused(t, "company acme already proved for round 1 of task mnist-1", c.acme, "SubmitElectionProof", "mnist-1", "1", acmeProof)
	c.submit(t, c.acme, 1, 10, 10)
	c.submit(t, c.bolt, 1, 10, 10)
	c.ok(t, c.publisher, "CloseCollection", "mnist-1", "1")
	c.refused(t, "round 1 of task mnist-1 is collected: election proofs are taken only before collection closes", c.bolt,
		"SubmitElectionProof", "mnist-1", "1", c.bolt.VRF.ProveHex(t, alpha))

	// A proof made on round 1's seed is stale in round 2, whose seed is chained on.
	c.ok(t, c.publisher, "FailRound", "mnist-1", "1", "stalled")
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "2")
	boltStale := c.bolt.VRF.ProveHex(t, alpha)
	c.refused(t, "the election proof of bolt does not verify on the seed of round 2 of task mnist-1", c.bolt,
		"SubmitElectionProof", "mnist-1", "2", boltStale)
	c.ok(t, c.bolt, "SubmitElectionProof", "mnist-1", "2", c.bolt.VRF.ProveHex(t, c.alpha(t, "mnist-1", 2)))
}

func upper(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if ch >= 'a' && ch <= 'f' {
			b[i] = ch - 'a' + 'A'
		}
	}
	return string(b)
}

// unequalStakes runs round 1 of mnist-1 so that the members' stakes in it differ: acme's and
// bolt's updates earn 133 and 266 of the 400 reward (samples x compute 1000 and 2000) on top of
// their 100 initial tokens, and cargo, which does not vote, loses its 100 to the penalty: in
// round 2 acme stands with 233, bolt with 366 and cargo with none.
func unequalStakes(t *testing.T, c *consortium) {
	t.Helper()
	c.withKey(t, genesis(func(g *Genesis) { g.InitialTokens, g.Penalty, g.RewardPerRound = 100, 100, 400 }))
	c.verifiedRound(t, 1, ids(c.acme, c.bolt, c.cargo), ids(c.acme, c.bolt), c.acme, c.bolt)
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("d"), list("acme", "bolt"))
}

// recompute ranks round n's proofs with sortition.Select, from what the ledger shows: every
// proof, each prover's VRF key, and its stake in the task.
func (c *consortium) recompute(t *testing.T, n int) sortition.Selection {
	t.Helper()
	var proofs []ElectionProof
	c.get(t, &proofs, "GetElectionProofs", "mnist-1", fmt.Sprint(n))
	var task Task
	c.get(t, &task, "GetTask", "mnist-1")
	var candidates []sortition.Candidate
	for _, p := range proofs {
		member := c.company(t, p.Member)
		key, _ := hex.DecodeString(member.VrfKey)
		proof, _ := hex.DecodeString(p.Proof)
		candidates = append(candidates, sortition.Candidate{Company: p.Member, PublicKey: key, Proof: proof, Stake: task.Stakes[p.Member]})
	}
	staked := 0
	for _, cand := range candidates {
		if cand.Stake > 0 {
			staked++
		}
	}
	selection, err := sortition.Select(candidates, c.alpha(t, "mnist-1", n), staked-1)
	if err != nil {
		t.Fatalf("recomputing the election: %v", err)
	}
	return selection
}

func TestTheRankingIsTheStakeWeightedSortitionOfTheProofsWithoutZeroStakes(t *testing.T) {
	elect := func() (*consortium, Round) {
		c := newConsortium(t)
		unequalStakes(t, c)
		return c, c.collected(t, 2, ids(c.acme, c.bolt, c.cargo), c.acme, c.bolt)
	}

	c, round := elect()
	_, again := elect()

	want := c.recompute(t, 2)
	e := round.Election
	if !slices.Equal(e.Ranking, append([]string{want.Leader}, want.Committee...)) || e.CombinedSeed != hex.EncodeToString(want.Seed) {
		t.Fatalf("election = %+v, want ranking %s %v and seed %x", e, want.Leader, want.Committee, want.Seed)
	}
	if !reflect.DeepEqual(e.Stakes, map[string]int64{"acme": 233, "bolt": 366}) || slices.Contains(e.Ranking, "cargo") || len(e.Ranking) != 2 {
		t.Fatalf("election = %+v: want acme (233) and bolt (366) ranked, cargo (no stake) not", e)
	}
	if round.Leader != e.Ranking[0] || round.Status != RoundCollected || !slices.Equal(round.Collected, []string{"acme", "bolt"}) ||
		e.WindowSeconds != 10 || e.ClosedAt == 0 {
		t.Fatalf("round = %+v", round)
	}
	if !reflect.DeepEqual(again.Election, round.Election) {
		t.Fatalf("the same proofs and stakes elected differently: %+v then %+v", round.Election, again.Election)
	}
	var proofs []ElectionProof
	c.get(t, &proofs, "GetElectionProofs", "mnist-1", "2")
	if len(proofs) != 3 || proofs[2].Member != "cargo" {
		t.Fatalf("cargo's proof was not recorded: %+v", proofs)
	}
}

func TestCollectionDoesNotCloseWithoutAnElectableMember(t *testing.T) {
	noneCanLead := "no active committee member with stake has proved for round 2 of task mnist-1: none can lead it; fail the round"
	cases := []struct {
		name  string
		setup func(t *testing.T, c *consortium)
	}{
		{"no proof at all", func(t *testing.T, c *consortium) {}},
		{"only a member without stake proved", func(t *testing.T, c *consortium) { c.prove(t, 2, c.cargo) }},
		{"the only prover was demoted before the close", func(t *testing.T, c *consortium) {
			c.prove(t, 2, c.acme)
			c.ok(t, c.admin1, "SetCompanyStatus", "acme", "demoted")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newConsortium(t)
			unequalStakes(t, c)
			c.ok(t, c.publisher, "OpenRound", "mnist-1", "2")
			c.submit(t, c.acme, 2, 10, 10)
			c.submit(t, c.bolt, 2, 10, 10)
			tc.setup(t, c)

			c.refused(t, noneCanLead, c.publisher, "CloseCollection", "mnist-1", "2")
		})
	}
}

func TestAMemberDemotedAfterItProvedIsNotRanked(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1")
	c.submit(t, c.acme, 1, 10, 10)
	c.submit(t, c.bolt, 1, 10, 10)
	c.prove(t, 1, c.acme, c.bolt, c.cargo)

	c.ok(t, c.admin2, "SetCompanyStatus", "bolt", "demoted")
	c.ok(t, c.publisher, "CloseCollection", "mnist-1", "1")

	e := c.round(t, 1).Election
	if slices.Contains(e.Ranking, "bolt") || len(e.Ranking) != 2 || e.Stakes["bolt"] != 0 {
		t.Fatalf("the demoted bolt stands in %+v", e)
	}
}
