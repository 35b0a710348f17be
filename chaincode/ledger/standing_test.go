package ledger

import (
	"reflect"
	"slices"
	"strconv"
	"testing"
)

func TestAMemberMissingVotesIsDemotedThenCreditedBackAsAParticipantAndReinstated(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis(func(g *Genesis) { g.Rounds = 3 }))
	duty := ids(c.bolt, c.cargo)

	// Rounds 1 and 2: acme neither trains nor votes: 1000 -> 900 -> 800, below 850.
	for n := 1; n <= 2; n++ {
		c.verifiedRound(t, n, duty, duty, c.bolt, c.cargo)
		c.ok(t, c.publisher, "CloseRound", "mnist-1", strconv.Itoa(n), hash("1"), list("bolt", "cargo"))
	}
	demoted := c.company(t, "acme")
	if demoted.Reputation != 800 || demoted.Status != StatusDemoted || demoted.Demotion != DemotedByReputation {
		t.Fatalf("acme after two missed votes = %+v", demoted)
	}
	if got := c.round(t, 2).Standing.Demoted; !slices.Equal(got, []string{"acme"}) {
		t.Fatalf("round 2 demoted %v, want [acme]", got)
	}

	// Round 3: demoted, acme still trains; it may not stand, and its vote is recorded uncounted.
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "3")
	c.refused(t, "company acme is demoted and may not stand for leader", c.acme, "SubmitElectionProof", "mnist-1", "3",
		c.acme.VRF.ProveHex(t, c.alpha(t, "mnist-1", 3)))
	c.submit(t, c.acme, 3, 100, 10)
	c.submit(t, c.bolt, 3, 100, 10)
	c.prove(t, 3, duty...)
	c.ok(t, c.publisher, "CloseCollection", "mnist-1", "3")
	c.ok(t, c.member(t, c.round(t, 3).Leader), "RecordAggregate", "mnist-1", "3", list("acme", "bolt"), hash("a"))
	c.refused(t, "only a counted valid vote may carry a partial decryption", c.acme, "Vote", "mnist-1", "3", "true", "", partial("acme", 3))
	c.ok(t, c.acme, "Vote", "mnist-1", "3", "true", "", "")
	c.refused(t, "acme has no counted valid vote on round 3 of task mnist-1", c.acme, "RecordPartial", "mnist-1", "3", partial("acme", 3))
	if r := c.round(t, 3); r.ValidVotes != 0 || r.Status != RoundAggregated {
		t.Fatalf("acme's vote counted: %+v", r)
	}
	c.vote(t, 3, c.bolt)
	if r := c.round(t, 3); r.ValidVotes != 1 || r.Status != RoundAggregated {
		t.Fatalf("round 3 after bolt's vote = %+v: one counted vote is below the quorum of 2", r)
	}
	c.vote(t, 3, c.cargo)
	c.refused(t, "acme has no counted valid vote on the round", c.publisher, "CloseRound", "mnist-1", "3", hash("3"), list("acme", "bolt"))
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "3", hash("3"), list("bolt", "cargo"))

	// Its included update earns reputation_gain: 800 + 50 = 850, the threshold: reinstated.
	round3 := c.round(t, 3)
	acme := c.company(t, "acme")
	if !slices.Equal(round3.Standing.Reinstated, []string{"acme"}) || len(round3.Standing.Penalties) != 0 {
		t.Fatalf("round 3 standing = %+v, want acme reinstated and no penalty", round3.Standing)
	}
	if acme.Reputation != 850 || acme.Status != StatusActive || acme.Demotion != "" {
		t.Fatalf("acme after round 3 = %+v, want reinstated at 850", acme)
	}
	var votes []Vote
	c.get(t, &votes, "ListVotes", "mnist-1", "3")
	if len(votes) != 3 || votes[0].Member != "acme" || votes[0].Counted || !votes[1].Counted {
		t.Fatalf("votes = %+v", votes)
	}
}

func TestAnAdminDemotedCompanyIsNotReinstatedByGoodRounds(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	duty := ids(c.bolt, c.cargo)
	c.ok(t, c.admin1, "SetCompanyStatus", "acme", "demoted")

	for n := 1; n <= 2; n++ {
		c.ok(t, c.publisher, "OpenRound", "mnist-1", strconv.Itoa(n))
		c.submit(t, c.acme, n, 100, 10)
		c.submit(t, c.bolt, n, 100, 10)
		c.prove(t, n, duty...)
		c.ok(t, c.publisher, "CloseCollection", "mnist-1", strconv.Itoa(n))
		c.ok(t, c.member(t, c.round(t, n).Leader), "RecordAggregate", "mnist-1", strconv.Itoa(n), list("acme", "bolt"), hash("a"))
		c.ok(t, c.acme, "Vote", "mnist-1", strconv.Itoa(n), "true", "", "")
		c.vote(t, n, duty...)
		c.ok(t, c.publisher, "CloseRound", "mnist-1", strconv.Itoa(n), hash("1"), list("bolt", "cargo"))
	}

	acme := c.company(t, "acme")
	if acme.Status != StatusDemoted || acme.Demotion != DemotedByAdmin || acme.Reputation != 1000 {
		t.Fatalf("acme = %+v, want still demoted by its admin", acme)
	}
	for n := 1; n <= 2; n++ {
		if s := c.round(t, n).Standing; !reflect.DeepEqual(s, Standing{}) {
			t.Fatalf("round %d standing = %+v", n, s)
		}
	}
	c.ok(t, c.admin1, "SetCompanyStatus", "acme", "active")
	if acme := c.company(t, "acme"); acme.Status != StatusActive || acme.Demotion != "" {
		t.Fatalf("acme reinstated by its admin = %+v", acme)
	}
}

func TestReputationIsCreditedUpToItsInitialValueOnly(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	all := ids(c.acme, c.bolt, c.cargo)

	c.verifiedRound(t, 1, all, all, c.acme, c.bolt, c.cargo)
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("1"), list("acme", "bolt"))

	for _, name := range []string{"acme", "bolt", "cargo"} {
		if got := c.company(t, name).Reputation; got != InitialReputation {
			t.Fatalf("%s has reputation %d after a good round, want %d (the cap)", name, got, InitialReputation)
		}
	}
}
