// Governance fixes found by review: each test failed before its fix.
package ledger

import (
	"strconv"
	"testing"
)

// CloseRound credits every valid vote, counted or not (rounds.go, "if v.Valid"), but standing.go
// says a duty earns reputation only as "a counted vote with the outcome": a demoted member
// climbs back by casting votes that do not count.
func TestBugAnUncountedVoteEarnsNoReputation(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis(func(g *Genesis) { g.Rounds = 3 }))
	duty := ids(c.bolt, c.cargo)
	for n := 1; n <= 2; n++ {
		c.verifiedRound(t, n, duty, duty, c.bolt, c.cargo)
		c.ok(t, c.publisher, "CloseRound", "mnist-1", strconv.Itoa(n), hash("1"), list("bolt", "cargo"))
	}
	// Round 3: acme, demoted at 800, does not train; it only casts a vote that does not count.
	c.aggregated(t, 3, duty, c.bolt, c.cargo)
	c.ok(t, c.acme, "Vote", "mnist-1", "3", "true", "", "")
	c.vote(t, 3, duty...)

	c.ok(t, c.publisher, "CloseRound", "mnist-1", "3", hash("3"), list("bolt", "cargo"))

	if acme := c.company(t, "acme"); acme.Reputation != 800 || acme.Status != StatusDemoted {
		t.Fatalf("acme = %+v: its uncounted vote earned reputation and reinstated it", acme)
	}
}

// FailRound accepts a round whose aggregate already has he.threshold partial decryptions on the
// ledger: the aggregate can be decrypted, yet failing the round books no epsilon, so a
// publisher can decrypt round after round off-chain and fail each, past the task's budget.
func TestBugARoundThatCanBeDecryptedCannotBeFailedForFree(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	all := ids(c.acme, c.bolt, c.cargo)
	c.verifiedRound(t, 1, all, ids(c.acme, c.bolt), c.bolt, c.cargo) // two partials: he.threshold

	c.refused(t, "can be decrypted", c.publisher, "FailRound", "mnist-1", "1", "stuck")
}
