package ledger

import (
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// Round statuses: open -> collecting -> aggregated -> verified -> closed, or failed.
const (
	RoundOpen       = "open"
	RoundCollecting = "collecting"
	RoundAggregated = "aggregated"
	RoundVerified   = "verified"
	RoundClosed     = "closed"
	RoundFailed     = "failed"
)

// Round is one round of a task.
type Round struct {
	TaskID            string           `json:"task_id"`
	Number            int              `json:"number"`
	Status            string           `json:"status"`
	Leader            string           `json:"leader"`
	EpsilonAfterMicro int64            `json:"epsilon_after_micro"`
	Updates           int              `json:"updates"`
	Aggregate         *AggregateRecord `json:"aggregate,omitempty"`
	ValidVotes        int              `json:"valid_votes"`
	InvalidVotes      int              `json:"invalid_votes"`
	ModelSHA256       string           `json:"model_sha256,omitempty"`
	FailureReason     string           `json:"failure_reason,omitempty"`
	OpenedAt          int64            `json:"opened_at"`
	EndedAt           int64            `json:"ended_at,omitempty"`
}

// AggregateRecord names the aggregate artifact and exactly which updates it sums.
type AggregateRecord struct {
	SHA256     string   `json:"sha256"`
	Included   []string `json:"included"`
	RecordedBy string   `json:"recorded_by"`
	TxID       string   `json:"tx_id"`
}

// Update is a company's encrypted update of one round: its artifact's hash and size, and the
// sample count and compute time its reward is based on. The submitter is the transaction's
// creator, bound by Fabric's signature.
type Update struct {
	TaskID         string `json:"task_id"`
	Round          int    `json:"round"`
	Company        string `json:"company"`
	ArtifactSHA256 string `json:"artifact_sha256"`
	SizeBytes      int64  `json:"size_bytes"`
	Samples        int64  `json:"samples"`
	ComputeMillis  int64  `json:"compute_millis"`
	TxID           string `json:"tx_id"`
	SubmittedAt    int64  `json:"submitted_at"`
}

// Vote is a committee member's verdict on a round's aggregate.
type Vote struct {
	TaskID string `json:"task_id"`
	Round  int    `json:"round"`
	Member string `json:"member"`
	Valid  bool   `json:"valid"`
	Reason string `json:"reason,omitempty"`
	TxID   string `json:"tx_id"`
}

func roundKey(ctx contractapi.TransactionContextInterface, taskID string, n int) (string, error) {
	return key(ctx, kindRound, taskID, roundKeyPart(n))
}

func loadRound(ctx contractapi.TransactionContextInterface, taskID string, n int) (*Round, error) {
	return load[Round](ctx, fmt.Sprintf("round %d of task %s has not been opened", n, taskID), kindRound, taskID, roundKeyPart(n))
}

func saveRound(ctx contractapi.TransactionContextInterface, round *Round) error {
	return store(ctx, round, kindRound, round.TaskID, roundKeyPart(round.Number))
}

// taskAndRound loads a task and one of its rounds.
func taskAndRound(ctx contractapi.TransactionContextInterface, taskID string, n int) (*Task, *Round, error) {
	task, err := loadTask(ctx, taskID)
	if err != nil {
		return nil, nil, err
	}
	round, err := loadRound(ctx, taskID, n)
	return task, round, err
}

// actInRound identifies the acting company (holding role, if any) and loads the task and round.
func actInRound(ctx contractapi.TransactionContextInterface, role, taskID string, n int) (*Company, *Task, *Round, error) {
	company, err := actingCompany(ctx, role)
	if err != nil {
		return nil, nil, nil, err
	}
	task, round, err := taskAndRound(ctx, taskID, n)
	return company, task, round, err
}

// companyBook collects the changes one transaction makes to companies. Fabric reads never see
// the transaction's own writes, so a company touched twice must be changed in memory and
// written once.
type companyBook struct {
	ctx       contractapi.TransactionContextInterface
	companies map[string]*Company
}

func newCompanyBook(ctx contractapi.TransactionContextInterface) *companyBook {
	return &companyBook{ctx: ctx, companies: map[string]*Company{}}
}

func (b *companyBook) get(name string) (*Company, error) {
	if c, ok := b.companies[name]; ok {
		return c, nil
	}
	c, err := loadCompany(b.ctx, name)
	if err != nil {
		return nil, err
	}
	b.companies[name] = c
	return c, nil
}

// penalize applies Stake(t+1) = Stake(t) - Penalty (formula 7) and lowers reputation by the same
// amount; a company that falls below the task's threshold is demoted.
func (b *companyBook) penalize(name string, task *Task) error {
	c, err := b.get(name)
	if err != nil {
		return err
	}
	c.Stake -= task.Penalty
	c.Reputation -= task.Penalty
	if c.Status == StatusActive && c.Reputation < task.ReputationThreshold {
		c.Status = StatusDemoted
	}
	return nil
}

func (b *companyBook) save() error {
	names := make([]string, 0, len(b.companies))
	for name := range b.companies {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := saveCompany(b.ctx, b.companies[name]); err != nil {
			return err
		}
	}
	return nil
}

// taskOfPublisher loads a task for a transaction only its publisher may make (what it may do, for
// the refusal).
func taskOfPublisher(ctx contractapi.TransactionContextInterface, taskID, what string) (*Task, error) {
	task, err := loadTask(ctx, taskID)
	if err != nil {
		return nil, err
	}
	publisher, err := actingCompany(ctx, RolePublisher)
	if err != nil {
		return nil, err
	}
	if publisher.Name != task.Publisher {
		return nil, fmt.Errorf("only the task's publisher %s may %s", task.Publisher, what)
	}
	return task, nil
}

// OpenRound opens round n of a task; only the task's publisher may, and only once the task's
// dealer has dealt its key. epsilonAfter is the cumulative epsilon the task will have spent once
// this round closes (from the client's RDP accountant): a round that would pass the task's
// budget cannot be opened.
func (c *Contract) OpenRound(ctx contractapi.TransactionContextInterface, taskID string, n int, epsilonAfter string) error {
	task, err := taskOfPublisher(ctx, taskID, "open its rounds")
	if err != nil {
		return err
	}
	if task.Status == TaskAwaitingKey {
		return errors.New(awaitingKey(task))
	}
	if task.Status != TaskActive {
		return fmt.Errorf("task %s is %s", taskID, task.Status)
	}
	if n != task.CurrentRound+1 {
		return fmt.Errorf("the next round of task %s is %d, not %d", taskID, task.CurrentRound+1, n)
	}
	if n > task.Rounds {
		return fmt.Errorf("task %s has only %d rounds", taskID, task.Rounds)
	}
	if task.CurrentRound > 0 {
		previous, err := loadRound(ctx, taskID, task.CurrentRound)
		if err != nil {
			return err
		}
		if previous.Status != RoundClosed && previous.Status != RoundFailed {
			return fmt.Errorf("round %d of task %s is still %s", previous.Number, taskID, previous.Status)
		}
	}
	eps, err := parseMicro("epsilon after the round", epsilonAfter)
	if err != nil {
		return err
	}
	if eps < task.EpsilonSpentMicro {
		return fmt.Errorf("epsilon after round %d (%s) is below the %s already spent", n, formatMicro(eps), formatMicro(task.EpsilonSpentMicro))
	}
	if eps > task.EpsilonBudgetMicro {
		return fmt.Errorf("round %d would bring task %s to epsilon %s, past its budget of %s",
			n, taskID, formatMicro(eps), formatMicro(task.EpsilonBudgetMicro))
	}
	leader, err := loadCompany(ctx, task.Aggregator)
	if err != nil {
		return err
	}
	if leader.Status != StatusActive {
		return fmt.Errorf("aggregator %s is %s and may not lead round %d", leader.Name, leader.Status, n)
	}
	now, err := txSeconds(ctx)
	if err != nil {
		return err
	}
	round := &Round{TaskID: taskID, Number: n, Status: RoundOpen, Leader: leader.Name, EpsilonAfterMicro: eps, OpenedAt: now}
	task.CurrentRound = n
	if err := saveTask(ctx, task); err != nil {
		return err
	}
	if err := saveRound(ctx, round); err != nil {
		return err
	}
	return emit(ctx, "RoundOpened", round)
}

// SubmitUpdate records the caller's encrypted update for round n: the SHA-256 and size of the
// ciphertext artifact, its sample count n_k and compute time. One per company per round, only
// from the task's active participants, only while the round collects.
func (c *Contract) SubmitUpdate(ctx contractapi.TransactionContextInterface, taskID string, n int,
	artifactSHA256 string, sizeBytes int, samples int, computeMillis int) error {
	company, task, round, err := actInRound(ctx, RoleParticipant, taskID, n)
	if err != nil {
		return err
	}
	if !slices.Contains(task.Participants, company.Name) {
		return fmt.Errorf("company %s is not a participant of task %s", company.Name, taskID)
	}
	if round.Status != RoundOpen && round.Status != RoundCollecting {
		return fmt.Errorf("round %d of task %s is %s: updates are accepted only while it collects", n, taskID, round.Status)
	}
	if err := checkSHA256("artifact hash", artifactSHA256); err != nil {
		return err
	}
	if sizeBytes < 1 || samples < 1 || computeMillis < 0 {
		return fmt.Errorf("size_bytes and samples must be positive and compute_millis not negative")
	}
	k, err := key(ctx, kindUpdate, taskID, roundKeyPart(n), company.Name)
	if err != nil {
		return err
	}
	var existing Update
	if found, err := getJSON(ctx, k, &existing); err != nil {
		return err
	} else if found {
		return fmt.Errorf("company %s already submitted an update for round %d of task %s (tx %s)", company.Name, n, taskID, existing.TxID)
	}
	now, err := txSeconds(ctx)
	if err != nil {
		return err
	}
	update := &Update{
		TaskID: taskID, Round: n, Company: company.Name, ArtifactSHA256: artifactSHA256,
		SizeBytes: int64(sizeBytes), Samples: int64(samples), ComputeMillis: int64(computeMillis),
		TxID: ctx.GetStub().GetTxID(), SubmittedAt: now,
	}
	if err := putJSON(ctx, k, update); err != nil {
		return err
	}
	round.Updates++
	round.Status = RoundCollecting
	if err := saveRound(ctx, round); err != nil {
		return err
	}
	return emit(ctx, "UpdateSubmitted", update)
}

// RecordAggregate records round n's aggregate; only the round's leader may. includedJSON is the
// JSON array of the companies whose updates the aggregate sums, each of which must have an
// update in the round, at least min_participants of them.
func (c *Contract) RecordAggregate(ctx contractapi.TransactionContextInterface, taskID string, n int,
	includedJSON string, aggregateSHA256 string) error {
	company, task, round, err := actInRound(ctx, RoleParticipant, taskID, n)
	if err != nil {
		return err
	}
	if company.Name != round.Leader {
		return fmt.Errorf("only the leader of round %d (%s) may record its aggregate", n, round.Leader)
	}
	if company.Status != StatusActive {
		return fmt.Errorf("company %s is %s and may not lead", company.Name, company.Status)
	}
	if round.Status != RoundCollecting {
		return fmt.Errorf("round %d of task %s is %s: an aggregate is recorded only while it collects", n, taskID, round.Status)
	}
	if err := checkSHA256("aggregate hash", aggregateSHA256); err != nil {
		return err
	}
	var included []string
	if err := decodeStrict(includedJSON, &included, "the list of included updates"); err != nil {
		return err
	}
	sorted := slices.Clone(included)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(included) {
		return fmt.Errorf("the aggregate lists a company twice")
	}
	if len(included) < task.MinParticipants {
		return fmt.Errorf("the aggregate includes %d updates; task %s needs at least %d", len(included), taskID, task.MinParticipants)
	}
	for _, name := range included {
		k, err := key(ctx, kindUpdate, taskID, roundKeyPart(n), name)
		if err != nil {
			return err
		}
		if found, err := exists(ctx, k); err != nil {
			return err
		} else if !found {
			return fmt.Errorf("the aggregate lists company %s, which has no update in round %d of task %s", name, n, taskID)
		}
	}
	round.Aggregate = &AggregateRecord{SHA256: aggregateSHA256, Included: included, RecordedBy: company.Name, TxID: ctx.GetStub().GetTxID()}
	round.Status = RoundAggregated
	if err := saveRound(ctx, round); err != nil {
		return err
	}
	return emit(ctx, "AggregateRecorded", round)
}

// Vote records a committee member's verdict on round n's aggregate (a reason is required when
// it is invalid). When the quorum of valid votes is reached the round is verified; when the
// quorum can no longer be reached it fails, and its leader is penalized.
func (c *Contract) Vote(ctx contractapi.TransactionContextInterface, taskID string, n int, valid bool, reason string) error {
	member, task, round, err := actInRound(ctx, RoleCommittee, taskID, n)
	if err != nil {
		return err
	}
	if !slices.Contains(task.Committee, member.Name) {
		return fmt.Errorf("company %s is not on the committee of task %s", member.Name, taskID)
	}
	if member.Status != StatusActive {
		return fmt.Errorf("company %s is %s and may not vote", member.Name, member.Status)
	}
	// Votes are taken on a recorded aggregate until the round closes: a member whose vote comes
	// after the quorum is still recorded (and so not penalized as absent at close).
	if round.Status != RoundAggregated && round.Status != RoundVerified {
		return fmt.Errorf("round %d of task %s is %s: votes are taken only on a recorded aggregate", n, taskID, round.Status)
	}
	if !valid && reason == "" {
		return fmt.Errorf("a vote that the aggregate is invalid needs a reason")
	}
	if len(reason) > 512 {
		return fmt.Errorf("the reason is %d characters; at most 512", len(reason))
	}
	k, err := key(ctx, kindVote, taskID, roundKeyPart(n), member.Name)
	if err != nil {
		return err
	}
	if found, err := exists(ctx, k); err != nil {
		return err
	} else if found {
		return fmt.Errorf("committee member %s already voted on round %d of task %s", member.Name, n, taskID)
	}
	vote := &Vote{TaskID: taskID, Round: n, Member: member.Name, Valid: valid, Reason: reason, TxID: ctx.GetStub().GetTxID()}
	if err := putJSON(ctx, k, vote); err != nil {
		return err
	}
	if valid {
		round.ValidVotes++
	} else {
		round.InvalidVotes++
	}
	switch {
	case round.Status == RoundVerified:
		// Already verified by a quorum: a late vote is recorded and counted, and changes nothing else.
	case round.ValidVotes >= task.Quorum:
		round.Status = RoundVerified
	case round.InvalidVotes > len(task.Committee)-task.Quorum:
		round.Status = RoundFailed
		round.FailureReason = "the committee rejected the aggregate: " + reason
		if round.EndedAt, err = txSeconds(ctx); err != nil {
			return err
		}
		book := newCompanyBook(ctx)
		if err := book.penalize(round.Leader, task); err != nil {
			return err
		}
		if err := book.save(); err != nil {
			return err
		}
	}
	if err := saveRound(ctx, round); err != nil {
		return err
	}
	return emit(ctx, "VoteCast", map[string]any{"vote": vote, "round_status": round.Status})
}

// CloseRound closes a verified round with the new global model's hash; the task's publisher or
// the round's leader may. It books the epsilon the round spent, rewards the included updates in
// proportion to samples x compute time (formulas 7 and 11 of 002_d2037c4d31fbcea0.txt), and
// penalizes updates the aggregate left out and committee members who did not vote.
func (c *Contract) CloseRound(ctx contractapi.TransactionContextInterface, taskID string, n int, modelSHA256 string) error {
	closer, task, round, err := actInRound(ctx, "", taskID, n)
	if err != nil {
		return err
	}
	if closer.Name != task.Publisher && closer.Name != round.Leader {
		return fmt.Errorf("only the publisher %s or the leader %s may close round %d", task.Publisher, round.Leader, n)
	}
	if round.Status != RoundVerified {
		return fmt.Errorf("round %d of task %s is %s: only a verified round can be closed", n, taskID, round.Status)
	}
	if err := checkSHA256("model hash", modelSHA256); err != nil {
		return err
	}
	updates, err := listByPrefix[Update](ctx, kindUpdate, taskID, roundKeyPart(n))
	if err != nil {
		return err
	}
	votes, err := listByPrefix[Vote](ctx, kindVote, taskID, roundKeyPart(n))
	if err != nil {
		return err
	}
	book := newCompanyBook(ctx)
	rewards, err := reward(book, task, round, updates)
	if err != nil {
		return err
	}
	var penalized []string
	for _, u := range updates {
		if !slices.Contains(round.Aggregate.Included, u.Company) {
			penalized = append(penalized, u.Company)
		}
	}
	for _, member := range task.Committee {
		if !slices.ContainsFunc(votes, func(v Vote) bool { return v.Member == member }) {
			penalized = append(penalized, member)
		}
	}
	for _, name := range penalized {
		if err := book.penalize(name, task); err != nil {
			return err
		}
	}
	if err := book.save(); err != nil {
		return err
	}
	round.Status = RoundClosed
	round.ModelSHA256 = modelSHA256
	if round.EndedAt, err = txSeconds(ctx); err != nil {
		return err
	}
	task.EpsilonSpentMicro = round.EpsilonAfterMicro
	if n == task.Rounds {
		task.Status = TaskFinished
	}
	if err := saveRound(ctx, round); err != nil {
		return err
	}
	if err := saveTask(ctx, task); err != nil {
		return err
	}
	return emit(ctx, "RoundClosed", map[string]any{"round": round, "rewards": rewards, "penalized": penalized})
}

// reward shares the task's per-round reward among the included updates in proportion to their
// contribution C_i = samples x compute time (Stake_i = C_i / sum C_j, formula 11), in integer
// arithmetic; the remainder of the division is not paid out.
func reward(book *companyBook, task *Task, round *Round, updates []Update) (map[string]int64, error) {
	// big.Int: reward x samples x compute time can pass 2^63.
	contribution := map[string]*big.Int{}
	total := new(big.Int)
	for _, u := range updates {
		if slices.Contains(round.Aggregate.Included, u.Company) {
			// At least the samples count, so an update with zero compute time still earns.
			ci := new(big.Int).Mul(big.NewInt(u.Samples), big.NewInt(max(u.ComputeMillis, 1)))
			contribution[u.Company] = ci
			total.Add(total, ci)
		}
	}
	rewards := map[string]int64{}
	for name, ci := range contribution {
		r := new(big.Int).Mul(big.NewInt(task.RewardPerRound), ci)
		r.Quo(r, total)
		company, err := book.get(name)
		if err != nil {
			return nil, err
		}
		company.Stake += r.Int64()
		company.Tokens += r.Int64()
		rewards[name] = r.Int64()
	}
	return rewards, nil
}

// FailRound ends a round that cannot complete (too few updates, a stalled committee); only the
// task's publisher may, with a reason.
func (c *Contract) FailRound(ctx contractapi.TransactionContextInterface, taskID string, n int, reason string) error {
	publisher, task, round, err := actInRound(ctx, RolePublisher, taskID, n)
	if err != nil {
		return err
	}
	if publisher.Name != task.Publisher {
		return fmt.Errorf("only the task's publisher %s may fail its rounds", task.Publisher)
	}
	if reason == "" || len(reason) > 512 {
		return fmt.Errorf("failing a round needs a reason of 1-512 characters")
	}
	switch round.Status {
	case RoundOpen, RoundCollecting, RoundAggregated:
	default:
		return fmt.Errorf("round %d of task %s is %s and cannot be failed", n, taskID, round.Status)
	}
	round.Status = RoundFailed
	round.FailureReason = reason
	if round.EndedAt, err = txSeconds(ctx); err != nil {
		return err
	}
	if err := saveRound(ctx, round); err != nil {
		return err
	}
	return emit(ctx, "RoundFailed", round)
}

// GetRound returns a round as JSON.
func (c *Contract) GetRound(ctx contractapi.TransactionContextInterface, taskID string, n int) (string, error) {
	round, err := loadRound(ctx, taskID, n)
	if err != nil {
		return "", err
	}
	raw, err := canonical(round)
	return string(raw), err
}

// ListUpdates returns a round's update records (one range query), ordered by company.
func (c *Contract) ListUpdates(ctx contractapi.TransactionContextInterface, taskID string, n int) (string, error) {
	return listOfRound[Update](ctx, kindUpdate, taskID, n)
}

// ListVotes returns a round's committee votes, ordered by member.
func (c *Contract) ListVotes(ctx contractapi.TransactionContextInterface, taskID string, n int) (string, error) {
	return listOfRound[Vote](ctx, kindVote, taskID, n)
}

func listOfRound[T any](ctx contractapi.TransactionContextInterface, kind, taskID string, n int) (string, error) {
	if _, err := loadRound(ctx, taskID, n); err != nil {
		return "", err
	}
	records, err := listByPrefix[T](ctx, kind, taskID, roundKeyPart(n))
	if err != nil {
		return "", err
	}
	raw, err := canonical(records)
	return string(raw), err
}
