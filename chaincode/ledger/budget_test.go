package ledger

import (
	"fmt"
	"testing"
)

func TestOpenRoundBooksTheChaincodesOwnEpsilonAndFailedRoundsSpendNothing(t *testing.T) {
	c := newConsortium(t)
	// A budget of exactly two closed rounds, for a task of four.
	budget := formatMicro(epsilonAfter(t, 2))
	c.withKey(t, genesis(func(g *Genesis) { g.Rounds, g.Privacy.EpsilonBudget = 4, budget }))
	duty := ids(c.bolt, c.cargo)
	book := func(n int) (Task, Round) {
		t.Helper()
		var task Task
		c.get(t, &task, "GetTask", "mnist-1")
		return task, c.round(t, n)
	}

	c.verifiedRound(t, 1, duty, duty, c.bolt, c.cargo)
	_, r1 := book(1)
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("1"), list("bolt", "cargo"))
	afterOne, _ := book(1)
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "2")
	_, r2 := book(2)
	c.ok(t, c.publisher, "FailRound", "mnist-1", "2", "too few updates")
	afterFailure, _ := book(2)
	c.verifiedRound(t, 3, duty, duty, c.bolt, c.cargo)
	_, r3 := book(3)
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "3", hash("3"), list("bolt", "cargo"))
	afterTwo, _ := book(3)

	for _, tc := range []struct {
		what      string
		got, want int64
	}{
		{"round 1 books epsilon after 1 round", r1.EpsilonAfterMicro, epsilonAfter(t, 1)},
		{"closing round 1 spends it", afterOne.EpsilonSpentMicro, epsilonAfter(t, 1)},
		{"closed rounds after round 1", int64(afterOne.ClosedRounds), 1},
		{"round 2 books epsilon after 2 rounds", r2.EpsilonAfterMicro, epsilonAfter(t, 2)},
		{"failing round 2 spends nothing", afterFailure.EpsilonSpentMicro, epsilonAfter(t, 1)},
		{"closed rounds after the failure", int64(afterFailure.ClosedRounds), 1},
		{"round 3 books epsilon after 2 rounds: the failed one is not counted", r3.EpsilonAfterMicro, epsilonAfter(t, 2)},
		{"closing round 3 spends it", afterTwo.EpsilonSpentMicro, epsilonAfter(t, 2)},
		{"closed rounds after round 3", int64(afterTwo.ClosedRounds), 2},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.what, tc.got, tc.want)
		}
	}
	// Round 4 would need a third round's epsilon, and no client number can change that.
	c.refused(t, fmt.Sprintf("round 4 would bring task mnist-1 to epsilon %s after 3 closed rounds, past its budget of %s",
		formatMicro(epsilonAfter(t, 3)), budget), c.publisher, "OpenRound", "mnist-1", "4")
}

func TestATaskMustAffordOneRound(t *testing.T) {
	c := newConsortium(t)
	one := epsilonAfter(t, 1)
	cases := []struct {
		want   string
		mutate func(*Genesis)
	}{
		{"dp.noise_multiplier 0 adds no noise, so no epsilon budget can cover a round; set a positive noise multiplier",
			func(g *Genesis) { g.Privacy.NoiseMultiplier = "0" }},
		{"dp.noise_multiplier 0 adds no noise", func(g *Genesis) { g.Privacy.NoiseMultiplier = "0.000000" }},
		{fmt.Sprintf("dp.noise_multiplier 1.1 is too small for dp.epsilon_budget %s: one round alone would spend epsilon %s",
			formatMicro(one-1), formatMicro(one)), func(g *Genesis) { g.Privacy.EpsilonBudget = formatMicro(one - 1) }},
		{"dp.noise_multiplier 0.3 is too small for dp.epsilon_budget 3: one round alone would spend epsilon 15.061259",
			func(g *Genesis) { g.Privacy.NoiseMultiplier = "0.3" }},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, c.publisher, "CreateTask", genesis(tc.mutate))
	}

	c.ok(t, c.publisher, "CreateTask", genesis(func(g *Genesis) { g.Privacy.EpsilonBudget = formatMicro(one) }))
}
