package ledger

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"fedledger/chaincode/internal/ledgertest"
)

// -- leader failover ----------------------------------------------------------------------

func TestTheNextRankedRecordsTheAggregateOnceTheLeaderWindowHasPassed(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	round := c.collected(t, 1, ids(c.acme, c.bolt, c.cargo), c.bolt, c.cargo)
	ranking, closedAt := round.Election.Ranking, round.Election.ClosedAt
	first, second, third := c.member(t, ranking[0]), c.member(t, ranking[1]), c.member(t, ranking[2])
	record := []string{"mnist-1", "1", list("bolt", "cargo"), hash("a")}

	c.refused(t, fmt.Sprintf("company %s is ranked 2 for round 1 of task mnist-1: it may record the aggregate only from ledger time %d",
		second.Name, closedAt+10), second, "RecordAggregate", record...)
	c.refused(t, fmt.Sprintf("company %s is ranked 3 for round 1 of task mnist-1: it may record the aggregate only from ledger time %d",
		third.Name, closedAt+20), third, "RecordAggregate", record...)
	c.at(t, closedAt+9)
	c.refused(t, "is ranked 2", second, "RecordAggregate", record...)
	// Ledger time closedAt + 10: the first ranked's window has passed, and the second's slot begins.
	r := c.ok(t, second, "RecordAggregate", record...)

	round = c.round(t, 1)
	want := []LeaderFailover{{Failed: first.Name, Rank: 1, Successor: second.Name, At: closedAt + 10, TxID: r.TxID}}
	if !reflect.DeepEqual(round.Election.Failovers, want) {
		t.Fatalf("failovers = %+v, want %+v", round.Election.Failovers, want)
	}
	if round.Leader != second.Name || round.Aggregate.RecordedBy != second.Name || round.Status != RoundAggregated {
		t.Fatalf("round = %+v", round)
	}
	if want := []Penalty{{Company: first.Name, Duty: DutyLeaderSlot, Amount: 100}}; !reflect.DeepEqual(round.Standing.Penalties, want) {
		t.Fatalf("standing = %+v, want penalties %+v", round.Standing, want)
	}
	if missed := c.company(t, first.Name); missed.Reputation != 900 || missed.Stake != 50-100 {
		t.Fatalf("the first ranked was not penalized for its slot: %+v", missed)
	}
	if kept := c.company(t, third.Name); kept.Reputation != 1000 || kept.Stake != 50 {
		t.Fatalf("the third ranked, whose slot never came, was penalized: %+v", kept)
	}
	c.refused(t, "is aggregated: an aggregate is recorded only once collection has closed, and once", first, "RecordAggregate", record...)
}

func TestTheFirstRankedMayRecordAtOnceAndNobodyIsPenalized(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	round := c.collected(t, 1, ids(c.acme, c.bolt, c.cargo), c.bolt, c.cargo)
	outsider := ledgertest.NewIdentity(t, "CarrierMSP", "outsider", "participant,committee")
	c.ok(t, outsider, "RegisterCompany", "outsider", "participant,committee", "")
	c.refused(t, "company outsider is not ranked in the election of round 1 of task mnist-1", outsider,
		"RecordAggregate", "mnist-1", "1", list("bolt", "cargo"), hash("a"))
	c.refused(t, "company pub does not hold the committee role", c.publisher, "RecordAggregate", "mnist-1", "1", list("bolt", "cargo"), hash("a"))

	c.ok(t, c.member(t, round.Leader), "RecordAggregate", "mnist-1", "1", list("cargo", "bolt"), hash("a"))

	round = c.round(t, 1)
	if len(round.Election.Failovers) != 0 || len(round.Standing.Penalties) != 0 || !slices.Equal(round.Aggregate.Included, []string{"bolt", "cargo"}) {
		t.Fatalf("round = %+v", round)
	}
}

func TestADemotedRankedMemberMayNotLead(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	round := c.collected(t, 1, ids(c.acme, c.bolt, c.cargo), c.bolt, c.cargo)
	leader := c.member(t, round.Leader)
	admin := map[string]*ledgertest.Identity{"acme": c.admin1, "bolt": c.admin2, "cargo": c.admin3}[leader.Name]

	c.ok(t, admin, "SetCompanyStatus", leader.Name, "demoted")

	c.refused(t, fmt.Sprintf("company %s is demoted and may not lead", leader.Name), leader, "RecordAggregate", "mnist-1", "1", list("bolt", "cargo"), hash("a"))
}

func TestFailingACollectedRoundPenalizesTheRankedWhoseSlotsPassed(t *testing.T) {
	cases := []struct {
		elapsed   int64
		penalized int // how many of the ranking, from the first
	}{{5, 0}, {10, 1}, {25, 2}, {30, 3}, {500, 3}}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d s after the close", tc.elapsed), func(t *testing.T) {
			c := newConsortium(t)
			c.withKey(t, genesis())
			round := c.collected(t, 1, ids(c.acme, c.bolt, c.cargo), c.bolt, c.cargo)

			c.at(t, round.Election.ClosedAt+tc.elapsed)
			c.ok(t, c.publisher, "FailRound", "mnist-1", "1", "no aggregate came")

			failed := c.round(t, 1)
			var want []Penalty
			for _, name := range round.Election.Ranking[:tc.penalized] {
				want = append(want, Penalty{Company: name, Duty: DutyLeaderSlot, Amount: 100})
			}
			if failed.Status != RoundFailed || !reflect.DeepEqual(failed.Standing.Penalties, want) {
				t.Fatalf("round = %+v, want penalties %+v", failed, want)
			}
			for i, name := range round.Election.Ranking {
				if got, wantRep := c.company(t, name).Reputation, int64(1000-100*min(1, max(0, tc.penalized-i))); got != wantRep {
					t.Fatalf("%s (rank %d) has reputation %d, want %d", name, i+1, got, wantRep)
				}
			}
			c.ok(t, c.publisher, "OpenRound", "mnist-1", "2")
		})
	}
}

// -- completeness -------------------------------------------------------------------------

func TestTheAggregateSumsExactlyTheUpdatesFixedWhenCollectionClosed(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	round := c.collected(t, 1, ids(c.acme, c.bolt, c.cargo), c.acme, c.bolt)
	leader := c.member(t, round.Leader)
	fixed := "the updates fixed when collection closed [acme bolt]"
	tooLong := `["acme","bolt"` + strings.Repeat(` `, maxListLength) + `]`

	c.refused(t, "round 1 of task mnist-1 is collected: updates are accepted only while it collects", c.cargo,
		"SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5")
	cases := []struct{ want, included string }{
		{"the aggregate omits [bolt]: it must include exactly " + fixed, list("acme")},
		{"the aggregate omits [acme bolt]: it must include exactly " + fixed, list()},
		{"the aggregate omits [acme bolt]: it must include exactly " + fixed, "null"},
		{"the aggregate includes [cargo], which are not among " + fixed, list("acme", "bolt", "cargo")},
		{"the aggregate omits [bolt]", list("acme", "cargo")},
		{"the aggregate lists a company twice", list("acme", "bolt", "bolt")},
		{"the aggregate lists a company twice", list("acme", "acme")},
		{fmt.Sprintf("the list of included updates is %d bytes; at most %d are accepted", len(tooLong), maxListLength), tooLong},
		{"the list of included updates is not valid JSON", `{"acme":1}`},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, leader, "RecordAggregate", "mnist-1", "1", tc.included, hash("a"))
	}

	c.ok(t, leader, "RecordAggregate", "mnist-1", "1", list("bolt", "acme"), hash("a"))
	if got := c.round(t, 1).Aggregate.Included; !slices.Equal(got, []string{"acme", "bolt"}) {
		t.Fatalf("included = %v", got)
	}
}

func TestCollectionClosesOnlyWithMinParticipantsUpdates(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1")
	c.prove(t, 1, c.acme, c.bolt)

	c.refused(t, "round 1 of task mnist-1 has 0 update(s); it needs at least 2 (min_participants) to close collection; fail the round instead",
		c.publisher, "CloseCollection", "mnist-1", "1")
	c.submit(t, c.cargo, 1, 10, 10)
	c.refused(t, "round 1 of task mnist-1 has 1 update(s); it needs at least 2 (min_participants)", c.publisher, "CloseCollection", "mnist-1", "1")
	c.submit(t, c.bolt, 1, 10, 10)
	c.ok(t, c.publisher, "CloseCollection", "mnist-1", "1")
	c.refused(t, "round 1 of task mnist-1 is collected: only a collecting round's collection can close", c.publisher, "CloseCollection", "mnist-1", "1")
}

// -- contribution -------------------------------------------------------------------------

func TestAnUpdateClaimsBoundedSamplesAndCompute(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1")
	perSample := ": task mnist-1 allows at most 1000 ms of compute per sample claimed"
	cases := []struct{ want, size, samples, compute string }{
		{`samples must be a whole number from 1 to 100000, got "100001" (task mnist-1's max_samples)`, "10", "100001", "5"},
		{`samples must be a whole number from 1 to 100000, got "0" (task mnist-1's max_samples)`, "10", "0", "0"},
		{`samples must be a whole number from 1 to 100000, got "1e3"`, "10", "1e3", "5"},
		{`compute_millis must be a whole number from 0 to 5000, got "5001"` + perSample, "10", "5", "5001"},
		{`compute_millis must be a whole number from 0 to 100000000, got "100000001"` + perSample, "10", "100000", "100000001"},
		{`compute_millis must be a whole number from 0 to 5000, got "-1"`, "10", "5", "-1"},
		{`size_bytes must be a whole number from 1 to 1099511627776, got "0"`, "0", "5", "5"},
		{`size_bytes must be a whole number from 1 to 1099511627776, got "1099511627777"`, "1099511627777", "5", "5"},
		{`size_bytes must be a whole number from 1 to 1099511627776, got "ten"`, "ten", "5", "5"},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, c.bolt, "SubmitUpdate", "mnist-1", "1", hash("b"), tc.size, tc.samples, tc.compute)
	}

	c.ok(t, c.bolt, "SubmitUpdate", "mnist-1", "1", hash("b"), "10", "100000", "100000000")
	c.ok(t, c.cargo, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "1", "0")
	var updates []Update
	c.get(t, &updates, "ListUpdates", "mnist-1", "1")
	if len(updates) != 2 || updates[0].Samples != 100_000 || updates[0].ComputeMillis != 100_000_000 || updates[1].ComputeMillis != 0 {
		t.Fatalf("updates = %+v", updates)
	}
}

func TestTheRewardIsSharedBySamplesTimesComputeAndInitialTokensAreStake(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis(func(g *Genesis) { g.RewardPerRound = 1_000_000 }))
	for _, name := range []string{"acme", "bolt", "cargo"} {
		if got := c.company(t, name); got.Tokens != 50 || got.Stake != 50 {
			t.Fatalf("%s after CreateTask = %+v, want 50 tokens, all of them stake", name, got)
		}
	}
	if pub, kmc := c.company(t, "pub"), c.company(t, "kmc"); pub.Tokens != 0 || pub.Stake != 0 || kmc.Tokens != 0 || kmc.Stake != 0 {
		t.Fatalf("the publisher or the dealer got initial tokens: %+v, %+v", pub, kmc)
	}
	all := ids(c.acme, c.bolt, c.cargo)
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1")
	// C = samples x compute: 100 x 1000, 200 x 4000, and 300 x 0, which counts as 300 x 1.
	c.submit(t, c.acme, 1, 100, 1000)
	c.submit(t, c.bolt, 1, 200, 4000)
	c.submit(t, c.cargo, 1, 300, 0)
	c.prove(t, 1, all...)
	c.ok(t, c.publisher, "CloseCollection", "mnist-1", "1")
	leader := c.round(t, 1).Leader
	c.ok(t, c.member(t, leader), "RecordAggregate", "mnist-1", "1", list("acme", "bolt", "cargo"), hash("a"))
	c.vote(t, 1, all...)

	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("d"), list("acme", "cargo"))

	// 1e6 x C_i / (100000 + 800000 + 300), rounded down.
	want := map[string]int64{"acme": 111_074, "bolt": 888_592, "cargo": 333}
	round := c.round(t, 1)
	if !reflect.DeepEqual(round.Rewards, want) {
		t.Fatalf("rewards = %v, want %v", round.Rewards, want)
	}
	for name, reward := range want {
		if got := c.company(t, name); got.Tokens != 50+reward || got.Stake != 50+reward || got.Reputation != 1000 {
			t.Fatalf("%s = %+v, want %d tokens and stake", name, got, 50+reward)
		}
	}
}

// -- decryption and close -----------------------------------------------------------------

func TestCloseRoundChecksWhoDecrypted(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	c.aggregated(t, 1, ids(c.acme, c.bolt, c.cargo), c.bolt, c.cargo)
	c.ok(t, c.acme, "Vote", "mnist-1", "1", "true", "", partial("acme", 1))
	c.ok(t, c.bolt, "Vote", "mnist-1", "1", "true", "", "")
	c.ok(t, c.cargo, "Vote", "mnist-1", "1", "false", "the sum differs", "")
	tooLong := `["acme","bolt"` + strings.Repeat(` `, maxListLength) + `]`
	cases := []struct{ want, decryptedBy string }{
		{"a round of task mnist-1 is decrypted by exactly 2 members (he.threshold), the close names 1", list("acme")},
		{"a round of task mnist-1 is decrypted by exactly 2 members (he.threshold), the close names 3", list("acme", "bolt", "cargo")},
		{"a round of task mnist-1 is decrypted by exactly 2 members (he.threshold), the close names 0", list()},
		{"the list of decrypting members names a member twice", list("acme", "acme")},
		{"cargo has no counted valid vote on the round, so its partial decryption may not be combined", list("acme", "cargo")},
		{"pub has no counted valid vote on the round", list("pub", "acme")},
		{"bolt has recorded no partial decryption of the round", list("acme", "bolt")},
		{fmt.Sprintf("the list of decrypting members is %d bytes; at most %d are accepted", len(tooLong), maxListLength), tooLong},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, c.publisher, "CloseRound", "mnist-1", "1", hash("d"), tc.decryptedBy)
	}

	c.ok(t, c.bolt, "RecordPartial", "mnist-1", "1", partial("bolt", 1))
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("d"), list("bolt", "acme"))
	round := c.round(t, 1)
	if !slices.Equal(round.DecryptedBy, []string{"acme", "bolt"}) || round.Status != RoundClosed {
		t.Fatalf("round = %+v", round)
	}
}

func TestAnEscrowRoundIsDecryptedByItsCurrentMasterAlone(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis(escrow))
	all := ids(c.acme, c.bolt, c.cargo)
	c.verifiedRound(t, 1, all, all, c.bolt, c.cargo)
	cases := []struct{ want, decryptedBy string }{
		{"a round of escrow task mnist-1 is decrypted by its master bolt alone, the close names [acme]", list("acme")},
		{"a round of escrow task mnist-1 is decrypted by its master bolt alone, the close names [acme bolt]", list("acme", "bolt")},
		{"a round of escrow task mnist-1 is decrypted by its master bolt alone, the close names []", list()},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, c.publisher, "CloseRound", "mnist-1", "1", hash("d"), tc.decryptedBy)
	}
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("d"), list("bolt"))

	// Once failed over, the new master decrypts.
	c.ok(t, c.publisher, "FailoverMaster", "mnist-1", "bolt is down")
	c.verifiedRound(t, 2, all, ids(c.acme, c.cargo), c.bolt, c.cargo)
	c.refused(t, "is decrypted by its master cargo alone, the close names [bolt]", c.publisher, "CloseRound", "mnist-1", "2", hash("e"), list("bolt"))
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "2", hash("e"), list("cargo"))
}

func TestAVerifiedRoundWithTooFewPartialsFailsAndTheMissingPartialsArePenalized(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	c.aggregated(t, 1, ids(c.acme, c.bolt, c.cargo), c.bolt, c.cargo)
	c.ok(t, c.acme, "Vote", "mnist-1", "1", "true", "", partial("acme", 1))
	c.ok(t, c.bolt, "Vote", "mnist-1", "1", "true", "", "") // verified; cargo never votes
	if got := c.round(t, 1).Status; got != RoundVerified {
		t.Fatalf("round status = %s, want verified", got)
	}
	c.refused(t, "bolt has recorded no partial decryption of the round", c.publisher, "CloseRound", "mnist-1", "1", hash("d"), list("acme", "bolt"))
	c.refused(t, "the reason for failing a round must be 1-512 characters, got 0", c.publisher, "FailRound", "mnist-1", "1", "")

	r := c.ok(t, c.publisher, "FailRound", "mnist-1", "1", "one partial decryption of the two needed")

	round := c.round(t, 1)
	want := []Penalty{{Company: "bolt", Duty: DutyPartial, Amount: 100}, {Company: "cargo", Duty: DutyVote, Amount: 100}}
	if round.Status != RoundFailed || round.FailureReason != "one partial decryption of the two needed" || !reflect.DeepEqual(round.Standing.Penalties, want) {
		t.Fatalf("round = %+v, want penalties %+v", round, want)
	}
	if acme, bolt := c.company(t, "acme"), c.company(t, "bolt"); acme.Reputation != 1000 || bolt.Reputation != 900 || bolt.Stake != 50-100 {
		t.Fatalf("acme = %+v, bolt = %+v", acme, bolt)
	}
	if r.Event == nil || r.Event.Name != "RoundFailed" {
		t.Fatalf("event = %+v", r.Event)
	}
	var task Task
	c.get(t, &task, "GetTask", "mnist-1")
	if task.ClosedRounds != 0 || task.EpsilonSpentMicro != 0 {
		t.Fatalf("a failed round spent budget: %+v", task)
	}
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "2")
}

func TestFailingAnAggregatedRoundPenalizesTheMissingVotes(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	c.aggregated(t, 1, ids(c.acme, c.bolt, c.cargo), c.bolt, c.cargo)
	c.ok(t, c.acme, "Vote", "mnist-1", "1", "false", "hash mismatch", "")

	c.ok(t, c.publisher, "FailRound", "mnist-1", "1", "the committee is silent")

	want := []Penalty{{Company: "bolt", Duty: DutyVote, Amount: 100}, {Company: "cargo", Duty: DutyVote, Amount: 100}}
	if got := c.round(t, 1).Standing.Penalties; !reflect.DeepEqual(got, want) {
		t.Fatalf("penalties = %+v, want %+v", got, want)
	}
}

func TestARoundOpensOnlyAfterThePreviousEndedAndNotPastTheTask(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis(func(g *Genesis) { g.Rounds = 1 }))
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1")
	c.submit(t, c.bolt, 1, 10, 10)

	c.refused(t, "task mnist-1 has only 1 rounds", c.publisher, "OpenRound", "mnist-1", "2")
	c.ok(t, c.publisher, "FailRound", "mnist-1", "1", "stalled")

	var task Task
	c.get(t, &task, "GetTask", "mnist-1")
	if task.Status != TaskFinished {
		t.Fatalf("a task whose last round failed is %s, want finished", task.Status)
	}
	c.refused(t, "task mnist-1 is finished", c.publisher, "OpenRound", "mnist-1", "2")

	c.withKey(t, genesis(func(g *Genesis) { g.TaskID = "mnist-2" }))
	c.ok(t, c.publisher, "OpenRound", "mnist-2", "1")
	c.ok(t, c.bolt, "SubmitUpdate", "mnist-2", "1", hash("b"), "10", "5", "5")
	c.refused(t, "round 1 of task mnist-2 is still open", c.publisher, "OpenRound", "mnist-2", "2")
}

func TestADemotedPublisherPublishesNoTask(t *testing.T) {
	c := newConsortium(t)
	c.ok(t, c.admin1, "SetCompanyStatus", "pub", "demoted")

	c.refused(t, "company pub is demoted and may not publish tasks", c.publisher, "CreateTask", genesis())
	c.refused(t, "company pub is already demoted", c.admin1, "SetCompanyStatus", "pub", "demoted")
}
