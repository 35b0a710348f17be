package ledger

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"fedledger/chaincode/internal/ledgertest"
)

// consortium is three company orgs with one identity each, a publisher, and each org's admin.
type consortium struct {
	ledger                 *ledgertest.Ledger
	publisher, acme, bolt  *ledgertest.Identity
	cargo, stranger        *ledgertest.Identity
	admin1, admin2, admin3 *ledgertest.Identity
}

func newConsortium(t *testing.T) *consortium {
	t.Helper()
	c := &consortium{
		ledger:    ledgertest.NewLedger(t, NewContract()),
		publisher: ledgertest.NewIdentity(t, "ManufacturerMSP", "publisher", "publisher"),
		acme:      ledgertest.NewIdentity(t, "ManufacturerMSP", "acme", "participant,committee"),
		bolt:      ledgertest.NewIdentity(t, "WarehouseMSP", "bolt", "participant,committee"),
		cargo:     ledgertest.NewIdentity(t, "CarrierMSP", "cargo", "participant,committee"),
		stranger:  ledgertest.NewIdentity(t, "CarrierMSP", "stranger", "participant,committee,publisher"),
		admin1:    ledgertest.NewAdmin(t, "ManufacturerMSP", "admin1"),
		admin2:    ledgertest.NewAdmin(t, "WarehouseMSP", "admin2"),
		admin3:    ledgertest.NewAdmin(t, "CarrierMSP", "admin3"),
	}
	c.ok(t, c.publisher, "RegisterCompany", "pub", "publisher", "")
	c.ok(t, c.acme, "RegisterCompany", "acme", "participant,committee", "")
	c.ok(t, c.bolt, "RegisterCompany", "bolt", "participant,committee", "")
	c.ok(t, c.cargo, "RegisterCompany", "cargo", "committee,participant", "")
	return c
}

func (c *consortium) ok(t *testing.T, id *ledgertest.Identity, fn string, args ...string) ledgertest.Result {
	t.Helper()
	r := c.ledger.Invoke(id, fn, args...)
	if r.Status != 200 {
		t.Fatalf("%s(%v) by %s failed: %s", fn, args, id.Name, r.Message)
	}
	return r
}

// refused asserts that a transaction fails with a message containing want and changes nothing.
func (c *consortium) refused(t *testing.T, want string, id *ledgertest.Identity, fn string, args ...string) {
	t.Helper()
	before := c.ledger.State()
	events := len(c.ledger.Events())
	r := c.ledger.Invoke(id, fn, args...)
	if r.Status == 200 {
		t.Fatalf("%s(%v) by %s succeeded; want refusal %q", fn, args, id.Name, want)
	}
	if !strings.Contains(r.Message, want) {
		t.Fatalf("%s(%v) by %s: message %q does not say %q", fn, args, id.Name, r.Message, want)
	}
	if !reflect.DeepEqual(before, c.ledger.State()) || len(c.ledger.Events()) != events {
		t.Fatalf("%s(%v) by %s was refused but changed the ledger", fn, args, id.Name)
	}
}

func (c *consortium) get(t *testing.T, out any, fn string, args ...string) {
	t.Helper()
	r := c.ok(t, c.publisher, fn, args...)
	if err := json.Unmarshal(r.Payload, out); err != nil {
		t.Fatalf("%s returned invalid JSON %q: %v", fn, r.Payload, err)
	}
}

func genesis(mutate ...func(*Genesis)) string {
	g := Genesis{
		TaskID:              "mnist-1",
		Model:               ModelSpec{Description: "small CNN on MNIST", InitialWeightsSHA256: strings.Repeat("ab", 32)},
		Rounds:              2,
		Privacy:             DPSpec{EpsilonBudget: "3", Delta: "0.00001", ClipNorm: "4", NoiseMultiplier: "1.1", NoiseMode: "distributed"},
		Encryption:          HESpec{PaillierN: strings.Repeat("c3", 128), KeyCustody: "threshold", Threshold: 2, CommitteeSize: 3},
		Committee:           []string{"acme", "bolt", "cargo"},
		Quorum:              2,
		Aggregator:          "acme",
		Participants:        []string{"acme", "bolt", "cargo"},
		MinParticipants:     2,
		Seed0:               strings.Repeat("5e", 32),
		InitialTokens:       50,
		RewardPerRound:      1000,
		Penalty:             100,
		ReputationThreshold: 850,
	}
	for _, m := range mutate {
		m(&g)
	}
	raw, _ := json.Marshal(g)
	return string(raw)
}

func hash(s string) string { return strings.Repeat(s, 64)[:64] }

// runRound opens, fills, aggregates and verifies round n with the given updaters.
func (c *consortium) verifiedRound(t *testing.T, n int, eps string, updaters ...*ledgertest.Identity) {
	t.Helper()
	c.ok(t, c.publisher, "OpenRound", "mnist-1", fmt.Sprint(n), eps)
	var names []string
	for i, id := range updaters {
		c.ok(t, id, "SubmitUpdate", "mnist-1", fmt.Sprint(n), hash(fmt.Sprint(i+1)), "1000", fmt.Sprint(100*(i+1)), "10")
		names = append(names, id.Name)
	}
	included, _ := json.Marshal(names)
	c.ok(t, c.acme, "RecordAggregate", "mnist-1", fmt.Sprint(n), string(included), hash("a"))
	c.ok(t, c.bolt, "Vote", "mnist-1", fmt.Sprint(n), "true", "")
	c.ok(t, c.cargo, "Vote", "mnist-1", fmt.Sprint(n), "true", "")
}

func TestVersionAndWhoAmI(t *testing.T) {
	c := newConsortium(t)

	var version map[string]string
	c.get(t, &version, "Version")
	r := c.ok(t, c.bolt, "WhoAmI")
	var who map[string]any
	if err := json.Unmarshal(r.Payload, &who); err != nil {
		t.Fatal(err)
	}

	if version["version"] != Version || version["chaincode"] != "fedledger" {
		t.Fatalf("Version = %v", version)
	}
	if who["msp_id"] != "WarehouseMSP" || who["company"] != "bolt" || who["fingerprint"] != c.bolt.Fingerprint() || who["admin"] != false {
		t.Fatalf("WhoAmI = %v", who)
	}
}

func TestRegisterCompanyRecordsIdentityAndRoles(t *testing.T) {
	c := newConsortium(t)

	var acme Company
	c.get(t, &acme, "GetCompany", "acme")
	var all []Company
	c.get(t, &all, "ListCompanies")

	want := Company{Name: "acme", MSPID: "ManufacturerMSP", CertFingerprint: c.acme.Fingerprint(),
		Roles: []string{"committee", "participant"}, Status: StatusActive, Reputation: InitialReputation}
	if !reflect.DeepEqual(acme, want) {
		t.Fatalf("GetCompany = %+v, want %+v", acme, want)
	}
	if len(all) != 4 || all[0].Name != "acme" || all[3].Name != "pub" {
		t.Fatalf("ListCompanies = %+v", all)
	}
	if ev := c.ledger.Events(); ev[len(ev)-1].Name != "CompanyRegistered" {
		t.Fatalf("last event %q", ev[len(ev)-1].Name)
	}
}

func TestOrgAdminRegistersAnIdentityOfItsOrg(t *testing.T) {
	c := newConsortium(t)
	newcomer := ledgertest.NewIdentity(t, "WarehouseMSP", "dock", "participant")

	c.ok(t, c.admin2, "RegisterCompany", "dock", "participant", newcomer.Fingerprint())
	r := c.ok(t, newcomer, "WhoAmI")

	if !strings.Contains(string(r.Payload), `"company":"dock"`) {
		t.Fatalf("the registered identity is not recognised: %s", r.Payload)
	}
}

func TestRegisterCompanyRejections(t *testing.T) {
	c := newConsortium(t)
	fresh := ledgertest.NewIdentity(t, "CarrierMSP", "fresh", "participant")

	c.refused(t, "does not carry the publisher role", fresh, "RegisterCompany", "fresh", "participant,publisher", "")
	c.refused(t, "only the identity itself or an admin", fresh, "RegisterCompany", "fresh", "participant", hash("f"))
	c.refused(t, "already registered", fresh, "RegisterCompany", "acme", "participant", "")
	c.refused(t, "already registered as company bolt", c.bolt, "RegisterCompany", "bolt2", "participant", "")
	c.refused(t, "is invalid", fresh, "RegisterCompany", "Bad Name", "participant", "")
	c.refused(t, "unknown role", fresh, "RegisterCompany", "fresh", "participant,king", "")
	c.refused(t, "needs at least one role", fresh, "RegisterCompany", "fresh", " , ", "")
	c.refused(t, "must be 64 lower-case hex", c.admin3, "RegisterCompany", "fresh", "participant", "xyz")
}

func TestCompanyStatusIsSetByItsOwnOrgAdminAndRevocationIsFinal(t *testing.T) {
	c := newConsortium(t)

	c.refused(t, "only an admin of WarehouseMSP", c.admin1, "SetCompanyStatus", "bolt", "demoted")
	c.refused(t, "only an admin of WarehouseMSP", c.bolt, "SetCompanyStatus", "bolt", "revoked")
	c.refused(t, "unknown status", c.admin2, "SetCompanyStatus", "bolt", "banned")
	c.ok(t, c.admin2, "SetCompanyStatus", "bolt", "revoked")
	c.refused(t, "revocation is final", c.admin2, "SetCompanyStatus", "bolt", "active")

	c.refused(t, "company bolt is revoked", c.bolt, "CreateTask", genesis())
}

func TestHappyPathOfATaskOverTwoRounds(t *testing.T) {
	c := newConsortium(t)
	c.ok(t, c.publisher, "CreateTask", genesis())

	// Round 1: three updates, all included; bolt and cargo vote, acme misses its committee duty.
	c.verifiedRound(t, 1, "1.5", c.acme, c.bolt, c.cargo)
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("1"))
	// Round 2: two updates, the budget reaches exactly 3.
	c.verifiedRound(t, 2, "3", c.bolt, c.cargo)
	c.ok(t, c.acme, "CloseRound", "mnist-1", "2", hash("2"))

	var task Task
	c.get(t, &task, "GetTask", "mnist-1")
	var round1 Round
	c.get(t, &round1, "GetRound", "mnist-1", "1")
	var updates []Update
	c.get(t, &updates, "ListUpdates", "mnist-1", "1")
	var votes []Vote
	c.get(t, &votes, "ListVotes", "mnist-1", "1")
	var acme, bolt, cargo Company
	c.get(t, &acme, "GetCompany", "acme")
	c.get(t, &bolt, "GetCompany", "bolt")
	c.get(t, &cargo, "GetCompany", "cargo")

	if task.Status != TaskFinished || task.CurrentRound != 2 || task.EpsilonSpentMicro != 3_000_000 {
		t.Fatalf("task = %+v", task)
	}
	if round1.Status != RoundClosed || round1.ModelSHA256 != hash("1") || round1.Updates != 3 ||
		round1.Aggregate.SHA256 != hash("a") || round1.ValidVotes != 2 || round1.EpsilonAfterMicro != 1_500_000 {
		t.Fatalf("round 1 = %+v", round1)
	}
	if len(updates) != 3 || updates[0].Company != "acme" || updates[1].ArtifactSHA256 != hash("2") || updates[2].Samples != 300 {
		t.Fatalf("updates = %+v", updates)
	}
	if len(votes) != 2 || votes[0].Member != "bolt" || !votes[1].Valid {
		t.Fatalf("votes = %+v", votes)
	}
	// Round 1 pays 1000 by samples x compute (100:200:300 -> 166, 333, 500); round 2 pays bolt
	// and cargo (100:200 -> 333, 666). acme missed both votes: two penalties of 100 take its
	// reputation to 800, below the threshold of 850, so it is demoted.
	if acme.Tokens != 50+166 || acme.Stake != 166-200 || acme.Reputation != 800 || acme.Status != StatusDemoted {
		t.Fatalf("acme = %+v", acme)
	}
	if bolt.Tokens != 50+333+333 || bolt.Stake != 666 || bolt.Reputation != 1000 {
		t.Fatalf("bolt = %+v", bolt)
	}
	if cargo.Stake != 500+666 {
		t.Fatalf("cargo = %+v", cargo)
	}
	var history []Change
	c.get(t, &history, "GetRoundHistory", "mnist-1", "1")
	// Opened, three updates, the aggregate, two votes, closed.
	if len(history) != 8 {
		t.Fatalf("round history has %d entries, want 8", len(history))
	}
	var last Round
	if err := json.Unmarshal(history[len(history)-1].Value, &last); err != nil || last.Status != RoundClosed {
		t.Fatalf("last history entry = %s (%v)", history[len(history)-1].Value, err)
	}
	names := map[string]bool{}
	for _, ev := range c.ledger.Events() {
		names[ev.Name] = true
	}
	for _, want := range []string{"TaskCreated", "RoundOpened", "UpdateSubmitted", "AggregateRecorded", "VoteCast", "RoundClosed"} {
		if !names[want] {
			t.Fatalf("no %s event among %v", want, names)
		}
	}
}

func TestRejectionsLeaveTheLedgerUnchanged(t *testing.T) {
	c := newConsortium(t)
	c.refused(t, "does not hold the publisher role", c.acme, "CreateTask", genesis())
	c.ok(t, c.publisher, "CreateTask", genesis())
	c.refused(t, "round 1 would bring task mnist-1 to epsilon 3.5, past its budget of 3", c.publisher, "OpenRound", "mnist-1", "1", "3.5")
	c.refused(t, "does not hold the publisher role", c.acme, "OpenRound", "mnist-1", "1", "1")
	c.refused(t, "not a registered company", c.stranger, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5")
	c.ok(t, c.stranger, "RegisterCompany", "rival", "publisher", "")
	c.refused(t, "only the task's publisher pub may open its rounds", c.stranger, "OpenRound", "mnist-1", "1", "1")
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1", "1")
	c.ok(t, c.bolt, "SubmitUpdate", "mnist-1", "1", hash("b"), "10", "5", "5")

	c.refused(t, "company bolt already submitted an update for round 1", c.bolt, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5")
	c.refused(t, "does not hold the participant role", c.stranger, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5")
	c.refused(t, "has not been opened", c.cargo, "SubmitUpdate", "mnist-1", "2", hash("c"), "10", "5", "5")
	c.refused(t, "only the leader of round 1 (acme)", c.bolt, "RecordAggregate", "mnist-1", "1", `["bolt","cargo"]`, hash("a"))
	c.ok(t, c.cargo, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5")
	c.refused(t, "lists company acme, which has no update in round 1", c.acme, "RecordAggregate", "mnist-1", "1", `["acme","bolt"]`, hash("a"))
	c.refused(t, "needs at least 2", c.acme, "RecordAggregate", "mnist-1", "1", `["bolt"]`, hash("a"))
	c.refused(t, "not valid JSON", c.acme, "RecordAggregate", "mnist-1", "1", `["bolt",`, hash("a"))
	c.refused(t, "votes are taken only on a recorded aggregate", c.bolt, "Vote", "mnist-1", "1", "true", "")
	c.ok(t, c.acme, "RecordAggregate", "mnist-1", "1", `["bolt","cargo"]`, hash("a"))

	outsider := ledgertest.NewIdentity(t, "CarrierMSP", "outsider", "participant,committee")
	c.ok(t, outsider, "RegisterCompany", "outsider", "participant,committee", "")
	c.refused(t, "not on the committee of task mnist-1", outsider, "Vote", "mnist-1", "1", "true", "")
	c.refused(t, "needs a reason", c.bolt, "Vote", "mnist-1", "1", "false", "")
	c.refused(t, "updates are accepted only while it collects", c.acme, "SubmitUpdate", "mnist-1", "1", hash("d"), "10", "5", "5")
	c.ok(t, c.bolt, "Vote", "mnist-1", "1", "true", "")
	c.refused(t, "already voted", c.bolt, "Vote", "mnist-1", "1", "true", "")
	c.refused(t, "only a verified round can be closed", c.publisher, "CloseRound", "mnist-1", "1", hash("9"))
	c.ok(t, c.cargo, "Vote", "mnist-1", "1", "true", "")
	c.refused(t, "only the publisher pub or the leader acme", c.bolt, "CloseRound", "mnist-1", "1", hash("9"))
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("9"))

	c.refused(t, "round 1 of task mnist-1 is closed: updates are accepted only while it collects", c.acme, "SubmitUpdate", "mnist-1", "1", hash("e"), "10", "5", "5")
	c.refused(t, "the next round of task mnist-1 is 2, not 3", c.publisher, "OpenRound", "mnist-1", "3", "2")
	c.refused(t, "is below the 1 already spent", c.publisher, "OpenRound", "mnist-1", "2", "0.5")
	c.ok(t, c.admin2, "SetCompanyStatus", "bolt", "revoked")
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "2", "2")
	c.refused(t, "company bolt is revoked", c.bolt, "SubmitUpdate", "mnist-1", "2", hash("f"), "10", "5", "5")
}

func TestGenesisIsValidated(t *testing.T) {
	c := newConsortium(t)
	cases := []struct {
		want   string
		mutate func(*Genesis)
	}{
		{"task name", func(g *Genesis) { g.TaskID = "" }},
		{"initial_weights_sha256", func(g *Genesis) { g.Model.InitialWeightsSHA256 = "abc" }},
		{"rounds must be", func(g *Genesis) { g.Rounds = 0 }},
		{"dp.epsilon_budget must be a decimal", func(g *Genesis) { g.Privacy.EpsilonBudget = "1e3" }},
		{"dp.epsilon_budget must be positive", func(g *Genesis) { g.Privacy.EpsilonBudget = "0" }},
		{"dp.delta", func(g *Genesis) { g.Privacy.Delta = "0.0000001" }},
		{"dp.noise_mode", func(g *Genesis) { g.Privacy.NoiseMode = "both" }},
		{"he.paillier_n", func(g *Genesis) { g.Encryption.PaillierN = "ff" }},
		{"he.key_custody", func(g *Genesis) { g.Encryption.KeyCustody = "none" }},
		{"does not fit a committee of 3", func(g *Genesis) { g.Encryption.Threshold = 4 }},
		{"quorum must be", func(g *Genesis) { g.Quorum = 4 }},
		{"min_participants", func(g *Genesis) { g.MinParticipants = 4 }},
		{"lists a company twice", func(g *Genesis) { g.Participants = []string{"acme", "acme"}; g.MinParticipants = 1 }},
		{"seed0", func(g *Genesis) { g.Seed0 = "00" }},
		{"must not be negative", func(g *Genesis) { g.Penalty = -1 }},
		{"committee member nobody: company nobody is not registered", func(g *Genesis) { g.Committee[2] = "nobody" }},
		{"participant pub does not hold the participant role", func(g *Genesis) { g.Participants[0] = "pub" }},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, c.publisher, "CreateTask", genesis(tc.mutate))
	}
	c.refused(t, "unknown field", c.publisher, "CreateTask", `{"task_id":"x","surprise":1}`)
	c.refused(t, "trailing data", c.publisher, "CreateTask", genesis()+"{}")
	c.ok(t, c.publisher, "CreateTask", genesis())
	c.refused(t, "task mnist-1 already exists", c.publisher, "CreateTask", genesis())
}

func TestAVoteAfterTheQuorumIsRecordedAndNotPenalizedAtClose(t *testing.T) {
	c := newConsortium(t)
	c.ok(t, c.publisher, "CreateTask", genesis())
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1", "1")
	c.ok(t, c.bolt, "SubmitUpdate", "mnist-1", "1", hash("b"), "10", "5", "5")
	c.ok(t, c.cargo, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5")
	c.ok(t, c.acme, "RecordAggregate", "mnist-1", "1", `["bolt","cargo"]`, hash("a"))
	members := []*ledgertest.Identity{c.acme, c.bolt, c.cargo}
	for _, m := range members {
		c.ok(t, m, "Vote", "mnist-1", "1", "true", "")
	}

	var round Round
	c.get(t, &round, "GetRound", "mnist-1", "1")
	if round.Status != RoundVerified || round.ValidVotes != len(members) {
		t.Fatalf("round = %+v", round)
	}
	c.refused(t, "already voted", members[len(members)-1], "Vote", "mnist-1", "1", "true", "")
	var before, after Company
	c.get(t, &before, "GetCompany", "cargo")
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("7"))
	c.get(t, &after, "GetCompany", "cargo")
	if after.Reputation < before.Reputation || after.Stake < before.Stake {
		t.Fatalf("the member who voted after the quorum was penalized: %+v -> %+v", before, after)
	}
	c.refused(t, "votes are taken only on a recorded aggregate", members[0], "Vote", "mnist-1", "1", "true", "")
}

func TestACommitteeRejectionFailsTheRoundAndPenalizesTheLeader(t *testing.T) {
	c := newConsortium(t)
	c.ok(t, c.publisher, "CreateTask", genesis())
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1", "1")
	c.ok(t, c.bolt, "SubmitUpdate", "mnist-1", "1", hash("b"), "10", "5", "5")
	c.ok(t, c.cargo, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5")
	c.ok(t, c.acme, "RecordAggregate", "mnist-1", "1", `["bolt","cargo"]`, hash("a"))

	c.ok(t, c.bolt, "Vote", "mnist-1", "1", "false", "recomputed aggregate differs")
	r := c.ok(t, c.cargo, "Vote", "mnist-1", "1", "false", "hash mismatch")

	var round Round
	c.get(t, &round, "GetRound", "mnist-1", "1")
	var acme Company
	c.get(t, &acme, "GetCompany", "acme")
	if round.Status != RoundFailed || !strings.Contains(round.FailureReason, "hash mismatch") {
		t.Fatalf("round = %+v", round)
	}
	if acme.Reputation != 900 || acme.Stake != -100 {
		t.Fatalf("leader not penalized: %+v", acme)
	}
	if r.Event == nil || r.Event.Name != "VoteCast" || !strings.Contains(string(r.Event.Payload), `"round_status":"failed"`) {
		t.Fatalf("event = %+v", r.Event)
	}
	// A failed round spends no budget: the next opens from the epsilon actually spent.
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "2", "0.5")
}

func TestADemotedCompanyMayNotLeadOrVote(t *testing.T) {
	c := newConsortium(t)
	c.ok(t, c.publisher, "CreateTask", genesis())
	c.ok(t, c.admin3, "SetCompanyStatus", "cargo", "demoted")
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1", "1")
	c.ok(t, c.bolt, "SubmitUpdate", "mnist-1", "1", hash("b"), "10", "5", "5")
	c.ok(t, c.cargo, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5") // still trains
	c.ok(t, c.acme, "RecordAggregate", "mnist-1", "1", `["bolt","cargo"]`, hash("a"))

	c.refused(t, "company cargo is demoted and may not vote", c.cargo, "Vote", "mnist-1", "1", "true", "")
	c.ok(t, c.admin1, "SetCompanyStatus", "acme", "demoted")
	c.ok(t, c.publisher, "FailRound", "mnist-1", "1", "leader demoted")
	c.refused(t, "aggregator acme is demoted and may not lead round 2", c.publisher, "OpenRound", "mnist-1", "2", "1")
}

func TestKeySharesStayInTheMembersOrgAndOnlyTheirHashIsPublic(t *testing.T) {
	c := newConsortium(t)
	c.ok(t, c.publisher, "CreateTask", genesis())
	share := []byte("threshold share of bolt")

	c.refused(t, "transient map", c.bolt, "StoreKeyShare", "mnist-1")
	r := c.ledger.InvokeWithTransient(c.bolt, map[string][]byte{TransientKeyShare: share}, "StoreKeyShare", "mnist-1")
	if r.Status != 200 {
		t.Fatalf("StoreKeyShare: %s", r.Message)
	}
	private := c.ledger.PrivateState("_implicit_org_WarehouseMSP")
	for k, v := range c.ledger.State() {
		if strings.Contains(v, string(share)) || strings.Contains(v, base64.StdEncoding.EncodeToString(share)) {
			t.Fatalf("the share is on the public ledger under %q", k)
		}
	}
	var record KeyShareRecord
	c.get(t, &record, "GetKeyShareRecord", "mnist-1", "bolt")
	back := c.ok(t, c.bolt, "ReadKeyShare", "mnist-1")
	var got map[string]string
	_ = json.Unmarshal(back.Payload, &got)

	if len(private) != 1 || len(c.ledger.PrivateState("_implicit_org_CarrierMSP")) != 0 {
		t.Fatalf("private collections: warehouse %d entries", len(private))
	}
	if decoded, _ := base64.StdEncoding.DecodeString(got["key_share"]); string(decoded) != string(share) || got["sha256"] != record.SHA256 {
		t.Fatalf("ReadKeyShare = %v, record %+v", got, record)
	}
	c.refused(t, "cargo has stored no key share", c.cargo, "ReadKeyShare", "mnist-1")
	c.refused(t, "does not hold the committee role", c.publisher, "ReadKeyShare", "mnist-1")
	c.refused(t, "already stored its key share", c.bolt, "StoreKeyShare", "mnist-1")
}

func TestStateIsCanonicalJSONWithIntegersOnly(t *testing.T) {
	c := newConsortium(t)
	c.ok(t, c.publisher, "CreateTask", genesis())
	c.verifiedRound(t, 1, "0.75", c.acme, c.bolt)

	for k, v := range c.ledger.State() {
		again, err := canonical(json.RawMessage(v))
		if err != nil || string(again) != v {
			t.Fatalf("value at %q is not canonical JSON: %s", k, v)
		}
		dec := json.NewDecoder(strings.NewReader(v))
		dec.UseNumber()
		var generic any
		if err := dec.Decode(&generic); err != nil {
			t.Fatal(err)
		}
		if bad := nonInteger(generic); bad != "" {
			t.Fatalf("value at %q holds the non-integer number %s", k, bad)
		}
	}
}

// nonInteger returns the first JSON number in v that is not an integer, or "".
func nonInteger(v any) string {
	switch x := v.(type) {
	case json.Number:
		if _, err := x.Int64(); err != nil {
			return x.String()
		}
	case map[string]any:
		for _, e := range x {
			if bad := nonInteger(e); bad != "" {
				return bad
			}
		}
	case []any:
		for _, e := range x {
			if bad := nonInteger(e); bad != "" {
				return bad
			}
		}
	}
	return ""
}

func TestParseMicro(t *testing.T) {
	for in, want := range map[string]int64{"3": 3_000_000, "0.25": 250_000, "1.000001": 1_000_001, "0": 0} {
		if got, err := parseMicro("x", in); err != nil || got != want {
			t.Fatalf("parseMicro(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"", ".5", "5.", "-1", "1e3", "0.0000001", "1,5", "99999999999"} {
		if _, err := parseMicro("x", in); err == nil {
			t.Fatalf("parseMicro(%q) accepted", in)
		}
	}
	if formatMicro(3_200_000) != "3.2" || formatMicro(3_000_000) != "3" {
		t.Fatal("formatMicro")
	}
}

func FuzzCreateTaskGenesis(f *testing.F) {
	f.Add(genesis())
	f.Add(`{"task_id":"x"}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, doc string) {
		var g Genesis
		if decodeStrict(doc, &g, "genesis") != nil {
			return
		}
		if _, err := g.validate(); err == nil && g.TaskID == "" {
			t.Fatalf("accepted a genesis without a task id: %q", doc)
		}
	})
}

func FuzzParseMicro(f *testing.F) {
	for _, s := range []string{"3", "0.25", "1.000001", "", "-1", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseMicro("x", s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("parseMicro(%q) = %d < 0", s, v)
		}
		back, err := parseMicro("x", formatMicro(v))
		if err != nil || back != v {
			t.Fatalf("parseMicro(formatMicro(%d)) = %d, %v", v, back, err)
		}
	})
}

func TestRemainingRejectionsAndReads(t *testing.T) {
	c := newConsortium(t)
	c.refused(t, "task nope does not exist", c.publisher, "GetTask", "nope")
	c.refused(t, "company nobody is not registered", c.publisher, "GetCompany", "nobody")
	c.ok(t, c.publisher, "CreateTask", genesis(func(g *Genesis) { g.Participants = []string{"acme", "bolt"} }))
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1", "1")

	c.refused(t, "company cargo is not a participant of task mnist-1", c.cargo, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5")
	c.refused(t, "artifact hash must be 64 lower-case hex", c.bolt, "SubmitUpdate", "mnist-1", "1", "ABC", "10", "5", "5")
	c.refused(t, "samples must be positive", c.bolt, "SubmitUpdate", "mnist-1", "1", hash("b"), "10", "0", "5")
	c.refused(t, "round 2 of task mnist-1 has not been opened", c.publisher, "ListUpdates", "mnist-1", "2")
	c.ok(t, c.acme, "SubmitUpdate", "mnist-1", "1", hash("a"), "10", "5", "5")
	c.ok(t, c.bolt, "SubmitUpdate", "mnist-1", "1", hash("b"), "10", "5", "5")
	c.refused(t, "lists a company twice", c.acme, "RecordAggregate", "mnist-1", "1", `["bolt","bolt"]`, hash("a"))
	c.refused(t, "aggregate hash must be", c.acme, "RecordAggregate", "mnist-1", "1", `["acme","bolt"]`, "zz")

	c.refused(t, "does not hold the publisher role", c.acme, "FailRound", "mnist-1", "1", "stalled")
	c.ok(t, c.stranger, "RegisterCompany", "rival", "publisher", "")
	c.refused(t, "only the task's publisher pub may fail its rounds", c.stranger, "FailRound", "mnist-1", "1", "stalled")
	c.refused(t, "needs a reason", c.publisher, "FailRound", "mnist-1", "1", "")
	c.ok(t, c.publisher, "FailRound", "mnist-1", "1", "stalled")
	c.refused(t, "round 1 of task mnist-1 is failed and cannot be failed", c.publisher, "FailRound", "mnist-1", "1", "again")
	c.refused(t, "is failed: an aggregate is recorded only while it collects", c.acme, "RecordAggregate", "mnist-1", "1", `["acme","bolt"]`, hash("a"))

	var task, round, update, company []Change
	c.get(t, &task, "GetTaskHistory", "mnist-1")
	c.get(t, &round, "GetRoundHistory", "mnist-1", "1")
	c.get(t, &update, "GetUpdateHistory", "mnist-1", "1", "bolt")
	c.get(t, &company, "GetCompanyHistory", "bolt")
	// bolt's record changed twice: registered, then credited its initial tokens by CreateTask.
	if len(task) != 2 || len(round) != 4 || len(update) != 1 || len(company) != 2 {
		t.Fatalf("history lengths: task %d, round %d, update %d, company %d", len(task), len(round), len(update), len(company))
	}
	var first Task
	if err := json.Unmarshal(task[0].Value, &first); err != nil || first.CurrentRound != 0 || task[1].Timestamp <= task[0].Timestamp {
		t.Fatalf("task history out of order: %+v", task)
	}
	var credited Company
	if err := json.Unmarshal(company[1].Value, &credited); err != nil || credited.Tokens != 50 {
		t.Fatalf("second company change = %s", company[1].Value)
	}
	var failed Round
	if err := json.Unmarshal(round[3].Value, &failed); err != nil || failed.Status != RoundFailed || failed.FailureReason != "stalled" {
		t.Fatalf("last round change = %s", round[3].Value)
	}
	if ev := c.ledger.Events(); ev[len(ev)-1].Name != "RoundFailed" {
		t.Fatalf("last event %q", ev[len(ev)-1].Name)
	}
}
