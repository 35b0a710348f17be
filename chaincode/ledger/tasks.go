package ledger

import (
	"fmt"
	"maps"
	"slices"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// Genesis is what a publisher fixes when it creates a task (the genesis block of
// 003_9658668e214f0ee6.txt, step 1). Decimal parameters are fixed-point strings.
//
// Governance: each round's leader is elected among the committee (election.go) from seed0;
// leader_window_seconds is how long, in ledger time, each ranked member has to record the
// aggregate before the next may. An update may claim at most max_samples samples (the packing's
// weight cap) and millis_per_sample of compute for each, the task's declared cost per sample.
// Participants and committee members receive initial_tokens of stake in the task (Task.Stakes,
// which its elections weigh; a company's Stake is its total over tasks); a closed round pays
// reward_per_round, a missed duty costs penalty (stake and reputation), a duty done earns
// reputation_gain; below reputation_threshold a company is demoted.
type Genesis struct {
	TaskID              string    `json:"task_id"`
	Model               ModelSpec `json:"model"`
	Rounds              int       `json:"rounds"`
	Privacy             DPSpec    `json:"dp"`
	Encryption          HESpec    `json:"he"`
	Committee           []string  `json:"committee"`
	Quorum              int       `json:"quorum"`
	Participants        []string  `json:"participants"`
	MinParticipants     int       `json:"min_participants"`
	Seed0               string    `json:"seed0"`
	LeaderWindowSeconds int64     `json:"leader_window_seconds"`
	MaxSamples          int64     `json:"max_samples"`
	MillisPerSample     int64     `json:"millis_per_sample"`
	InitialTokens       int64     `json:"initial_tokens"`
	RewardPerRound      int64     `json:"reward_per_round"`
	Penalty             int64     `json:"penalty"`
	ReputationThreshold int64     `json:"reputation_threshold"`
	ReputationGain      int64     `json:"reputation_gain"`
}

// Bounds of the genesis's governance numbers.
const (
	maxLeaderWindowSeconds = 86_400
	maxMillisPerSample     = 3_600_000
	maxTokens              = 1 << 50
)

// ModelSpec names the model and pins its initial weights.
type ModelSpec struct {
	Description          string `json:"description"`
	InitialWeightsSHA256 string `json:"initial_weights_sha256"`
}

// DPSpec holds the differential-privacy parameters; epsilon_budget bounds the whole task.
//
// Unit says what one unit of privacy protects: one record in any company's data (UnitRecord), or
// a company's whole dataset (UnitCompany). SampleRate is the Poisson rate at which a step samples
// records; under UnitCompany every company takes part in every round, so it is 1 (no
// amplification by sampling). StepsPerRound is how many sampled-Gaussian steps a round composes:
// one, unless each company runs DP-SGD itself (NoiseLocal). LabelEpsilon is the epsilon of the
// randomized response each company applies to its labels once per task ("0": none); the
// client's accountant books it into the total.
type DPSpec struct {
	EpsilonBudget   string `json:"epsilon_budget"`
	Delta           string `json:"delta"`
	ClipNorm        string `json:"clip_norm"`
	NoiseMultiplier string `json:"noise_multiplier"`
	NoiseMode       string `json:"noise_mode"`
	Unit            string `json:"unit"`
	SampleRate      string `json:"sample_rate"`
	StepsPerRound   int    `json:"steps_per_round"`
	LabelEpsilon    string `json:"label_epsilon"`
}

// Privacy units of a task (dp.unit).
const (
	UnitRecord  = "record"
	UnitCompany = "company"
)

// Noise modes of a task (dp.noise_mode): each company adds its share of the noise to what it
// encrypts (distributed), the leader adds it after decryption (central), or each company runs
// DP-SGD on its own data (local).
const (
	NoiseDistributed = "distributed"
	NoiseCentral     = "central"
	NoiseLocal       = "local"
)

// maxStepsPerRound bounds dp.steps_per_round under local noise.
const maxStepsPerRound = 10_000

// HESpec says how the task's Paillier key is kept and who makes it. The genesis names the dealer;
// the dealer's DealKey fills in the modulus and the public key's hash, which a genesis may not
// carry.
//
// Under threshold custody (CustodyThreshold) no one holds the private key: any Threshold of the
// committee decrypt together. Under escrow custody (CustodyEscrow, the design of
// 000_b005f3d8904386cc.txt) Master, a committee member, holds the whole key and decrypts alone;
// the key's factor is Shamir-shared over the committee, and Threshold is how many members rebuild
// it for a new master when the master fails.
type HESpec struct {
	KeyCustody      string `json:"key_custody"`
	Threshold       int    `json:"threshold"`
	CommitteeSize   int    `json:"committee_size"`
	Dealer          string `json:"dealer"`
	Master          string `json:"master,omitempty"`
	PaillierN       string `json:"paillier_n,omitempty"`
	PublicKeySHA256 string `json:"public_key_sha256,omitempty"`
}

// Key custodies of a task (he.key_custody).
const (
	CustodyThreshold = "threshold"
	CustodyEscrow    = "escrow"
)

// Task is a training task: its genesis and where it stands. An escrow task also names its
// current master (he.master until a FailoverMaster) and every failover, oldest first.
type Task struct {
	Genesis
	Publisher          string           `json:"publisher"`
	Status             string           `json:"status"`
	CurrentRound       int              `json:"current_round"`
	ClosedRounds       int              `json:"closed_rounds"`
	EpsilonSpentMicro  int64            `json:"epsilon_spent_micro"`
	EpsilonBudgetMicro int64            `json:"epsilon_budget_micro"`
	CreatedAt          int64            `json:"created_at"`
	Master             string           `json:"master,omitempty"`
	MasterHistory      []MasterChange   `json:"master_history,omitempty"`
	Stakes             map[string]int64 `json:"stakes"`
}

// MasterChange is one failover of an escrow task's master: Failed handed over to Master, for
// Reason, in transaction TxID at At (its timestamp, in seconds).
type MasterChange struct {
	Master string `json:"master"`
	Failed string `json:"failed"`
	Reason string `json:"reason"`
	TxID   string `json:"tx_id"`
	At     int64  `json:"at"`
}

// Task statuses: awaiting-key -> active -> finished. A task waits for its dealer's key before
// its first round can open.
const (
	TaskAwaitingKey = "awaiting-key"
	TaskActive      = "active"
	TaskFinished    = "finished"
)

// validate checks a genesis on its own and against its publisher: the places its companies
// hold, not yet whether they are registered.
func (g *Genesis) validate(publisher string) (budget int64, err error) {
	if err := checkName("task", g.TaskID); err != nil {
		return 0, err
	}
	if g.Model.Description == "" || len(g.Model.Description) > 1024 {
		return 0, fmt.Errorf("model.description must be 1-1024 characters")
	}
	if err := checkSHA256("model.initial_weights_sha256", g.Model.InitialWeightsSHA256); err != nil {
		return 0, err
	}
	if g.Rounds < 1 || g.Rounds > maxRounds {
		return 0, fmt.Errorf("rounds must be between 1 and %d, got %d", maxRounds, g.Rounds)
	}
	if budget, err = parseMicro("dp.epsilon_budget", g.Privacy.EpsilonBudget); err != nil {
		return 0, err
	}
	if budget == 0 {
		return 0, fmt.Errorf("dp.epsilon_budget must be positive")
	}
	// Ordered pairs, not a map: every peer must report the same first error.
	for _, f := range [][2]string{
		{"dp.delta", g.Privacy.Delta}, {"dp.clip_norm", g.Privacy.ClipNorm}, {"dp.noise_multiplier", g.Privacy.NoiseMultiplier},
		{"dp.label_epsilon", g.Privacy.LabelEpsilon},
	} {
		if _, err := parseMicro(f[0], f[1]); err != nil {
			return 0, err
		}
	}
	if err := g.Privacy.validateAccounting(); err != nil {
		return 0, err
	}
	if g.Encryption.PaillierN != "" || g.Encryption.PublicKeySHA256 != "" {
		return 0, fmt.Errorf("he.paillier_n and he.public_key_sha256 are not part of a genesis: the dealer supplies the key with DealKey")
	}
	switch g.Encryption.KeyCustody {
	case CustodyThreshold:
		if g.Encryption.Master != "" {
			return 0, fmt.Errorf("he.master %q is only for escrow custody: under threshold custody no one holds the whole key; leave he.master out",
				g.Encryption.Master)
		}
	case CustodyEscrow:
		if g.Encryption.Master == "" {
			return 0, fmt.Errorf("escrow custody needs he.master: the committee member that holds the task's whole private key")
		}
		if err := checkName("he.master company", g.Encryption.Master); err != nil {
			return 0, err
		}
	default:
		return 0, fmt.Errorf("he.key_custody must be threshold or escrow, got %q", g.Encryption.KeyCustody)
	}
	if err := checkName("he.dealer company", g.Encryption.Dealer); err != nil {
		return 0, err
	}
	n := len(g.Committee)
	if n < 1 || n > maxCommitteeSize || len(g.Participants) > maxParticipants {
		return 0, fmt.Errorf("a task has 1 to %d committee members and at most %d participants, got %d and %d",
			maxCommitteeSize, maxParticipants, n, len(g.Participants))
	}
	if g.Encryption.CommitteeSize != n || g.Encryption.Threshold < 1 || g.Encryption.Threshold > n {
		return 0, fmt.Errorf("he.threshold %d of he.committee_size %d does not fit a committee of %d",
			g.Encryption.Threshold, g.Encryption.CommitteeSize, n)
	}
	if g.Encryption.KeyCustody == CustodyEscrow && g.Encryption.Threshold < 2 {
		// With t = 1 every member's Shamir share would be the master key's factor itself.
		return 0, fmt.Errorf("he.threshold 1 is too low for escrow custody: each member's share would be the master's key itself; use 2 to the committee size %d", n)
	}
	if g.Quorum < 1 || g.Quorum > n {
		return 0, fmt.Errorf("quorum must be between 1 and the committee size %d, got %d", n, g.Quorum)
	}
	if g.Encryption.KeyCustody == CustodyThreshold && g.Quorum > g.Encryption.Threshold {
		// Each valid vote carries its member's partial decryption: with a quorum above t, t votes
		// could decrypt a round that is not yet verified, which then could neither close nor fail.
		return 0, fmt.Errorf("quorum %d exceeds he.threshold %d: under threshold custody every valid vote carries a partial decryption, so the round must be verified once t of them can decrypt it",
			g.Quorum, g.Encryption.Threshold)
	}
	if len(g.Participants) == 0 || g.MinParticipants < 1 || g.MinParticipants > len(g.Participants) {
		return 0, fmt.Errorf("min_participants %d must be between 1 and the %d participants", g.MinParticipants, len(g.Participants))
	}
	for _, list := range []struct {
		what  string
		names []string
	}{{"committee", g.Committee}, {"participants", g.Participants}} {
		if repeats(list.names) {
			return 0, fmt.Errorf("%s lists a company twice", list.what)
		}
	}
	if err := g.checkPlaces(publisher); err != nil {
		return 0, err
	}
	if !hexPattern.MatchString(g.Seed0) || len(g.Seed0) < minSeedHex || len(g.Seed0) > maxSeedHex || len(g.Seed0)%2 != 0 {
		return 0, fmt.Errorf("seed0 must be 16 to 64 bytes in lower-case hex (%d to %d digits), got %d characters",
			minSeedHex, maxSeedHex, len(g.Seed0))
	}
	// Ordered, not a map: every peer must report the same first error.
	for _, f := range []struct {
		what   string
		value  int64
		lo, hi int64
	}{
		{"leader_window_seconds", g.LeaderWindowSeconds, 1, maxLeaderWindowSeconds},
		{"max_samples", g.MaxSamples, 1, maxCount},
		{"millis_per_sample", g.MillisPerSample, 1, maxMillisPerSample},
		{"initial_tokens", g.InitialTokens, 0, maxTokens},
		{"reward_per_round", g.RewardPerRound, 0, maxTokens},
		{"penalty", g.Penalty, 0, InitialReputation},
		{"reputation_threshold", g.ReputationThreshold, 0, InitialReputation},
		{"reputation_gain", g.ReputationGain, 0, InitialReputation},
	} {
		if f.value < f.lo || f.value > f.hi {
			return 0, fmt.Errorf("%s must be from %d to %d, got %d", f.what, f.lo, f.hi, f.value)
		}
	}
	if err := g.checkAffordable(budget); err != nil {
		return 0, err
	}
	return budget, nil
}

// validateAccounting checks the fields the clients' accountant composes: which noise modes and
// sampling a privacy unit admits, and how many steps a round holds. Checked in a fixed order
// (unit, noise_mode, sample_rate, steps_per_round) so every peer reports the same first error.
func (dp *DPSpec) validateAccounting() error {
	var modes [2]string
	switch dp.Unit {
	case UnitCompany:
		modes = [2]string{NoiseCentral, NoiseDistributed}
	case UnitRecord:
		modes = [2]string{NoiseDistributed, NoiseLocal}
	default:
		return fmt.Errorf("dp.unit must be record or company, got %q", dp.Unit)
	}
	if dp.NoiseMode != modes[0] && dp.NoiseMode != modes[1] {
		return fmt.Errorf("dp.noise_mode must be %s or %s for unit %s, got %q", modes[0], modes[1], dp.Unit, dp.NoiseMode)
	}
	rate, err := parseMicro("dp.sample_rate", dp.SampleRate)
	if err != nil {
		return err
	}
	switch {
	case dp.Unit == UnitCompany && rate != microScale:
		// Sampling amplifies privacy only when a unit may sit a step out unseen; a company may not.
		return fmt.Errorf("dp.sample_rate must be 1 for unit company: every company takes part in every round, so there is no sampling to amplify privacy; got %q",
			dp.SampleRate)
	case rate <= 0 || rate > microScale:
		return fmt.Errorf("dp.sample_rate must be above 0 and at most 1 for unit record (rates below 0.000001 count as 0), got %q",
			dp.SampleRate)
	}
	if dp.NoiseMode == NoiseLocal {
		if dp.StepsPerRound < 1 || dp.StepsPerRound > maxStepsPerRound {
			return fmt.Errorf("dp.steps_per_round must be between 1 and %d for noise_mode local, got %d", maxStepsPerRound, dp.StepsPerRound)
		}
	} else if dp.StepsPerRound != 1 {
		// One noised sum per round: there are no further steps to compose.
		return fmt.Errorf("dp.steps_per_round must be 1 for noise_mode %s, got %d", dp.NoiseMode, dp.StepsPerRound)
	}
	return nil
}

// checkPlaces keeps the task's powers apart: the publisher, who coordinates, sits on no
// committee (so it can neither lead nor decrypt), an escrow task's master sits on the committee
// that escrows its key, and the dealer, who could decrypt everything with the key it generated,
// holds no other place at all.
func (g *Genesis) checkPlaces(publisher string) error {
	if slices.Contains(g.Committee, publisher) {
		return fmt.Errorf("the publisher %s may not sit on the committee of task %s: it would lead and decrypt what it coordinates",
			publisher, g.TaskID)
	}
	// The master's key is escrowed over the committee, and a member takes over when it fails.
	if master := g.Encryption.Master; master != "" && !slices.Contains(g.Committee, master) {
		return fmt.Errorf("the master %s must be a committee member of task %s", master, g.TaskID)
	}
	dealer := g.Encryption.Dealer
	// Ordered checks, not a map: every peer must report the same first overlap.
	for _, place := range []struct {
		what string
		held bool
	}{
		{"the publisher", dealer == publisher},
		{"a committee member", slices.Contains(g.Committee, dealer)},
		{"a participant", slices.Contains(g.Participants, dealer)},
	} {
		if place.held {
			return fmt.Errorf("the dealer %s may hold no other role in task %s: it is also %s", dealer, g.TaskID, place.what)
		}
	}
	return nil
}

// CreateTask records a task from its genesis JSON; only a company holding the publisher role
// may. Every committee member, participant and the dealer must be registered, active companies
// holding the role their place needs, and every committee member must have recorded its VRF key
// (so keys are fixed before seed0 is known). Participants and committee members receive
// initial_tokens, as tokens and stake. The task then awaits its key: no round opens until the
// dealer has run DealKey.
func (c *Contract) CreateTask(ctx contractapi.TransactionContextInterface, genesisJSON string) error {
	publisher, err := actingCompany(ctx, RolePublisher)
	if err != nil {
		return err
	}
	if publisher.Status != StatusActive {
		return fmt.Errorf("company %s is %s and may not publish tasks", publisher.Name, publisher.Status)
	}
	if err := checkLength("the task genesis", genesisJSON, maxGenesisLength); err != nil {
		return err
	}
	var g Genesis
	if err := decodeStrict(genesisJSON, &g, "the task genesis"); err != nil {
		return err
	}
	budget, err := g.validate(publisher.Name)
	if err != nil {
		return err
	}
	taskKey, err := key(ctx, kindTask, g.TaskID)
	if err != nil {
		return err
	}
	if found, err := exists(ctx, taskKey); err != nil {
		return err
	} else if found {
		return fmt.Errorf("task %s already exists", g.TaskID)
	}
	committee, err := loadMembers(ctx, g.Committee, RoleCommittee, "committee member")
	if err != nil {
		return err
	}
	for _, member := range committee {
		if member.VrfKey == "" {
			return fmt.Errorf("committee member %s has recorded no VRF key (RecordCompanyKeys): it could not stand for leader", member.Name)
		}
	}
	if err := requireMembers(ctx, []string{g.Encryption.Dealer}, RoleDealer, "dealer"); err != nil {
		return err
	}
	participants, err := loadMembers(ctx, g.Participants, RoleParticipant, "participant")
	if err != nil {
		return err
	}
	now, err := txSeconds(ctx)
	if err != nil {
		return err
	}
	task := &Task{
		Genesis: g, Publisher: publisher.Name, Status: TaskAwaitingKey,
		EpsilonBudgetMicro: budget, CreatedAt: now, Stakes: map[string]int64{},
	}
	book := newCompanyBook(ctx)
	for _, p := range append(participants, committee...) {
		book.companies[p.Name] = p
	}
	for _, name := range slices.Sorted(maps.Keys(book.companies)) {
		if err := book.reward(name, task, g.InitialTokens); err != nil {
			return err
		}
	}
	if err := book.save(); err != nil {
		return err
	}
	if err := putJSON(ctx, taskKey, task); err != nil {
		return err
	}
	return emit(ctx, "TaskCreated", task)
}

func loadMembers(ctx contractapi.TransactionContextInterface, names []string, role, place string) ([]*Company, error) {
	out := make([]*Company, 0, len(names))
	for _, name := range names {
		company, err := loadCompany(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", place, name, err)
		}
		if company.Status != StatusActive {
			return nil, fmt.Errorf("%s %s is %s", place, name, company.Status)
		}
		if !company.hasRole(role) {
			return nil, fmt.Errorf("%s %s does not hold the %s role", place, name, role)
		}
		out = append(out, company)
	}
	return out, nil
}

func requireMembers(ctx contractapi.TransactionContextInterface, names []string, role, place string) error {
	_, err := loadMembers(ctx, names, role, place)
	return err
}

func loadTask(ctx contractapi.TransactionContextInterface, taskID string) (*Task, error) {
	return load[Task](ctx, fmt.Sprintf("task %s does not exist", taskID), kindTask, taskID)
}

func saveTask(ctx contractapi.TransactionContextInterface, task *Task) error {
	return store(ctx, task, kindTask, task.TaskID)
}

// GetTask returns a task's genesis and state as JSON.
func (c *Contract) GetTask(ctx contractapi.TransactionContextInterface, taskID string) (string, error) {
	task, err := loadTask(ctx, taskID)
	if err != nil {
		return "", err
	}
	raw, err := canonical(task)
	return string(raw), err
}
