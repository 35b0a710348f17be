// Governance fixes found by review: each test failed before its fix.
package ledger

import (
	"strconv"
	"testing"

	"fedledger/chaincode/internal/ledgertest"
)

// CloseRound credits every valid vote, counted or not (rounds.go, "if v.Valid"), but standing.go
// says a duty earns reputation only as "a counted vote with the outcome": a demoted member
// climbs back by casting votes that do not count.
func TestAnUncountedVoteEarnsNoReputation(t *testing.T) {
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
func TestARoundThatCanBeDecryptedCannotBeFailedForFree(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	all := ids(c.acme, c.bolt, c.cargo)
	c.verifiedRound(t, 1, all, ids(c.acme, c.bolt), c.bolt, c.cargo) // two partials: he.threshold

	c.refused(t, "can be decrypted", c.publisher, "FailRound", "mnist-1", "1", "stuck")
}

// CreateTask mints initial_tokens, up to 2^50, as stake that counts in every task's election:
// one org can register a publisher and a committee member, create a throw-away task, and make
// its member the leader of every other task's rounds.
func TestStakeMintedByAnotherTaskDoesNotWeighInThisElection(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	rival := ledgertest.NewIdentity(t, "CarrierMSP", "rival", "publisher")
	c.ok(t, c.admin3, "RegisterCompany", "rival", "publisher", rival.Fingerprint())
	c.ok(t, rival, "CreateTask", genesis(func(g *Genesis) {
		g.TaskID, g.Committee, g.Participants, g.InitialTokens = "pump", []string{"cargo"}, []string{"cargo"}, 1<<50
		g.Encryption.Threshold, g.Encryption.CommitteeSize, g.Quorum, g.MinParticipants = 1, 1, 1, 1
	}))

	round := c.collected(t, 1, ids(c.acme, c.bolt, c.cargo), c.acme, c.bolt)

	if got := round.Election.Stakes["cargo"]; got != 50 {
		t.Fatalf("cargo stands in mnist-1 with stake %d (ranking %v): tokens minted by task pump weigh in this election",
			got, round.Election.Ranking)
	}
}
