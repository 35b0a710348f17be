package ledger

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"filippo.io/edwards25519"

	"fedledger/chaincode/accountant"
	"fedledger/chaincode/internal/ledgertest"
	"fedledger/chaincode/sortition"
)

// consortium is three company orgs with one identity each, a publisher, a key dealer, and each
// org's admin. The committee members have recorded their encryption, node and VRF keys.
type consortium struct {
	ledger                 *ledgertest.Ledger
	publisher, acme, bolt  *ledgertest.Identity
	cargo, stranger, kmc   *ledgertest.Identity
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
		stranger:  ledgertest.NewIdentity(t, "CarrierMSP", "stranger", "participant,committee,publisher,dealer"),
		kmc:       ledgertest.NewIdentity(t, "WarehouseMSP", "kmc", "dealer"),
		admin1:    ledgertest.NewAdmin(t, "ManufacturerMSP", "admin1"),
		admin2:    ledgertest.NewAdmin(t, "WarehouseMSP", "admin2"),
		admin3:    ledgertest.NewAdmin(t, "CarrierMSP", "admin3"),
	}
	c.ok(t, c.publisher, "RegisterCompany", "pub", "publisher", "")
	c.ok(t, c.acme, "RegisterCompany", "acme", "participant,committee", "")
	c.ok(t, c.bolt, "RegisterCompany", "bolt", "participant,committee", "")
	c.ok(t, c.cargo, "RegisterCompany", "cargo", "committee,participant", "")
	c.ok(t, c.kmc, "RegisterCompany", "kmc", "dealer", "")
	for _, id := range []*ledgertest.Identity{c.acme, c.bolt, c.cargo} {
		c.ok(t, id, "RecordCompanyKeys", keys(id, id.Name)...)
	}
	return c
}

// keys are the RecordCompanyKeys arguments of id: the encryption key named after label, the
// node key, and id's own VRF key.
func keys(id *ledgertest.Identity, label string) []string {
	return []string{encryptionKey(label), nodeKey, id.VRF.PublicHex()}
}

// withKey creates a task from genesisJSON and has its dealer kmc deal its key (with the master's
// key, for an escrow task): an active task.
func (c *consortium) withKey(t *testing.T, genesisJSON string) {
	t.Helper()
	c.ok(t, c.publisher, "CreateTask", genesisJSON)
	var g Genesis
	if err := json.Unmarshal([]byte(genesisJSON), &g); err != nil {
		t.Fatal(err)
	}
	c.ok(t, c.kmc, "DealKey", g.TaskID, deal(func(d *Deal) {
		d.Shares = sharesFor(g.Committee...)
		if g.Encryption.KeyCustody == CustodyEscrow {
			d.MasterKey = sealedMasterKey()
		}
	}))
}

func (c *consortium) ok(t *testing.T, id *ledgertest.Identity, fn string, args ...string) ledgertest.Result {
	t.Helper()
	r := c.ledger.Invoke(id, fn, args...)
	if r.Status != 200 {
		t.Fatalf("%s(%v) by %s failed: %s", fn, brief(args), id.Name, r.Message)
	}
	return r
}

// brief shortens long arguments (a deal is tens of kilobytes) for failure messages.
func brief(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if out[i] = a; len(a) > 160 {
			out[i] = fmt.Sprintf("%s... (%d bytes)", a[:160], len(a))
		}
	}
	return out
}

// refused asserts that a transaction fails with a message containing want and changes nothing.
func (c *consortium) refused(t *testing.T, want string, id *ledgertest.Identity, fn string, args ...string) {
	t.Helper()
	before := c.ledger.State()
	events := len(c.ledger.Events())
	r := c.ledger.Invoke(id, fn, args...)
	if r.Status == 200 {
		t.Fatalf("%s(%v) by %s succeeded; want refusal %q", fn, brief(args), id.Name, want)
	}
	if !strings.Contains(r.Message, want) {
		t.Fatalf("%s(%v) by %s: message %q does not say %q", fn, brief(args), id.Name, r.Message, want)
	}
	if !reflect.DeepEqual(before, c.ledger.State()) || len(c.ledger.Events()) != events {
		t.Fatalf("%s(%v) by %s was refused but changed the ledger", fn, brief(args), id.Name)
	}
}

func (c *consortium) get(t *testing.T, out any, fn string, args ...string) {
	t.Helper()
	r := c.ok(t, c.publisher, fn, args...)
	if err := json.Unmarshal(r.Payload, out); err != nil {
		t.Fatalf("%s returned invalid JSON %q: %v", fn, r.Payload, err)
	}
}

// round returns round n of task mnist-1 as the ledger holds it.
func (c *consortium) round(t *testing.T, n int) Round {
	t.Helper()
	var r Round
	c.get(t, &r, "GetRound", "mnist-1", fmt.Sprint(n))
	return r
}

// company returns a company's record.
func (c *consortium) company(t *testing.T, name string) Company {
	t.Helper()
	var company Company
	c.get(t, &company, "GetCompany", name)
	return company
}

// member is the identity of a committee member named on the ledger (an elected leader).
func (c *consortium) member(t *testing.T, name string) *ledgertest.Identity {
	t.Helper()
	for _, id := range []*ledgertest.Identity{c.acme, c.bolt, c.cargo} {
		if id.Name == name {
			return id
		}
	}
	t.Fatalf("no identity of company %q", name)
	return nil
}

func genesis(mutate ...func(*Genesis)) string {
	dp := DPSpec{
		EpsilonBudget: "3", Delta: "0.00001", ClipNorm: "4", NoiseMultiplier: "1.1", NoiseMode: "distributed",
		Unit: "record", SampleRate: "0.05", StepsPerRound: 1, LabelEpsilon: "0",
	}
	g := Genesis{
		TaskID:              "mnist-1",
		Model:               ModelSpec{Description: "small CNN on MNIST", InitialWeightsSHA256: strings.Repeat("ab", 32)},
		Rounds:              2,
		Privacy:             dp,
		Encryption:          HESpec{KeyCustody: "threshold", Threshold: 2, CommitteeSize: 3, Dealer: "kmc"},
		Committee:           []string{"acme", "bolt", "cargo"},
		Quorum:              2,
		Participants:        []string{"acme", "bolt", "cargo"},
		MinParticipants:     2,
		Seed0:               strings.Repeat("5e", 32),
		LeaderWindowSeconds: 10,
		MaxSamples:          100_000,
		MillisPerSample:     1000,
		InitialTokens:       50,
		RewardPerRound:      1000,
		Penalty:             100,
		ReputationThreshold: 850,
		ReputationGain:      50,
	}
	for _, m := range mutate {
		m(&g)
	}
	raw, _ := json.Marshal(g)
	return string(raw)
}

func hash(s string) string { return strings.Repeat(s, 64)[:64] }

// nodeKey stands in for a Flower node's public key (PEM).
const nodeKey = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEc2VjcmV0\n-----END PUBLIC KEY-----\n"

// encryptionKey stands in for a company's X25519 public key.
func encryptionKey(company string) string { return sha([]byte("x25519/" + company)) }

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// thresholdKey stands in for the bytes of a threshold public key.
var thresholdKey = []byte(`{"paillier":{"n":"c3c3"},"parties":3,"threshold":2}`)

// share stands in for a member's key share, and sealed for its sealed box (48 bytes longer).
func share(member string) []byte { return []byte("key share of " + member) }

func sealed(member string) []byte {
	return append([]byte(strings.Repeat("e", sealedBoxOverhead)), share(member)...)
}

func sharesFor(members ...string) []SealedShare {
	out := make([]SealedShare, 0, len(members))
	for _, m := range members {
		out = append(out, SealedShare{Member: m, SealedShare: base64.StdEncoding.EncodeToString(sealed(m)), ShareSHA256: sha(share(m))})
	}
	return out
}

// deal is a valid DealKey document for the default genesis, changed by mutate.
func deal(mutate ...func(*Deal)) string {
	d := Deal{
		PaillierN:       strings.Repeat("c3", 128),
		PublicKey:       base64.StdEncoding.EncodeToString(thresholdKey),
		PublicKeySHA256: sha(thresholdKey),
		Shares:          sharesFor("cargo", "acme", "bolt"),
	}
	for _, m := range mutate {
		m(&d)
	}
	raw, _ := json.Marshal(d)
	return string(raw)
}

// -- a round, phase by phase (task mnist-1) ------------------------------------------------

// alpha is round n's VRF input, sortition.Input(task, n, seed_n), from the seed on the ledger.
func (c *consortium) alpha(t *testing.T, taskID string, n int) []byte {
	t.Helper()
	var r Round
	c.get(t, &r, "GetRound", taskID, fmt.Sprint(n))
	seed, err := hex.DecodeString(r.Seed)
	if err != nil {
		t.Fatalf("round %d's seed %q is not hex", n, r.Seed)
	}
	alpha, err := sortition.Input(taskID, uint64(n), seed)
	if err != nil {
		t.Fatal(err)
	}
	return alpha
}

// prove has each member submit its VRF proof on round n's seed.
func (c *consortium) prove(t *testing.T, n int, members ...*ledgertest.Identity) {
	t.Helper()
	alpha := c.alpha(t, "mnist-1", n)
	for _, m := range members {
		c.ok(t, m, "SubmitElectionProof", "mnist-1", fmt.Sprint(n), m.VRF.ProveHex(t, alpha))
	}
}

// submit records id's update for round n: samples samples and computeMillis of compute.
func (c *consortium) submit(t *testing.T, id *ledgertest.Identity, n int, samples, computeMillis int) {
	t.Helper()
	c.ok(t, id, "SubmitUpdate", "mnist-1", fmt.Sprint(n), sha([]byte(fmt.Sprint(id.Name, n))), "1000",
		fmt.Sprint(samples), fmt.Sprint(computeMillis))
}

// collected opens round n, submits an update from each updater (the i-th claims 100*(i+1)
// samples and 10 ms), has provers prove, and closes collection.
func (c *consortium) collected(t *testing.T, n int, provers []*ledgertest.Identity, updaters ...*ledgertest.Identity) Round {
	t.Helper()
	c.ok(t, c.publisher, "OpenRound", "mnist-1", fmt.Sprint(n))
	for i, id := range updaters {
		c.submit(t, id, n, 100*(i+1), 10)
	}
	c.prove(t, n, provers...)
	c.ok(t, c.publisher, "CloseCollection", "mnist-1", fmt.Sprint(n))
	return c.round(t, n)
}

// aggregated is collected, then the first ranked records the aggregate of every update.
func (c *consortium) aggregated(t *testing.T, n int, provers []*ledgertest.Identity, updaters ...*ledgertest.Identity) Round {
	t.Helper()
	r := c.collected(t, n, provers, updaters...)
	c.ok(t, c.member(t, r.Leader), "RecordAggregate", "mnist-1", fmt.Sprint(n), list(r.Collected...), hash("a"))
	return c.round(t, n)
}

// vote casts each member's valid vote on round n with its partial decryption.
func (c *consortium) vote(t *testing.T, n int, members ...*ledgertest.Identity) {
	t.Helper()
	for _, m := range members {
		c.ok(t, m, "Vote", "mnist-1", fmt.Sprint(n), "true", "", partial(m.Name, n))
	}
}

// verifiedRound is aggregated with provers, then voters vote valid with their partials.
func (c *consortium) verifiedRound(t *testing.T, n int, provers, voters []*ledgertest.Identity, updaters ...*ledgertest.Identity) Round {
	t.Helper()
	c.aggregated(t, n, provers, updaters...)
	c.vote(t, n, voters...)
	return c.round(t, n)
}

// partial stands in for the hash of member's partial decryption of round n's aggregate.
func partial(member string, n int) string { return sha([]byte(fmt.Sprint("partial/", member, "/", n))) }

// list is a JSON array of company names.
func list(names ...string) string {
	if names == nil {
		names = []string{}
	}
	raw, _ := json.Marshal(names)
	return string(raw)
}

// ids is a list of identities, for the phase helpers.
func ids(members ...*ledgertest.Identity) []*ledgertest.Identity { return members }

// epsilonAfter is what the chaincode's accountant books for the default genesis's DP after
// rounds closed rounds, changed by mutate.
func epsilonAfter(t *testing.T, rounds int, mutate ...func(*Genesis)) int64 {
	t.Helper()
	var g Genesis
	if err := json.Unmarshal([]byte(genesis(mutate...)), &g); err != nil {
		t.Fatal(err)
	}
	p := accountant.Params{StepsPerRound: g.Privacy.StepsPerRound}
	for _, f := range []struct {
		text string
		into *int64
	}{
		{g.Privacy.NoiseMultiplier, &p.NoiseMultiplierMicro}, {g.Privacy.SampleRate, &p.SampleRateMicro},
		{g.Privacy.Delta, &p.DeltaMicro}, {g.Privacy.LabelEpsilon, &p.LabelEpsilonMicro},
	} {
		v, err := parseMicro("dp", f.text)
		if err != nil {
			t.Fatal(err)
		}
		*f.into = v
	}
	eps, err := accountant.EpsilonAfterMicro(p, rounds)
	if err != nil {
		t.Fatal(err)
	}
	return eps
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
		Roles: []string{"committee", "participant"}, Status: StatusActive, Reputation: InitialReputation,
		EncryptionKey: encryptionKey("acme"), NodeKey: nodeKey, VrfKey: c.acme.VRF.PublicHex()}
	if !reflect.DeepEqual(acme, want) {
		t.Fatalf("GetCompany = %+v, want %+v", acme, want)
	}
	if len(all) != 5 || all[0].Name != "acme" || all[3].Name != "kmc" || all[4].Name != "pub" {
		t.Fatalf("ListCompanies = %+v", all)
	}
	if !reflect.DeepEqual(all[3].Roles, []string{"dealer"}) || all[3].EncryptionKey != "" {
		t.Fatalf("the dealer's record = %+v", all[3])
	}
	var names []string
	for _, ev := range c.ledger.Events() {
		names = append(names, ev.Name)
	}
	if strings.Count(strings.Join(names, " "), "CompanyRegistered") != 5 || names[len(names)-1] != "CompanyKeysRecorded" {
		t.Fatalf("events %v", names)
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
	c.withKey(t, genesis())
	// bolt and cargo stand for leader and vote; acme trains but misses its committee duty.
	duty := ids(c.bolt, c.cargo)

	// Round 1: three updates, all included.
	r1 := c.verifiedRound(t, 1, duty, duty, c.acme, c.bolt, c.cargo)
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("1"), list("bolt", "cargo"))
	// Round 2: two updates; its leader closes it.
	r2 := c.verifiedRound(t, 2, duty, duty, c.bolt, c.cargo)
	c.ok(t, c.member(t, r2.Leader), "CloseRound", "mnist-1", "2", hash("2"), list("cargo", "bolt"))

	var task Task
	c.get(t, &task, "GetTask", "mnist-1")
	round1 := c.round(t, 1)
	var updates []Update
	c.get(t, &updates, "ListUpdates", "mnist-1", "1")
	var votes []Vote
	c.get(t, &votes, "ListVotes", "mnist-1", "1")
	acme, bolt, cargo := c.company(t, "acme"), c.company(t, "bolt"), c.company(t, "cargo")

	if task.Status != TaskFinished || task.CurrentRound != 2 || task.ClosedRounds != 2 || task.EpsilonSpentMicro != epsilonAfter(t, 2) {
		t.Fatalf("task = %+v", task)
	}
	if round1.Status != RoundClosed || round1.ModelSHA256 != hash("1") || round1.Updates != 3 || round1.Leader != r1.Leader ||
		round1.Aggregate.SHA256 != hash("a") || !slices.Equal(round1.Aggregate.Included, []string{"acme", "bolt", "cargo"}) ||
		round1.ValidVotes != 2 || round1.EpsilonAfterMicro != epsilonAfter(t, 1) || !slices.Equal(round1.DecryptedBy, []string{"bolt", "cargo"}) {
		t.Fatalf("round 1 = %+v", round1)
	}
	if len(updates) != 3 || updates[0].Company != "acme" || updates[1].ArtifactSHA256 != sha([]byte("bolt1")) || updates[2].Samples != 300 {
		t.Fatalf("updates = %+v", updates)
	}
	if len(votes) != 2 || votes[0].Member != "bolt" || !votes[1].Valid || !votes[1].Counted || votes[1].PartialSHA256 != partial("cargo", 1) {
		t.Fatalf("votes = %+v", votes)
	}
	// Round 1 pays 1000 by samples x compute (100:200:300 -> 166, 333, 500); round 2 pays bolt
	// and cargo (100:200 -> 333, 666). acme missed both votes: two penalties of 100 take its
	// reputation to 800, below the threshold of 850, so it is demoted, by reputation.
	if acme.Tokens != 50+166 || acme.Stake != 50+166-200 || acme.Reputation != 800 || acme.Status != StatusDemoted || acme.Demotion != DemotedByReputation {
		t.Fatalf("acme = %+v", acme)
	}
	if bolt.Tokens != 50+333+333 || bolt.Stake != 50+333+333 || bolt.Reputation != 1000 {
		t.Fatalf("bolt = %+v", bolt)
	}
	if cargo.Stake != 50+500+666 {
		t.Fatalf("cargo = %+v", cargo)
	}
	if want := (Standing{Penalties: []Penalty{{Company: "acme", Duty: DutyVote, Amount: 100}}, Demoted: []string{"acme"}}); !reflect.DeepEqual(c.round(t, 2).Standing, want) {
		t.Fatalf("round 2 standing = %+v, want %+v", c.round(t, 2).Standing, want)
	}
	var history []Change
	c.get(t, &history, "GetRoundHistory", "mnist-1", "1")
	// Opened, collection closed, the aggregate, closed: the updates and votes are written under
	// their companies' own keys, not the round's.
	if len(history) != 4 {
		t.Fatalf("round history has %d entries, want 4", len(history))
	}
	var last Round
	if err := json.Unmarshal(history[len(history)-1].Value, &last); err != nil || last.Status != RoundClosed {
		t.Fatalf("last history entry = %s (%v)", history[len(history)-1].Value, err)
	}
	names := map[string]bool{}
	for _, ev := range c.ledger.Events() {
		names[ev.Name] = true
	}
	for _, want := range []string{"TaskCreated", "KeyDealt", "RoundOpened", "UpdateSubmitted", "ElectionProofSubmitted", "CollectionClosed",
		"AggregateRecorded", "VoteCast", "RoundClosed"} {
		if !names[want] {
			t.Fatalf("no %s event among %v", want, names)
		}
	}
}

func TestRejectionsLeaveTheLedgerUnchanged(t *testing.T) {
	c := newConsortium(t)
	c.refused(t, "does not hold the publisher role", c.acme, "CreateTask", genesis())
	c.withKey(t, genesis())
	c.refused(t, "does not hold the publisher role", c.acme, "OpenRound", "mnist-1", "1")
	c.refused(t, "not a registered company", c.stranger, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5")
	c.ok(t, c.stranger, "RegisterCompany", "rival", "publisher", "")
	c.refused(t, "only the task's publisher pub may open its rounds", c.stranger, "OpenRound", "mnist-1", "1")
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1")
	c.ok(t, c.bolt, "SubmitUpdate", "mnist-1", "1", hash("b"), "10", "5", "5")

	c.refused(t, "company bolt already submitted an update for round 1", c.bolt, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5")
	c.refused(t, "does not hold the participant role", c.stranger, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5")
	c.refused(t, "has not been opened", c.cargo, "SubmitUpdate", "mnist-1", "2", hash("c"), "10", "5", "5")
	c.refused(t, "round 1 of task mnist-1 is open: an aggregate is recorded only once collection has closed", c.acme,
		"RecordAggregate", "mnist-1", "1", list("bolt"), hash("a"))
	c.refused(t, "only the task's publisher pub may close its rounds' collection", c.stranger, "CloseCollection", "mnist-1", "1")
	c.refused(t, "does not hold the publisher role", c.acme, "CloseCollection", "mnist-1", "1")
	c.ok(t, c.cargo, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5")
	c.prove(t, 1, c.acme, c.bolt, c.cargo)
	c.refused(t, "votes are taken only on a recorded aggregate", c.bolt, "Vote", "mnist-1", "1", "true", "", "")
	c.ok(t, c.publisher, "CloseCollection", "mnist-1", "1")
	leader := c.member(t, c.round(t, 1).Leader)
	c.refused(t, "not valid JSON", leader, "RecordAggregate", "mnist-1", "1", `["bolt",`, hash("a"))
	c.refused(t, "trailing data", leader, "RecordAggregate", "mnist-1", "1", list("bolt", "cargo")+"[]", hash("a"))
	c.refused(t, "aggregate hash must be 64 lower-case hex", leader, "RecordAggregate", "mnist-1", "1", list("bolt", "cargo"), "zz")
	c.ok(t, leader, "RecordAggregate", "mnist-1", "1", list("bolt", "cargo"), hash("a"))
	c.refused(t, "is aggregated: an aggregate is recorded only once collection has closed, and once", leader,
		"RecordAggregate", "mnist-1", "1", list("bolt", "cargo"), hash("b"))

	outsider := ledgertest.NewIdentity(t, "CarrierMSP", "outsider", "participant,committee")
	c.ok(t, outsider, "RegisterCompany", "outsider", "participant,committee", "")
	c.refused(t, "not on the committee of task mnist-1", outsider, "Vote", "mnist-1", "1", "true", "", "")
	c.refused(t, "needs a reason", c.bolt, "Vote", "mnist-1", "1", "false", "", "")
	c.refused(t, "only a counted valid vote may carry a partial decryption", c.bolt, "Vote", "mnist-1", "1", "false", "bad", partial("bolt", 1))
	c.refused(t, "partial decryption hash must be 64 lower-case hex", c.bolt, "Vote", "mnist-1", "1", "true", "", "ab")
	c.refused(t, "updates are accepted only while it collects", c.acme, "SubmitUpdate", "mnist-1", "1", hash("d"), "10", "5", "5")
	c.ok(t, c.bolt, "Vote", "mnist-1", "1", "true", "", "")
	c.refused(t, "already voted", c.bolt, "Vote", "mnist-1", "1", "true", "", "")
	c.refused(t, "only a verified round can be closed", c.publisher, "CloseRound", "mnist-1", "1", hash("9"), list("bolt", "cargo"))
	c.ok(t, c.cargo, "Vote", "mnist-1", "1", "true", "", partial("cargo", 1))
	c.refused(t, "cargo already recorded its partial decryption of round 1", c.cargo, "RecordPartial", "mnist-1", "1", partial("cargo", 1))
	c.refused(t, "partial decryption hash must be 64 lower-case hex", c.bolt, "RecordPartial", "mnist-1", "1", "x")
	c.ok(t, c.bolt, "RecordPartial", "mnist-1", "1", partial("bolt", 1))
	c.refused(t, "only the publisher pub or the leader "+leader.Name, c.member(t, other(leader.Name)), "CloseRound", "mnist-1", "1", hash("9"), list("bolt", "cargo"))
	c.refused(t, "model hash must be 64 lower-case hex", c.publisher, "CloseRound", "mnist-1", "1", "9", list("bolt", "cargo"))
	c.refused(t, "the list of decrypting members is not valid JSON", c.publisher, "CloseRound", "mnist-1", "1", hash("9"), "bolt,cargo")
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("9"), list("bolt", "cargo"))

	c.refused(t, "round 1 of task mnist-1 is closed: updates are accepted only while it collects", c.acme, "SubmitUpdate", "mnist-1", "1", hash("e"), "10", "5", "5")
	c.refused(t, "round 1 of task mnist-1 is closed: partial decryptions are recorded only for a recorded aggregate", c.acme, "RecordPartial", "mnist-1", "1", partial("acme", 1))
	c.refused(t, "the next round of task mnist-1 is 2, not 3", c.publisher, "OpenRound", "mnist-1", "3")
	c.refused(t, "the next round of task mnist-1 is 2, not 1", c.publisher, "OpenRound", "mnist-1", "1")
	c.ok(t, c.admin2, "SetCompanyStatus", "bolt", "revoked")
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "2")
	c.refused(t, "company bolt is revoked", c.bolt, "SubmitUpdate", "mnist-1", "2", hash("f"), "10", "5", "5")
	c.refused(t, "company bolt is revoked", c.bolt, "SubmitElectionProof", "mnist-1", "2", c.bolt.VRF.ProveHex(t, c.alpha(t, "mnist-1", 2)))
	c.refused(t, "task mnist-1 has only 2 rounds", c.publisher, "OpenRound", "mnist-1", "3")
}

// other is a committee member of bolt and cargo that is not name.
func other(name string) string {
	if name == "bolt" {
		return "cargo"
	}
	return "bolt"
}

func TestGenesisIsValidated(t *testing.T) {
	c := newConsortium(t)
	dock := ledgertest.NewIdentity(t, "WarehouseMSP", "dock", "participant,committee")
	c.ok(t, dock, "RegisterCompany", "dock", "participant,committee", "")
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
		{`dp.noise_mode must be distributed or local for unit record, got "both"`, func(g *Genesis) { g.Privacy.NoiseMode = "both" }},
		{`dp.label_epsilon must be a decimal`, func(g *Genesis) { g.Privacy.LabelEpsilon = "-1" }},
		{`dp.label_epsilon must be a decimal`, func(g *Genesis) { g.Privacy.LabelEpsilon = "" }},
		{`dp.unit must be record or company, got ""`, func(g *Genesis) { g.Privacy.Unit = "" }},
		{`dp.unit must be record or company, got "patient"`, func(g *Genesis) { g.Privacy.Unit = "patient" }},
		{`dp.noise_mode must be distributed or local for unit record, got "central"`, func(g *Genesis) { g.Privacy.NoiseMode = "central" }},
		{`dp.sample_rate must be a decimal`, func(g *Genesis) { g.Privacy.SampleRate = "" }},
		{`dp.sample_rate must be a decimal`, func(g *Genesis) { g.Privacy.SampleRate = "5e-2" }},
		{`dp.sample_rate must be above 0 and at most 1 for unit record`, func(g *Genesis) { g.Privacy.SampleRate = "0" }},
		{`dp.sample_rate must be above 0 and at most 1 for unit record (rates below 0.000001 count as 0), got "0.000000"`,
			func(g *Genesis) { g.Privacy.SampleRate = "0.000000" }},
		{`dp.sample_rate must be above 0 and at most 1 for unit record`, func(g *Genesis) { g.Privacy.SampleRate = "1.000001" }},
		{`dp.steps_per_round must be 1 for noise_mode distributed, got 0`, func(g *Genesis) { g.Privacy.StepsPerRound = 0 }},
		{`dp.steps_per_round must be 1 for noise_mode distributed, got 20`, func(g *Genesis) { g.Privacy.StepsPerRound = 20 }},
		{`dp.steps_per_round must be between 1 and 10000 for noise_mode local, got 0`, func(g *Genesis) {
			g.Privacy.NoiseMode, g.Privacy.StepsPerRound = "local", 0
		}},
		{`dp.steps_per_round must be between 1 and 10000 for noise_mode local, got 10001`, func(g *Genesis) {
			g.Privacy.NoiseMode, g.Privacy.StepsPerRound = "local", 10_001
		}},
		{`dp.noise_mode must be central or distributed for unit company, got "local"`, func(g *Genesis) {
			g.Privacy.Unit, g.Privacy.NoiseMode, g.Privacy.SampleRate = "company", "local", "1"
		}},
		{`dp.sample_rate must be 1 for unit company: every company takes part in every round`, func(g *Genesis) {
			g.Privacy.Unit, g.Privacy.NoiseMode = "company", "central"
		}},
		{`dp.steps_per_round must be 1 for noise_mode central, got 2`, func(g *Genesis) {
			g.Privacy.Unit, g.Privacy.NoiseMode, g.Privacy.SampleRate, g.Privacy.StepsPerRound = "company", "central", "1", 2
		}},
		{"he.paillier_n and he.public_key_sha256 are not part of a genesis", func(g *Genesis) { g.Encryption.PaillierN = strings.Repeat("c3", 128) }},
		{"he.paillier_n and he.public_key_sha256 are not part of a genesis", func(g *Genesis) { g.Encryption.PublicKeySHA256 = hash("a") }},
		{"he.key_custody must be threshold or escrow, got \"none\"", func(g *Genesis) { g.Encryption.KeyCustody = "none" }},
		{`he.dealer company name "" is invalid`, func(g *Genesis) { g.Encryption.Dealer = "" }},
		{"does not fit a committee of 3", func(g *Genesis) { g.Encryption.Threshold = 4 }},
		{"quorum must be", func(g *Genesis) { g.Quorum = 4 }},
		{"quorum 3 exceeds he.threshold 2: under threshold custody", func(g *Genesis) { g.Quorum, g.Encryption.Threshold = 3, 2 }},
		{"min_participants", func(g *Genesis) { g.MinParticipants = 4 }},
		{"lists a company twice", func(g *Genesis) { g.Participants = []string{"acme", "acme"}; g.MinParticipants = 1 }},
		{"seed0 must be 16 to 64 bytes in lower-case hex (32 to 128 digits), got 2 characters", func(g *Genesis) { g.Seed0 = "00" }},
		{"seed0 must be 16 to 64 bytes in lower-case hex (32 to 128 digits), got 300 characters", func(g *Genesis) { g.Seed0 = strings.Repeat("5e", 150) }},
		{"seed0 must be 16 to 64 bytes in lower-case hex (32 to 128 digits), got 33 characters", func(g *Genesis) { g.Seed0 = strings.Repeat("5", 33) }},
		{"seed0 must be 16 to 64 bytes in lower-case hex (32 to 128 digits), got 64 characters", func(g *Genesis) { g.Seed0 = strings.Repeat("5E", 32) }},
		{"leader_window_seconds must be from 1 to 86400, got 0", func(g *Genesis) { g.LeaderWindowSeconds = 0 }},
		{"leader_window_seconds must be from 1 to 86400, got 86401", func(g *Genesis) { g.LeaderWindowSeconds = 86_401 }},
		{"max_samples must be from 1 to 1099511627776, got 0", func(g *Genesis) { g.MaxSamples = 0 }},
		{"millis_per_sample must be from 1 to 3600000, got 0", func(g *Genesis) { g.MillisPerSample = 0 }},
		{"initial_tokens must be from 0 to 1125899906842624, got -1", func(g *Genesis) { g.InitialTokens = -1 }},
		{"reward_per_round must be from 0 to 1125899906842624, got 1125899906842625", func(g *Genesis) { g.RewardPerRound = 1<<50 + 1 }},
		{"penalty must be from 0 to 1000, got -1", func(g *Genesis) { g.Penalty = -1 }},
		{"reputation_threshold must be from 0 to 1000, got 1001", func(g *Genesis) { g.ReputationThreshold = 1001 }},
		{"reputation_gain must be from 0 to 1000, got 1001", func(g *Genesis) { g.ReputationGain = 1001 }},
		{"dp.noise_multiplier 0 adds no noise, so no epsilon budget can cover a round; set a positive noise multiplier",
			func(g *Genesis) { g.Privacy.NoiseMultiplier = "0" }},
		{"dp.noise_multiplier 0.3 is too small for dp.epsilon_budget 3: one round alone would spend epsilon 15.061259",
			func(g *Genesis) { g.Privacy.NoiseMultiplier = "0.3" }},
		{"a task has 1 to 64 committee members and at most 1024 participants, got 65 and 3", func(g *Genesis) {
			g.Committee = numbered("member", 65)
		}},
		{"a task has 1 to 64 committee members and at most 1024 participants, got 3 and 1025", func(g *Genesis) {
			g.Participants = numbered("trainer", 1025)
		}},
		{"the publisher pub may not sit on the committee of task mnist-1: it would lead and decrypt what it coordinates",
			func(g *Genesis) { g.Committee[2] = "pub" }},
		{"committee member nobody: company nobody is not registered", func(g *Genesis) { g.Committee[2] = "nobody" }},
		{"participant pub does not hold the participant role", func(g *Genesis) { g.Participants[0] = "pub" }},
		{"dealer nobody: company nobody is not registered", func(g *Genesis) { g.Encryption.Dealer = "nobody" }},
		{"committee member dock has recorded no VRF key (RecordCompanyKeys): it could not stand for leader", func(g *Genesis) { g.Committee[2] = "dock" }},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, c.publisher, "CreateTask", genesis(tc.mutate))
	}
	c.refused(t, "unknown field", c.publisher, "CreateTask", `{"task_id":"x","surprise":1}`)
	c.refused(t, `unknown field "aggregator"`, c.publisher, "CreateTask", strings.Replace(genesis(), `{`, `{"aggregator":"acme",`, 1))
	c.refused(t, "trailing data", c.publisher, "CreateTask", genesis()+"{}")
	// The size bound comes before any parsing: 70 KiB of anything, valid JSON or not.
	c.refused(t, "the task genesis is 71680 bytes; at most 65536 are accepted", c.publisher, "CreateTask",
		genesis()+strings.Repeat(" ", 70*1024-len(genesis())))
	c.refused(t, "the task genesis is 71680 bytes; at most 65536 are accepted", c.publisher, "CreateTask", strings.Repeat("{", 70*1024))
	c.ok(t, c.publisher, "CreateTask", genesis())
	c.refused(t, "task mnist-1 already exists", c.publisher, "CreateTask", genesis())
}

// numbered is n company names prefix-0 ... prefix-(n-1).
func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func TestGenesisAcceptsEachPrivacyUnitWithItsNoiseModes(t *testing.T) {
	c := newConsortium(t)
	for _, tc := range []struct {
		taskID string
		dp     DPSpec
	}{
		{"company-central", DPSpec{NoiseMode: "central", Unit: "company", SampleRate: "1", StepsPerRound: 1, LabelEpsilon: "0"}},
		{"company-distributed", DPSpec{NoiseMode: "distributed", Unit: "company", SampleRate: "1.0", StepsPerRound: 1, LabelEpsilon: "0.5"}},
		{"record-local", DPSpec{NoiseMode: "local", Unit: "record", SampleRate: "0.01", StepsPerRound: 20, LabelEpsilon: "2"}},
		{"record-local-most", DPSpec{NoiseMode: "local", Unit: "record", SampleRate: "0.000001", StepsPerRound: 10_000, LabelEpsilon: "0"}},
		{"record-distributed-all", DPSpec{NoiseMode: "distributed", Unit: "record", SampleRate: "1", StepsPerRound: 1, LabelEpsilon: "0"}},
	} {
		c.ok(t, c.publisher, "CreateTask", genesis(func(g *Genesis) {
			dp := tc.dp
			// A budget wide enough for a round of each (at sample rate 1 a round costs more than 3).
			dp.EpsilonBudget, dp.Delta, dp.ClipNorm, dp.NoiseMultiplier = "100", "0.00001", "4", "1.1"
			g.TaskID, g.Privacy = tc.taskID, dp
		}))
		var task Task
		c.get(t, &task, "GetTask", tc.taskID)
		if task.Privacy.Unit != tc.dp.Unit || task.Privacy.NoiseMode != tc.dp.NoiseMode || task.Privacy.SampleRate != tc.dp.SampleRate ||
			task.Privacy.StepsPerRound != tc.dp.StepsPerRound || task.Privacy.LabelEpsilon != tc.dp.LabelEpsilon {
			t.Fatalf("task %s kept dp %+v, want %+v", tc.taskID, task.Privacy, tc.dp)
		}
	}
}

func TestAVoteAfterTheQuorumIsRecordedAndNotPenalizedAtClose(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	all := ids(c.acme, c.bolt, c.cargo)
	c.aggregated(t, 1, all, c.bolt, c.cargo)
	c.vote(t, 1, all...)

	round := c.round(t, 1)
	if round.Status != RoundVerified || round.ValidVotes != len(all) {
		t.Fatalf("round = %+v", round)
	}
	c.refused(t, "already voted", all[len(all)-1], "Vote", "mnist-1", "1", "true", "", "")
	before := c.company(t, "cargo")
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("7"), list("acme", "bolt"))
	after := c.company(t, "cargo")
	if after.Reputation < before.Reputation || after.Stake < before.Stake {
		t.Fatalf("the member who voted after the quorum was penalized: %+v -> %+v", before, after)
	}
	if s := c.round(t, 1).Standing; len(s.Penalties) != 0 {
		t.Fatalf("a round every member voted on and decrypted penalized %+v", s.Penalties)
	}
	c.refused(t, "votes are taken only on a recorded aggregate", all[0], "Vote", "mnist-1", "1", "true", "", "")
}

func TestACommitteeRejectionFailsTheRoundAndPenalizesTheLeader(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	// Only bolt and cargo stand, so acme, the third member, is left to vote.
	aggregated := c.aggregated(t, 1, ids(c.bolt, c.cargo), c.bolt, c.cargo)
	leader := aggregated.Leader

	c.ok(t, c.member(t, leader), "Vote", "mnist-1", "1", "true", "", "")
	c.ok(t, c.acme, "Vote", "mnist-1", "1", "false", "recomputed aggregate differs", "")
	r := c.ok(t, c.member(t, other(leader)), "Vote", "mnist-1", "1", "false", "hash mismatch", "")
	if r.Event == nil || r.Event.Name != "VoteCast" || !strings.Contains(string(r.Event.Payload), `"reason":"hash mismatch"`) {
		t.Fatalf("event = %+v", r.Event)
	}
	// A vote writes only its own key: the round shows the tally, and the quorum is out of reach.
	if round := c.round(t, 1); round.Status != RoundAggregated || round.InvalidVotes != 2 || round.ValidVotes != 1 {
		t.Fatalf("round = %+v", round)
	}
	c.refused(t, "only a verified round can be closed", c.publisher, "CloseRound", "mnist-1", "1", hash("7"), list("acme", "bolt"))
	c.ok(t, c.publisher, "FailRound", "mnist-1", "1", "the committee rejected the aggregate: hash mismatch")

	round := c.round(t, 1)
	company := c.company(t, leader)
	if round.Status != RoundFailed || !strings.Contains(round.FailureReason, "hash mismatch") || round.InvalidVotes != 2 {
		t.Fatalf("round = %+v", round)
	}
	if company.Reputation != 900 || company.Stake != 50-100 {
		t.Fatalf("leader not penalized: %+v", company)
	}
	// Every member voted: the leader alone answers, for its aggregate.
	if want := []Penalty{{Company: leader, Duty: DutyAggregation, Amount: 100}}; !reflect.DeepEqual(round.Standing.Penalties, want) {
		t.Fatalf("round standing = %+v, want penalties %+v", round.Standing, want)
	}
	c.refused(t, "votes are taken only on a recorded aggregate", c.acme, "Vote", "mnist-1", "1", "true", "", "")
	// A failed round spends no budget: the next opens at the epsilon of one closed round.
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "2")
	if got := c.round(t, 2).EpsilonAfterMicro; got != epsilonAfter(t, 1) {
		t.Fatalf("round 2 books epsilon %d, want %d (one round: the failed one spent nothing)", got, epsilonAfter(t, 1))
	}
}

func TestADemotedCompanyMayTrainButNotStandForLeaderAndItsVoteDoesNotCount(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	c.ok(t, c.admin3, "SetCompanyStatus", "cargo", "demoted")
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1")
	c.submit(t, c.bolt, 1, 5, 5)
	c.submit(t, c.cargo, 1, 5, 5) // still trains

	c.refused(t, "company cargo is demoted and may not stand for leader", c.cargo, "SubmitElectionProof", "mnist-1", "1",
		c.cargo.VRF.ProveHex(t, c.alpha(t, "mnist-1", 1)))
	c.prove(t, 1, c.acme, c.bolt)
	c.ok(t, c.publisher, "CloseCollection", "mnist-1", "1")
	round := c.round(t, 1)
	c.ok(t, c.member(t, round.Leader), "RecordAggregate", "mnist-1", "1", list("bolt", "cargo"), hash("a"))

	c.refused(t, "only a counted valid vote may carry a partial decryption", c.cargo, "Vote", "mnist-1", "1", "true", "", partial("cargo", 1))
	c.ok(t, c.cargo, "Vote", "mnist-1", "1", "false", "looks wrong", "")
	c.refused(t, "cargo has no counted valid vote on round 1 of task mnist-1", c.cargo, "RecordPartial", "mnist-1", "1", partial("cargo", 1))
	var votes []Vote
	c.get(t, &votes, "ListVotes", "mnist-1", "1")
	round = c.round(t, 1)
	if len(votes) != 1 || votes[0].Member != "cargo" || votes[0].Counted || round.InvalidVotes != 0 || round.Status != RoundAggregated {
		t.Fatalf("a demoted member's vote counted: votes %+v, round %+v", votes, round)
	}
	if len(round.Election.Ranking) != 2 || slices.Contains(round.Election.Ranking, "cargo") {
		t.Fatalf("ranking %v holds the demoted cargo", round.Election.Ranking)
	}
}

func TestRegisterCompanyAcceptsTheDealerRoleOnlyFromItsCertificate(t *testing.T) {
	c := newConsortium(t)
	vault := ledgertest.NewIdentity(t, "CarrierMSP", "vault", "participant")

	c.refused(t, "does not carry the dealer role", vault, "RegisterCompany", "vault", "dealer", "")
	c.ok(t, c.admin3, "RegisterCompany", "vault", "dealer", vault.Fingerprint())

	var vaultRecord Company
	c.get(t, &vaultRecord, "GetCompany", "vault")
	if !reflect.DeepEqual(vaultRecord.Roles, []string{"dealer"}) {
		t.Fatalf("vault = %+v", vaultRecord)
	}
	// Registered by its admin as a dealer, the identity still cannot deal: its certificate does not say so.
	c.ok(t, c.publisher, "CreateTask", genesis(func(g *Genesis) { g.Encryption.Dealer = "vault" }))
	c.refused(t, "company vault does not hold the dealer role", vault, "DealKey", "mnist-1", deal())
}

func TestRecordCompanyKeysChecksEachKeyRotatesTwoAndFixesTheVRFKey(t *testing.T) {
	c := newConsortium(t)
	openSSH := "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQ= bolt@node"
	vrfKey := c.bolt.VRF.PublicHex()
	cases := []struct{ want, encryption, node, vrf string }{
		{"the encryption key must be an X25519 public key", strings.ToUpper(encryptionKey("bolt")), nodeKey, vrfKey},
		{"the encryption key must be an X25519 public key", encryptionKey("bolt")[:62], nodeKey, vrfKey},
		{"the encryption key must be an X25519 public key", encryptionKey("bolt") + "00", nodeKey, vrfKey},
		{"the encryption key is all zeros", strings.Repeat("0", 64), nodeKey, vrfKey},
		{"the node key must be 1-1024 characters", encryptionKey("bolt"), "", vrfKey},
		{"the node key must be 1-1024 characters", encryptionKey("bolt"), nodeKey + strings.Repeat("A", 1024), vrfKey},
		{"the node key must be printable ASCII", encryptionKey("bolt"), "ssh-ed25519 AAAA\x00", vrfKey},
		{"the node key must be printable ASCII", encryptionKey("bolt"), "ssh-ed25519\tAAAA", vrfKey},
		{"the node key must be a public key in PEM", encryptionKey("bolt"), "my node", vrfKey},
		{"the node key must be a public key in PEM", encryptionKey("bolt"), openSSH + "\n" + openSSH, vrfKey},
		{"the node key starts as PEM but has no -----END line", encryptionKey("bolt"), "-----BEGIN PUBLIC KEY-----\nMFkw\n", vrfKey},
		{"the VRF key must be an Ed25519 public key as 64 lower-case hex digits, got 64", encryptionKey("bolt"), nodeKey, strings.ToUpper(vrfKey)},
		{"the VRF key must be an Ed25519 public key as 64 lower-case hex digits, got 0", encryptionKey("bolt"), nodeKey, ""},
		{"the VRF key is not usable: public key is a small-order point", encryptionKey("bolt"), nodeKey, "01" + strings.Repeat("00", 31)},
		{"the VRF key is not usable: public key is not a canonical encoding", encryptionKey("bolt"), nodeKey, "ed" + strings.Repeat("ff", 30) + "7f"},
		{"the VRF key is not usable: public key is not in the prime-order subgroup", encryptionKey("bolt"), nodeKey, withTorsion(t, c.bolt.VRF.Public)},
		{"company bolt recorded its VRF key " + vrfKey[:16] + "… already; a VRF key never changes once recorded",
			encryptionKey("bolt"), nodeKey, c.acme.VRF.PublicHex()},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, c.bolt, "RecordCompanyKeys", tc.encryption, tc.node, tc.vrf)
	}
	nobody := ledgertest.NewIdentity(t, "CarrierMSP", "nobody", "participant")
	c.refused(t, "is not a registered company", nobody, "RecordCompanyKeys", keys(nobody, "nobody")...)

	// What Python's cryptography writes for a Flower node's key: OpenSSH (P-384, Ed25519) and PEM.
	for _, accepted := range []string{
		"ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBIxfJRZ6eyJU4FhVhcvU6XewLP6IH9+8Xt9aL/Dl/AIfg1yr54jiKBWtbK7iqnMcTB0dI4YJYjihUvfRkbrvxpxgglTosd5mLX0NY3Yro8pth0v+HjCoGiIJCnB7TLbLxw==",
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBS8cCoixoULdy+uuaI6MilrmvT5AMolqChsnhVJkKB5",
		"-----BEGIN PUBLIC KEY-----\nMHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEjF8lFnp7IlTgWFWFy9Tpd7As/ogf37xe\n31ov8OX8Ah+DXKvniOIoFa1sruKqcxxMHR0jhgliOKFS99GRuu/GnGCCVOix3mYt\nfQ1jdiujym2HS/4eMKgaIgkKcHtMtsvH\n-----END PUBLIC KEY-----\n",
	} {
		c.ok(t, c.cargo, "RecordCompanyKeys", encryptionKey("cargo"), accepted, c.cargo.VRF.PublicHex())
	}
	r := c.ok(t, c.bolt, "RecordCompanyKeys", encryptionKey("bolt-2"), openSSH, vrfKey)
	bolt := c.company(t, "bolt")
	if bolt.EncryptionKey != encryptionKey("bolt-2") || bolt.NodeKey != openSSH || bolt.VrfKey != vrfKey || bolt.Status != StatusActive {
		t.Fatalf("bolt = %+v", bolt)
	}
	if r.Event == nil || r.Event.Name != "CompanyKeysRecorded" || !strings.Contains(string(r.Event.Payload), encryptionKey("bolt-2")) {
		t.Fatalf("event = %+v", r.Event)
	}
	// A company without keys records its VRF key once, with its first keys.
	dock := ledgertest.NewIdentity(t, "WarehouseMSP", "dock", "participant,committee")
	c.ok(t, dock, "RegisterCompany", "dock", "participant,committee", "")
	c.ok(t, dock, "RecordCompanyKeys", keys(dock, "dock")...)
	c.refused(t, "a VRF key never changes once recorded", dock, "RecordCompanyKeys", keys(c.acme, "dock")...)
	c.ok(t, c.admin2, "SetCompanyStatus", "bolt", "demoted")
	c.ok(t, c.bolt, "RecordCompanyKeys", keys(c.bolt, "bolt-3")...) // demoted, still its own keys
	c.ok(t, c.admin2, "SetCompanyStatus", "bolt", "revoked")
	c.refused(t, "company bolt is revoked", c.bolt, "RecordCompanyKeys", keys(c.bolt, "bolt-4")...)
}

// withTorsion is public plus a point of order 8, in hex: on the curve, canonical, of full order,
// but outside the prime-order subgroup.
func withTorsion(t *testing.T, public []byte) string {
	t.Helper()
	orderEight, _ := hex.DecodeString("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
	p, err := new(edwards25519.Point).SetBytes(public)
	if err != nil {
		t.Fatal(err)
	}
	q, err := new(edwards25519.Point).SetBytes(orderEight)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(new(edwards25519.Point).Add(p, q).Bytes())
}

func TestADealerHoldsNoOtherPlaceInItsTask(t *testing.T) {
	c := newConsortium(t)
	c.ok(t, c.stranger, "RegisterCompany", "rival", "participant,committee,publisher", "")
	dock := ledgertest.NewIdentity(t, "WarehouseMSP", "dock", "participant")
	c.ok(t, dock, "RegisterCompany", "dock", "participant", "")
	cases := []struct {
		want   string
		mutate func(*Genesis)
	}{
		{"the dealer pub may hold no other role in task mnist-1: it is also the publisher", func(g *Genesis) { g.Encryption.Dealer = "pub" }},
		{"the dealer acme may hold no other role in task mnist-1: it is also a committee member", func(g *Genesis) { g.Encryption.Dealer = "acme" }},
		{"the dealer kmc may hold no other role in task mnist-1: it is also a committee member", func(g *Genesis) { g.Committee[2] = "kmc" }},
		{"the dealer kmc may hold no other role in task mnist-1: it is also a participant", func(g *Genesis) { g.Participants = append(g.Participants, "kmc") }},
		{"dealer dock does not hold the dealer role", func(g *Genesis) { g.Encryption.Dealer = "dock" }},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, c.publisher, "CreateTask", genesis(tc.mutate))
	}
	// The publisher, who coordinates, may neither lead nor decrypt: it sits on no committee.
	c.refused(t, "the publisher rival may not sit on the committee of task mnist-1: it would lead and decrypt what it coordinates",
		c.stranger, "CreateTask", genesis(func(g *Genesis) { g.Committee[2] = "rival" }))
	c.ok(t, c.admin2, "SetCompanyStatus", "kmc", "demoted")
	c.refused(t, "dealer kmc is demoted", c.publisher, "CreateTask", genesis())
}

func TestATaskAwaitsItsKeyUntilItsDealerDealsSealedSharesOnce(t *testing.T) {
	c := newConsortium(t)
	c.ok(t, c.publisher, "CreateTask", genesis())
	var created Task
	c.get(t, &created, "GetTask", "mnist-1")
	if created.Status != TaskAwaitingKey || created.Encryption.PaillierN != "" || created.Encryption.Dealer != "kmc" {
		t.Fatalf("created task = %+v", created)
	}
	c.refused(t, "task mnist-1 awaits its key from dealer kmc", c.publisher, "OpenRound", "mnist-1", "1")
	c.refused(t, "task mnist-1 awaits its key from dealer kmc", c.publisher, "GetThresholdKey", "mnist-1")
	c.refused(t, "task mnist-1 awaits its key from dealer kmc", c.publisher, "GetKeyShareRecord", "mnist-1", "bolt")

	r := c.ok(t, c.kmc, "DealKey", "mnist-1", deal())

	var task Task
	c.get(t, &task, "GetTask", "mnist-1")
	var key ThresholdKey
	c.get(t, &key, "GetThresholdKey", "mnist-1")
	var record KeyShareRecord
	c.get(t, &record, "GetKeyShareRecord", "mnist-1", "bolt")
	if task.Status != TaskActive || task.Encryption.PaillierN != strings.Repeat("c3", 128) || task.Encryption.PublicKeySHA256 != sha(thresholdKey) {
		t.Fatalf("dealt task = %+v", task)
	}
	wantKey := ThresholdKey{TaskID: "mnist-1", Dealer: "kmc", PublicKey: base64.StdEncoding.EncodeToString(thresholdKey), PublicKeySHA256: sha(thresholdKey)}
	if key != wantKey {
		t.Fatalf("GetThresholdKey = %+v, want %+v", key, wantKey)
	}
	wantRecord := KeyShareRecord{TaskID: "mnist-1", Member: "bolt", MSPID: "WarehouseMSP", EncryptionKey: encryptionKey("bolt"),
		SealedShare: base64.StdEncoding.EncodeToString(sealed("bolt")), ShareSHA256: sha(share("bolt")), Dealer: "kmc"}
	if record != wantRecord {
		t.Fatalf("GetKeyShareRecord = %+v, want %+v", record, wantRecord)
	}
	wantEvent := fmt.Sprintf(`{"dealer":"kmc","members":["acme","bolt","cargo"],"public_key_sha256":"%s","task_id":"mnist-1"}`, sha(thresholdKey))
	if r.Event == nil || r.Event.Name != "KeyDealt" || string(r.Event.Payload) != wantEvent {
		t.Fatalf("event = %+v", r.Event)
	}
	c.refused(t, "company pub is not on the committee of task mnist-1 and holds no key share of it", c.publisher, "GetKeyShareRecord", "mnist-1", "pub")

	// A rotated encryption key applies to later deals; the record names the key the share is sealed to.
	c.ok(t, c.bolt, "RecordCompanyKeys", keys(c.bolt, "bolt-2")...)
	c.get(t, &record, "GetKeyShareRecord", "mnist-1", "bolt")
	if record.EncryptionKey != encryptionKey("bolt") {
		t.Fatalf("the record follows the rotated key: %+v", record)
	}
	c.refused(t, "the key of task mnist-1 has already been dealt", c.kmc, "DealKey", "mnist-1", deal())
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1")
}

func TestOnlyTheTasksDealerDealsAndOnlyAWholeBoundedKey(t *testing.T) {
	c := newConsortium(t)
	c.ok(t, c.publisher, "CreateTask", genesis())
	c.ok(t, c.stranger, "RegisterCompany", "kmc2", "dealer", "")
	big := func(n int) string { return base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", n))) }
	sealedOf := func(member string, raw []byte) func(*Deal) {
		return func(d *Deal) {
			for i := range d.Shares {
				if d.Shares[i].Member == member {
					d.Shares[i].SealedShare = base64.StdEncoding.EncodeToString(raw)
				}
			}
		}
	}
	cases := []struct {
		want string
		id   *ledgertest.Identity
		doc  string
	}{
		{"company acme does not hold the dealer role", c.acme, deal()},
		{"only the task's dealer kmc may deal the key of task mnist-1", c.stranger, deal()},
		{"the deal has no share for committee member cargo", c.kmc, deal(func(d *Deal) { d.Shares = sharesFor("acme", "bolt") })},
		{`the deal has a share for "pub", which is not on the committee of task mnist-1`, c.kmc,
			deal(func(d *Deal) { d.Shares = sharesFor("acme", "bolt", "cargo", "pub") })},
		{"the deal has two shares for committee member bolt", c.kmc, deal(func(d *Deal) { d.Shares = sharesFor("acme", "bolt", "bolt", "cargo") })},
		{"is not the SHA-256 of public_key", c.kmc, deal(func(d *Deal) { d.PublicKeySHA256 = hash("a") })},
		{"public_key_sha256 must be 64 lower-case hex", c.kmc, deal(func(d *Deal) { d.PublicKeySHA256 = "ABC" })},
		{"public_key is empty", c.kmc, deal(func(d *Deal) { d.PublicKey = "" })},
		{"public_key must be standard base64", c.kmc, deal(func(d *Deal) { d.PublicKey = d.PublicKey[:8] + "\n" + d.PublicKey[8:] })},
		{"public_key is not valid base64", c.kmc, deal(func(d *Deal) { d.PublicKey = "abc" })},
		{"public_key is 65537 bytes; at most 65536 are accepted", c.kmc, deal(func(d *Deal) { d.PublicKey = big(MaxThresholdKeyBytes + 1) })},
		{"public_key is 87388 base64 characters; at most 65536 bytes", c.kmc, deal(func(d *Deal) { d.PublicKey = big(MaxThresholdKeyBytes + 3) })},
		{"the sealed share of bolt is 16385 bytes; at most 16384 are accepted", c.kmc, deal(sealedOf("bolt", []byte(strings.Repeat("s", MaxSealedShareBytes+1))))},
		{"the sealed share of bolt is 21852 base64 characters; at most 16384 bytes", c.kmc, deal(sealedOf("bolt", []byte(strings.Repeat("s", MaxSealedShareBytes+3))))},
		{"the sealed share of bolt is 48 bytes: a sealed box is its share plus 48 bytes", c.kmc, deal(sealedOf("bolt", []byte(strings.Repeat("s", 48))))},
		{"share_sha256 of cargo must be 64 lower-case hex", c.kmc, deal(func(d *Deal) { d.Shares[0].ShareSHA256 = "x" })},
		{"paillier_n must be the Paillier modulus", c.kmc, deal(func(d *Deal) { d.PaillierN = "ff" })},
		{"paillier_n must be the Paillier modulus", c.kmc, deal(func(d *Deal) { d.PaillierN = "0" + strings.Repeat("c3", 128)[1:] })},
		{"paillier_n must be the Paillier modulus", c.kmc, deal(func(d *Deal) { d.PaillierN = strings.Repeat("c3", 513) })},
		{"paillier_n is even", c.kmc, deal(func(d *Deal) { d.PaillierN = strings.Repeat("c3", 127) + "ca" })},
		{"unknown field", c.kmc, `{"paillier_n":"c3","surprise":1}`},
		{"the deal is 159585 bytes; for a committee of 3 it may be at most 159584", c.kmc, deal() + strings.Repeat(" ", 159585-len(deal()))},
		{"trailing data", c.kmc, deal() + "{}"},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, tc.id, "DealKey", "mnist-1", tc.doc)
	}
	c.refused(t, "task nope does not exist", c.kmc, "DealKey", "nope", deal())
	c.refused(t, "is not a registered company", ledgertest.NewIdentity(t, "CarrierMSP", "nobody", "dealer"), "DealKey", "mnist-1", deal())

	// (A committee member without an encryption key can no longer be on a task: CreateTask asks
	// for its VRF key, which RecordCompanyKeys records only with an encryption key.)
	c.ok(t, c.admin2, "SetCompanyStatus", "kmc", "demoted")
	c.refused(t, "company kmc is demoted and may not deal keys", c.kmc, "DealKey", "mnist-1", deal())
}

func TestStateIsCanonicalJSONWithIntegersOnly(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	// A closed round holds every record: election, proofs, standing, rewards, votes.
	all := ids(c.acme, c.bolt, c.cargo)
	c.verifiedRound(t, 1, all, all[:2], c.acme, c.bolt)
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("1"), list("acme", "bolt"))

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
	f.Add(genesis(escrow))
	f.Add(genesis(func(g *Genesis) { g.Encryption.KeyCustody = "escrow" }))
	f.Add(genesis(escrow, func(g *Genesis) { g.Encryption.Master = "pub" }))
	f.Add(genesis(escrow, func(g *Genesis) { g.Encryption.Threshold = 1 }))
	f.Add(genesis(func(g *Genesis) { g.Encryption.Master = "bolt" }))
	f.Add(genesis(func(g *Genesis) { g.Encryption.Dealer = "acme" }))
	f.Add(genesis(func(g *Genesis) { g.Encryption.Dealer = "pub" }))
	f.Add(genesis(func(g *Genesis) { g.Participants = append(g.Participants, "kmc") }))
	f.Add(genesis(func(g *Genesis) { g.Committee[0] = "pub" }))
	f.Add(genesis(func(g *Genesis) { g.Privacy.NoiseMultiplier = "0" }))
	f.Add(genesis(func(g *Genesis) { g.Seed0 = strings.Repeat("5e", 150) }))
	f.Add(genesis(func(g *Genesis) { g.Encryption.PaillierN = strings.Repeat("c3", 128) }))
	f.Add(`{"task_id":"x"}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, doc string) {
		var g Genesis
		if decodeStrict(doc, &g, "genesis") != nil {
			return
		}
		if _, err := g.validate("pub"); err != nil {
			return
		}
		dealer, master := g.Encryption.Dealer, g.Encryption.Master
		switch {
		case g.TaskID == "":
			t.Fatalf("accepted a genesis without a task id: %q", doc)
		case g.Encryption.PaillierN != "" || g.Encryption.PublicKeySHA256 != "":
			t.Fatalf("accepted a genesis that is not waiting for its key: %q", doc)
		case g.Encryption.KeyCustody == CustodyThreshold && master != "":
			t.Fatalf("accepted a threshold genesis with a master: %q", doc)
		case g.Encryption.KeyCustody == CustodyEscrow && (!slices.Contains(g.Committee, master) || g.Encryption.Threshold < 2):
			t.Fatalf("accepted an escrow genesis whose master is off the committee or whose threshold is below 2: %q", doc)
		case g.Encryption.KeyCustody != CustodyThreshold && g.Encryption.KeyCustody != CustodyEscrow:
			t.Fatalf("accepted a genesis of unknown key custody: %q", doc)
		case dealer == "pub" || slices.Contains(g.Committee, dealer) || slices.Contains(g.Participants, dealer):
			t.Fatalf("accepted a genesis whose dealer holds another place: %q", doc)
		case slices.Contains(g.Committee, "pub"):
			t.Fatalf("accepted a genesis whose publisher sits on the committee: %q", doc)
		case len(g.Committee) > maxCommitteeSize || len(g.Participants) > maxParticipants || len(g.Seed0) > maxSeedHex || len(g.Seed0) < minSeedHex:
			t.Fatalf("accepted a genesis past its bounds: %q", doc)
		case g.LeaderWindowSeconds < 1 || g.MaxSamples < 1 || g.MillisPerSample < 1:
			t.Fatalf("accepted a genesis with a zero leader window, sample cap or cost per sample: %q", doc)
		case g.Privacy.NoiseMultiplier == "0" || strings.Trim(g.Privacy.NoiseMultiplier, "0.") == "":
			t.Fatalf("accepted a genesis without noise: %q", doc)
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
	c.withKey(t, genesis(func(g *Genesis) { g.Participants = []string{"acme", "bolt"} }))
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1")

	c.refused(t, "company cargo is not a participant of task mnist-1", c.cargo, "SubmitUpdate", "mnist-1", "1", hash("c"), "10", "5", "5")
	c.refused(t, "artifact hash must be 64 lower-case hex", c.bolt, "SubmitUpdate", "mnist-1", "1", "ABC", "10", "5", "5")
	c.refused(t, `samples must be a whole number from 1 to 100000, got "0" (task mnist-1's max_samples)`, c.bolt,
		"SubmitUpdate", "mnist-1", "1", hash("b"), "10", "0", "5")
	c.refused(t, "round 2 of task mnist-1 has not been opened", c.publisher, "ListUpdates", "mnist-1", "2")
	c.ok(t, c.acme, "SubmitUpdate", "mnist-1", "1", hash("a"), "10", "5", "5")
	c.ok(t, c.bolt, "SubmitUpdate", "mnist-1", "1", hash("b"), "10", "5", "5")

	c.refused(t, "does not hold the publisher role", c.acme, "FailRound", "mnist-1", "1", "stalled")
	c.ok(t, c.stranger, "RegisterCompany", "rival", "publisher", "")
	c.refused(t, "only the task's publisher pub may fail its rounds", c.stranger, "FailRound", "mnist-1", "1", "stalled")
	c.refused(t, "the reason for failing a round must be 1-512 characters, got 0", c.publisher, "FailRound", "mnist-1", "1", "")
	c.ok(t, c.publisher, "FailRound", "mnist-1", "1", "stalled")
	c.refused(t, "round 1 of task mnist-1 is failed and cannot be failed", c.publisher, "FailRound", "mnist-1", "1", "again")
	c.refused(t, "round 1 of task mnist-1 is failed: an aggregate is recorded only once collection has closed", c.acme,
		"RecordAggregate", "mnist-1", "1", list("acme", "bolt"), hash("a"))
	c.refused(t, "round 1 of task mnist-1 is failed: election proofs are taken only before collection closes", c.acme,
		"SubmitElectionProof", "mnist-1", "1", c.acme.VRF.ProveHex(t, c.alpha(t, "mnist-1", 1)))
	c.refused(t, "round 1 of task mnist-1 is failed: only a collecting round's collection can close", c.publisher, "CloseCollection", "mnist-1", "1")

	var task, round, update, company []Change
	c.get(t, &task, "GetTaskHistory", "mnist-1")
	c.get(t, &round, "GetRoundHistory", "mnist-1", "1")
	c.get(t, &update, "GetUpdateHistory", "mnist-1", "1", "bolt")
	c.get(t, &company, "GetCompanyHistory", "bolt")
	// The task was created, dealt its key, and opened a round; bolt's record changed three times:
	// registered, its keys recorded, then credited its initial tokens by CreateTask.
	if len(task) != 3 || len(round) != 2 || len(update) != 1 || len(company) != 3 {
		t.Fatalf("history lengths: task %d, round %d, update %d, company %d", len(task), len(round), len(update), len(company))
	}
	var first, dealt Task
	if err := json.Unmarshal(task[0].Value, &first); err != nil || first.Status != TaskAwaitingKey || task[1].Timestamp <= task[0].Timestamp {
		t.Fatalf("task history out of order: %+v", task)
	}
	if err := json.Unmarshal(task[1].Value, &dealt); err != nil || dealt.Status != TaskActive || dealt.CurrentRound != 0 {
		t.Fatalf("second task change = %s", task[1].Value)
	}
	var credited Company
	if err := json.Unmarshal(company[2].Value, &credited); err != nil || credited.Tokens != 50 || credited.Stake != 50 {
		t.Fatalf("third company change = %s", company[2].Value)
	}
	var failed Round
	if err := json.Unmarshal(round[1].Value, &failed); err != nil || failed.Status != RoundFailed || failed.FailureReason != "stalled" {
		t.Fatalf("last round change = %s", round[1].Value)
	}
	if ev := c.ledger.Events(); ev[len(ev)-1].Name != "RoundFailed" {
		t.Fatalf("last event %q", ev[len(ev)-1].Name)
	}
}

// -- escrow custody ------------------------------------------------------------------------

// escrow keeps a genesis's key in escrow, with bolt (the second of acme, bolt, cargo) as master.
func escrow(g *Genesis) { g.Encryption.KeyCustody, g.Encryption.Master = CustodyEscrow, "bolt" }

// masterKey stands in for an escrow task's private key.
var masterKey = []byte(`{"p":"c3","q":"c5"}`)

func sealedMasterKey() *SealedMasterKey {
	box := append([]byte(strings.Repeat("m", sealedBoxOverhead)), masterKey...)
	return &SealedMasterKey{SealedKey: base64.StdEncoding.EncodeToString(box), KeySHA256: sha(masterKey)}
}

// release is member's valid ReleaseEscrowShare document addressed to master, changed by mutate:
// its escrow share (share(member), whose hash the dealer recorded) sealed to master.
func release(master, member string, mutate ...func(*Release)) string {
	box := append([]byte(strings.Repeat("r", sealedBoxOverhead)), share(member)...)
	r := Release{Master: master, SealedShare: base64.StdEncoding.EncodeToString(box), ShareSHA256: sha(share(member))}
	for _, m := range mutate {
		m(&r)
	}
	raw, _ := json.Marshal(r)
	return string(raw)
}

func TestEscrowGenesisNamesAMasterOnTheCommitteeAndARecoveryThreshold(t *testing.T) {
	c := newConsortium(t)
	cases := []struct {
		want   string
		mutate func(*Genesis)
	}{
		{"escrow custody needs he.master: the committee member that holds the task's whole private key",
			func(g *Genesis) { g.Encryption.KeyCustody = CustodyEscrow }},
		{`he.master company name "Bolt" is invalid`, func(g *Genesis) { escrow(g); g.Encryption.Master = "Bolt" }},
		{"the master pub must be a committee member of task mnist-1", func(g *Genesis) { escrow(g); g.Encryption.Master = "pub" }},
		{"the master kmc must be a committee member of task mnist-1", func(g *Genesis) { escrow(g); g.Encryption.Master = "kmc" }},
		{"he.threshold 1 is too low for escrow custody: each member's share would be the master's key itself; use 2 to the committee size 3",
			func(g *Genesis) { escrow(g); g.Encryption.Threshold = 1 }},
		{"he.threshold 4 of he.committee_size 3 does not fit a committee of 3", func(g *Genesis) { escrow(g); g.Encryption.Threshold = 4 }},
		{`he.master "bolt" is only for escrow custody: under threshold custody no one holds the whole key; leave he.master out`,
			func(g *Genesis) { g.Encryption.Master = "bolt" }},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, c.publisher, "CreateTask", genesis(tc.mutate))
	}

	c.ok(t, c.publisher, "CreateTask", genesis(escrow, func(g *Genesis) { g.Encryption.Threshold = 3 }))

	var task Task
	c.get(t, &task, "GetTask", "mnist-1")
	if task.Status != TaskAwaitingKey || task.Encryption.KeyCustody != CustodyEscrow || task.Encryption.Master != "bolt" ||
		task.Master != "" || task.MasterHistory != nil {
		t.Fatalf("created escrow task = %+v", task)
	}
	c.refused(t, "task mnist-1 awaits its key from dealer kmc", c.publisher, "GetMasterKeyRecord", "mnist-1")
	c.refused(t, "task mnist-1 awaits its key from dealer kmc", c.publisher, "ListEscrowReleases", "mnist-1")
	c.refused(t, "task mnist-1 awaits its key from dealer kmc", c.publisher, "FailoverMaster", "mnist-1", "down")
	c.refused(t, "task mnist-1 awaits its key from dealer kmc", c.acme, "ReleaseEscrowShare", "mnist-1", release("bolt", "acme"))
}

func TestAnEscrowDealSealsTheWholeKeyToTheMasterAndAThresholdDealMayNot(t *testing.T) {
	c := newConsortium(t)
	c.ok(t, c.publisher, "CreateTask", genesis(escrow))
	c.ok(t, c.publisher, "CreateTask", genesis(func(g *Genesis) { g.TaskID = "mnist-2" }))
	withMaster := func(mutate func(*SealedMasterKey)) func(*Deal) {
		return func(d *Deal) {
			d.MasterKey = sealedMasterKey()
			mutate(d.MasterKey)
		}
	}
	sized := func(n int) func(*SealedMasterKey) {
		return func(k *SealedMasterKey) {
			k.SealedKey = base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", n)))
		}
	}
	valid := deal(withMaster(func(*SealedMasterKey) {}))
	cases := []struct{ want, doc string }{
		{"the deal of escrow task mnist-1 needs master_key: the task's private key sealed to its master bolt", deal()},
		{"the sealed master key is 48 bytes: a sealed box is its key plus 48 bytes", deal(withMaster(sized(sealedBoxOverhead)))},
		{"the sealed master key is 16385 bytes; at most 16384 are accepted", deal(withMaster(sized(MaxSealedKeyBytes + 1)))},
		{"the sealed master key is empty", deal(withMaster(func(k *SealedMasterKey) { k.SealedKey = "" }))},
		{"the sealed master key must be standard base64", deal(withMaster(func(k *SealedMasterKey) { k.SealedKey = "a b=" }))},
		{"key_sha256 must be 64 lower-case hex", deal(withMaster(func(k *SealedMasterKey) { k.KeySHA256 = strings.ToUpper(sha(masterKey)) }))},
		{"unknown field", strings.Replace(valid, `"key_sha256"`, `"key":"x","key_sha256"`, 1)},
		{"the deal is 181945 bytes; for a committee of 3 it may be at most 181944", valid + strings.Repeat(" ", 181945-len(valid))},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, c.kmc, "DealKey", "mnist-1", tc.doc)
	}
	c.refused(t, "the deal of task mnist-2 carries a master_key, but the task keeps its key by threshold custody: no one may hold the whole key",
		c.kmc, "DealKey", "mnist-2", valid)

	r := c.ok(t, c.kmc, "DealKey", "mnist-1", valid)

	var task Task
	c.get(t, &task, "GetTask", "mnist-1")
	var record MasterKeyRecord
	c.get(t, &record, "GetMasterKeyRecord", "mnist-1")
	var share KeyShareRecord
	c.get(t, &share, "GetKeyShareRecord", "mnist-1", "cargo")
	var releases []EscrowRelease
	c.get(t, &releases, "ListEscrowReleases", "mnist-1")
	if task.Status != TaskActive || task.Master != "bolt" || task.Encryption.Master != "bolt" || task.MasterHistory != nil {
		t.Fatalf("dealt escrow task = %+v", task)
	}
	want := MasterKeyRecord{TaskID: "mnist-1", Master: "bolt", MSPID: "WarehouseMSP", EncryptionKey: encryptionKey("bolt"),
		SealedKey: sealedMasterKey().SealedKey, KeySHA256: sha(masterKey), Dealer: "kmc"}
	if record != want {
		t.Fatalf("GetMasterKeyRecord = %+v, want %+v", record, want)
	}
	if share.ShareSHA256 != sha([]byte("key share of cargo")) || share.EncryptionKey != encryptionKey("cargo") {
		t.Fatalf("escrow share record = %+v", share)
	}
	if len(releases) != 0 {
		t.Fatalf("releases before any failover = %+v", releases)
	}
	wantEvent := fmt.Sprintf(`{"dealer":"kmc","master":"bolt","members":["acme","bolt","cargo"],"public_key_sha256":"%s","task_id":"mnist-1"}`, sha(thresholdKey))
	if r.Event == nil || r.Event.Name != "KeyDealt" || string(r.Event.Payload) != wantEvent {
		t.Fatalf("event = %+v", r.Event)
	}
	if strings.Contains(string(r.Event.Payload), record.SealedKey) {
		t.Fatal("the KeyDealt event carries the sealed master key")
	}
	// The record keeps the key the master's box was sealed to when the master rotates its key.
	c.ok(t, c.bolt, "RecordCompanyKeys", keys(c.bolt, "bolt-2")...)
	c.get(t, &record, "GetMasterKeyRecord", "mnist-1")
	if record.EncryptionKey != encryptionKey("bolt") {
		t.Fatalf("the master key record follows the rotated key: %+v", record)
	}
	c.refused(t, "task mnist-2 keeps its key by threshold custody and has no master key: only an escrow task has a master",
		c.publisher, "GetMasterKeyRecord", "mnist-2")
	c.refused(t, "task mnist-2 keeps its key by threshold custody and has no escrow releases", c.publisher, "ListEscrowReleases", "mnist-2")
}

func TestThePublisherFailsOverTheMasterToTheNextMemberThatWasNeverMaster(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis(escrow))
	c.withKey(t, genesis(func(g *Genesis) { g.TaskID = "mnist-2" }))
	c.ok(t, c.stranger, "RegisterCompany", "rival", "publisher", "")

	c.refused(t, "company acme does not hold the publisher role", c.acme, "FailoverMaster", "mnist-1", "bolt is down")
	c.refused(t, "only the task's publisher pub may fail over the master of task mnist-1", c.stranger, "FailoverMaster", "mnist-1", "bolt is down")
	c.refused(t, "failing over a master needs a reason of 1-512 characters, got 0", c.publisher, "FailoverMaster", "mnist-1", "")
	c.refused(t, "failing over a master needs a reason of 1-512 characters, got 513", c.publisher, "FailoverMaster", "mnist-1", strings.Repeat("x", 513))
	c.refused(t, "task mnist-2 keeps its key by threshold custody and has no master to fail over: only an escrow task has a master",
		c.publisher, "FailoverMaster", "mnist-2", "down")
	c.refused(t, "task nope does not exist", c.publisher, "FailoverMaster", "nope", "down")

	// bolt -> cargo, the next in the committee's order.
	r := c.ok(t, c.publisher, "FailoverMaster", "mnist-1", "bolt is down")
	var task Task
	c.get(t, &task, "GetTask", "mnist-1")
	var changes []Change
	c.get(t, &changes, "GetTaskHistory", "mnist-1")
	// At is the failover transaction's own timestamp: ledger time, not a clock.
	at := changes[len(changes)-1].Timestamp
	first := MasterChange{Master: "cargo", Failed: "bolt", Reason: "bolt is down", TxID: r.TxID, At: at}
	if changes[len(changes)-1].TxID != r.TxID || at <= task.CreatedAt || task.Master != "cargo" || task.Encryption.Master != "bolt" ||
		!reflect.DeepEqual(task.MasterHistory, []MasterChange{first}) {
		t.Fatalf("task after the failover = %+v (want history %+v)", task, first)
	}
	wantEvent := fmt.Sprintf(`{"at":%d,"failed":"bolt","master":"cargo","reason":"bolt is down","task_id":"mnist-1","tx_id":"%s"}`, first.At, r.TxID)
	if r.Event == nil || r.Event.Name != "MasterFailedOver" || string(r.Event.Payload) != wantEvent {
		t.Fatalf("event = %+v", r.Event)
	}

	// cargo -> acme (wrapping round), but not while acme is demoted: bolt has been master already.
	c.ok(t, c.admin1, "SetCompanyStatus", "acme", "demoted")
	c.refused(t, "no committee member of task mnist-1 can take over from master cargo: acme is demoted; bolt has been master",
		c.publisher, "FailoverMaster", "mnist-1", "cargo is down")
	c.ok(t, c.admin1, "SetCompanyStatus", "acme", "active")
	second := c.ok(t, c.publisher, "FailoverMaster", "mnist-1", "cargo is down")
	c.get(t, &task, "GetTask", "mnist-1")
	if task.Master != "acme" || len(task.MasterHistory) != 2 || task.MasterHistory[0] != first ||
		task.MasterHistory[1].Failed != "cargo" || task.MasterHistory[1].TxID != second.TxID || task.MasterHistory[1].At <= first.At {
		t.Fatalf("task after the second failover = %+v", task)
	}

	// Every member has been master: none is left to take over.
	c.refused(t, "no committee member of task mnist-1 can take over from master acme: bolt has been master; cargo has been master",
		c.publisher, "FailoverMaster", "mnist-1", "acme is down")
}

func TestAMasterIsNotFailedOverOnceItsTaskIsFinished(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis(escrow, func(g *Genesis) { g.Rounds = 1 }))
	all := ids(c.acme, c.bolt, c.cargo)
	c.verifiedRound(t, 1, all, all, c.acme, c.bolt)
	c.ok(t, c.publisher, "CloseRound", "mnist-1", "1", hash("1"), list("bolt"))

	c.refused(t, "task mnist-1 is finished: a master is failed over only while its task is active", c.publisher, "FailoverMaster", "mnist-1", "down")
}

func TestMembersReleaseTheirEscrowSharesOnceToTheMasterThatTookOver(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis(escrow))
	c.withKey(t, genesis(func(g *Genesis) { g.TaskID = "mnist-2" }))
	dock := ledgertest.NewIdentity(t, "WarehouseMSP", "dock", "participant,committee")
	c.ok(t, dock, "RegisterCompany", "dock", "participant,committee", "")

	c.refused(t, "the master of task mnist-1 has not been failed over: escrow shares are released only to a master that took over, and bolt still holds the key",
		c.acme, "ReleaseEscrowShare", "mnist-1", release("bolt", "acme"))
	c.refused(t, "task mnist-2 keeps its key by threshold custody and has no escrow shares to release", c.acme, "ReleaseEscrowShare", "mnist-2", release("bolt", "acme"))
	c.ok(t, c.publisher, "FailoverMaster", "mnist-1", "bolt is down")

	dealtTo := func(member string) string { return sha(share(member)) }
	cases := []struct {
		want string
		id   *ledgertest.Identity
		doc  string
	}{
		{"company cargo is the current master of task mnist-1: it opens its own escrow share from its key share record and releases none to itself",
			c.cargo, release("cargo", "cargo")},
		{"company dock is not on the committee of task mnist-1 and holds no escrow share of it", dock, release("cargo", "dock")},
		{"company pub does not hold the committee role", c.publisher, release("cargo", "pub")},
		{"is not a registered company", ledgertest.NewIdentity(t, "CarrierMSP", "nobody", "committee"), release("cargo", "acme")},
		{`the release is addressed to master "bolt", but the current master of task mnist-1 is cargo: seal the share to cargo's encryption key and name it`,
			c.acme, release("bolt", "acme")},
		{fmt.Sprintf("share_sha256 %s is not the commitment %s the dealer recorded for the escrow share of acme in task mnist-1", dealtTo("bolt"), dealtTo("acme")),
			c.acme, release("cargo", "acme", func(r *Release) { r.ShareSHA256 = dealtTo("bolt") })},
		{"share_sha256 must be 64 lower-case hex", c.acme, release("cargo", "acme", func(r *Release) { r.ShareSHA256 = "ab" })},
		{"the sealed escrow share is 48 bytes: a sealed box is its share plus 48 bytes", c.acme,
			release("cargo", "acme", func(r *Release) { r.SealedShare = base64.StdEncoding.EncodeToString([]byte(strings.Repeat("s", 48))) })},
		{"the sealed escrow share is 16385 bytes; at most 16384 are accepted", c.acme,
			release("cargo", "acme", func(r *Release) {
				r.SealedShare = base64.StdEncoding.EncodeToString([]byte(strings.Repeat("s", MaxSealedShareBytes+1)))
			})},
		{"the sealed escrow share is not valid base64", c.acme, release("cargo", "acme", func(r *Release) { r.SealedShare = "abc" })},
		{"unknown field", c.acme, `{"master":"cargo","member":"acme"}`},
		{"trailing data", c.acme, release("cargo", "acme") + "{}"},
		{fmt.Sprintf("the release is %d bytes; it may be at most %d", maxReleaseLength+1, maxReleaseLength), c.acme,
			release("cargo", "acme") + strings.Repeat(" ", maxReleaseLength+1-len(release("cargo", "acme")))},
	}
	for _, tc := range cases {
		c.refused(t, tc.want, tc.id, "ReleaseEscrowShare", "mnist-1", tc.doc)
	}

	// acme releases; bolt, the failed master, is demoted and may still release its own share.
	r := c.ok(t, c.acme, "ReleaseEscrowShare", "mnist-1", release("cargo", "acme"))
	c.ok(t, c.admin2, "SetCompanyStatus", "bolt", "demoted")
	boltTx := c.ok(t, c.bolt, "ReleaseEscrowShare", "mnist-1", release("cargo", "bolt")).TxID
	c.refused(t, fmt.Sprintf("company acme already released its escrow share of task mnist-1 to master cargo (tx %s)", r.TxID),
		c.acme, "ReleaseEscrowShare", "mnist-1", release("cargo", "acme"))

	var releases []EscrowRelease
	c.get(t, &releases, "ListEscrowReleases", "mnist-1")
	want := []EscrowRelease{
		{TaskID: "mnist-1", Master: "cargo", Member: "acme", EncryptionKey: encryptionKey("cargo"),
			SealedShare: base64.StdEncoding.EncodeToString(append([]byte(strings.Repeat("r", 48)), share("acme")...)), ShareSHA256: dealtTo("acme"), TxID: r.TxID},
		{TaskID: "mnist-1", Master: "cargo", Member: "bolt", EncryptionKey: encryptionKey("cargo"),
			SealedShare: base64.StdEncoding.EncodeToString(append([]byte(strings.Repeat("r", 48)), share("bolt")...)), ShareSHA256: dealtTo("bolt"), TxID: boltTx},
	}
	if !reflect.DeepEqual(releases, want) {
		t.Fatalf("ListEscrowReleases = %+v, want %+v", releases, want)
	}
	wantEvent := fmt.Sprintf(`{"encryption_key":"%s","master":"cargo","member":"acme","share_sha256":"%s","task_id":"mnist-1","tx_id":"%s"}`,
		encryptionKey("cargo"), dealtTo("acme"), r.TxID)
	if r.Event == nil || r.Event.Name != "EscrowShareReleased" || string(r.Event.Payload) != wantEvent {
		t.Fatalf("event = %+v", r.Event)
	}

	// The master rotates its key and then fails too: releases go to acme, sealed to its key of the moment.
	c.ok(t, c.acme, "RecordCompanyKeys", keys(c.acme, "acme-2")...)
	c.ok(t, c.publisher, "FailoverMaster", "mnist-1", "cargo is down")
	c.get(t, &releases, "ListEscrowReleases", "mnist-1")
	if len(releases) != 0 {
		t.Fatalf("releases to the new master before any = %+v", releases)
	}
	c.refused(t, `the release is addressed to master "cargo", but the current master of task mnist-1 is acme`, c.bolt,
		"ReleaseEscrowShare", "mnist-1", release("cargo", "bolt"))
	c.ok(t, c.admin3, "SetCompanyStatus", "cargo", "revoked")
	c.refused(t, "company cargo is revoked", c.cargo, "ReleaseEscrowShare", "mnist-1", release("acme", "cargo"))
	c.ok(t, c.bolt, "ReleaseEscrowShare", "mnist-1", release("acme", "bolt"))
	c.get(t, &releases, "ListEscrowReleases", "mnist-1")
	if len(releases) != 1 || releases[0].Member != "bolt" || releases[0].Master != "acme" || releases[0].EncryptionKey != encryptionKey("acme-2") {
		t.Fatalf("releases to acme = %+v", releases)
	}
}
