//go:build chaincodebugs

// A known gap, not yet fixed (issue 11's closing note): stake is company-wide, so stake minted
// as initial tokens by one task weighs in every task's election. This test fails until stake is
// kept per task; run it with
//
//	go test -tags chaincodebugs ./ledger
package ledger

import (
	"testing"

	"fedledger/chaincode/internal/ledgertest"
)

// CreateTask mints initial_tokens, up to 2^50, as stake that counts in every task's election:
// one org can register a publisher and a committee member, create a throw-away task, and make
// its member the leader of every other task's rounds.
func TestBugStakeMintedByAnotherTaskDoesNotWeighInThisElection(t *testing.T) {
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
