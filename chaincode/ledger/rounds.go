package ledger

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// Round statuses: open -> collecting -> collected -> aggregated -> verified -> closed, or failed.
// Collection closes (collected) when the publisher fixes the set of updates and the leader is
// elected; from then on no update is accepted and the aggregate must sum exactly that set.
// Verified is the tally of an aggregated round's votes (a quorum of counted valid votes), derived
// when the round is read or closed; chaincode 0.3.0 and earlier stored it.
const (
	RoundOpen       = "open"
	RoundCollecting = "collecting" // written by chaincode 0.2.0 and earlier; a round now stays open until collection closes
	RoundCollected  = "collected"
	RoundAggregated = "aggregated"
	RoundVerified   = "verified" // derived from the votes (see tally); stored by chaincode 0.3.0 and earlier
	RoundClosed     = "closed"
	RoundFailed     = "failed"
)

// Round is one round of a task. Seed is the round's election seed (hex); Leader is the first
// ranked member once collection closes, and whoever recorded the aggregate after that.
type Round struct {
	TaskID            string           `json:"task_id"`
	Number            int              `json:"number"`
	Status            string           `json:"status"`
	Seed              string           `json:"seed"`
	Leader            string           `json:"leader,omitempty"`
	Election          *Election        `json:"election,omitempty"`
	EpsilonAfterMicro int64            `json:"epsilon_after_micro"`
	Updates           int              `json:"updates"`
	Collected         []string         `json:"collected,omitempty"`
	Aggregate         *AggregateRecord `json:"aggregate,omitempty"`
	ValidVotes        int              `json:"valid_votes"`
	InvalidVotes      int              `json:"invalid_votes"`
	DecryptedBy       []string         `json:"decrypted_by,omitempty"`
	ModelSHA256       string           `json:"model_sha256,omitempty"`
	FailureReason     string           `json:"failure_reason,omitempty"`
	Standing          Standing         `json:"standing"`
	Rewards           map[string]int64 `json:"rewards,omitempty"`
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

// Vote is a committee member's verdict on a round's aggregate, and the hash of its partial
// decryption of that aggregate (PartialSHA256, once given). A demoted member's vote is recorded
// but not counted (Counted false) and carries no partial.
type Vote struct {
	TaskID        string `json:"task_id"`
	Round         int    `json:"round"`
	Member        string `json:"member"`
	Valid         bool   `json:"valid"`
	Counted       bool   `json:"counted"`
	Reason        string `json:"reason,omitempty"`
	PartialSHA256 string `json:"partial_sha256,omitempty"`
	TxID          string `json:"tx_id"`
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

// actInRound parses a round argument, identifies the acting company (holding role, if any) and
// loads the task and the round: how every transaction on a round begins.
func actInRound(ctx contractapi.TransactionContextInterface, role, taskID, round string) (*Company, *Task, *Round, error) {
	n, err := parseRound(round)
	if err != nil {
		return nil, nil, nil, err
	}
	company, err := actingCompany(ctx, role)
	if err != nil {
		return nil, nil, nil, err
	}
	task, r, err := taskAndRound(ctx, taskID, n)
	return company, task, r, err
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
// dealer has dealt its key. The chaincode's own accountant computes the epsilon the task will
// have spent once this round closes (every closed round so far plus this one): a round past the
// budget is refused. The round's election seed is chained from the previous round's.
func (c *Contract) OpenRound(ctx contractapi.TransactionContextInterface, taskID, round string) error {
	n, err := parseRound(round)
	if err != nil {
		return err
	}
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
	eps, err := task.epsilonAfter(task.ClosedRounds + 1)
	if err != nil {
		return err
	}
	if eps > task.EpsilonBudgetMicro {
		return fmt.Errorf("round %d would bring task %s to epsilon %s after %d closed rounds, past its budget of %s",
			n, taskID, formatMicro(eps), task.ClosedRounds+1, formatMicro(task.EpsilonBudgetMicro))
	}
	seed, err := roundSeed(ctx, task, n)
	if err != nil {
		return err
	}
	now, err := txSeconds(ctx)
	if err != nil {
		return err
	}
	r := &Round{TaskID: taskID, Number: n, Status: RoundOpen, Seed: hex.EncodeToString(seed), EpsilonAfterMicro: eps, OpenedAt: now}
	task.CurrentRound = n
	if err := saveTask(ctx, task); err != nil {
		return err
	}
	if err := saveRound(ctx, r); err != nil {
		return err
	}
	return emit(ctx, "RoundOpened", r)
}

// SubmitUpdate records the caller's encrypted update for round n: the SHA-256 and size of the
// ciphertext artifact, its sample count n_k and compute time. One per company per round, only
// from the task's participants (active or demoted), only while the round collects. A company
// may claim at most max_samples samples and millis_per_sample of compute for each.
func (c *Contract) SubmitUpdate(ctx contractapi.TransactionContextInterface, taskID, round string,
	artifactSHA256, sizeText, samplesText, computeText string) error {
	company, task, r, err := actInRound(ctx, RoleParticipant, taskID, round)
	if err != nil {
		return err
	}
	n := r.Number
	if !slices.Contains(task.Participants, company.Name) {
		return fmt.Errorf("company %s is not a participant of task %s", company.Name, taskID)
	}
	if r.Status != RoundOpen && r.Status != RoundCollecting {
		return fmt.Errorf("round %d of task %s is %s: updates are accepted only while it collects", n, taskID, r.Status)
	}
	if err := checkSHA256("artifact hash", artifactSHA256); err != nil {
		return err
	}
	size, err := parseInt("size_bytes", sizeText, 1, maxCount)
	if err != nil {
		return err
	}
	samples, err := parseInt("samples", samplesText, 1, task.MaxSamples)
	if err != nil {
		return fmt.Errorf("%v (task %s's max_samples)", err, taskID)
	}
	compute, err := parseInt("compute_millis", computeText, 0, int64(samples)*task.MillisPerSample)
	if err != nil {
		return fmt.Errorf("%v: task %s allows at most %d ms of compute per sample claimed", err, taskID, task.MillisPerSample)
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
		SizeBytes: int64(size), Samples: int64(samples), ComputeMillis: int64(compute),
		TxID: ctx.GetStub().GetTxID(), SubmittedAt: now,
	}
	// Only the company's own key is written: companies submitting to one round together do not
	// conflict (the round record is counted when collection closes).
	if err := putJSON(ctx, k, update); err != nil {
		return err
	}
	return emit(ctx, "UpdateSubmitted", update)
}

// CloseCollection ends round n's collection; only the task's publisher may. It fixes the set of
// updates the aggregate must sum (every update on the ledger now: nobody chooses), at least
// min_participants of them, and elects the round's leaders (see election.go).
func (c *Contract) CloseCollection(ctx contractapi.TransactionContextInterface, taskID, round string) error {
	n, err := parseRound(round)
	if err != nil {
		return err
	}
	task, err := taskOfPublisher(ctx, taskID, "close its rounds' collection")
	if err != nil {
		return err
	}
	r, err := loadRound(ctx, taskID, n)
	if err != nil {
		return err
	}
	if r.Status != RoundCollecting && r.Status != RoundOpen {
		return fmt.Errorf("round %d of task %s is %s: only a collecting round's collection can close", n, taskID, r.Status)
	}
	updates, err := listByPrefix[Update](ctx, kindUpdate, taskID, roundKeyPart(n))
	if err != nil {
		return err
	}
	if len(updates) < task.MinParticipants {
		return fmt.Errorf("round %d of task %s has %d update(s); it needs at least %d (min_participants) to close collection; fail the round instead",
			n, taskID, len(updates), task.MinParticipants)
	}
	now, err := txSeconds(ctx)
	if err != nil {
		return err
	}
	election, err := elect(ctx, task, r, now)
	if err != nil {
		return err
	}
	r.Collected = make([]string, 0, len(updates))
	for _, u := range updates {
		r.Collected = append(r.Collected, u.Company)
	}
	slices.Sort(r.Collected)
	r.Updates = len(updates)
	r.Election = election
	r.Leader = election.Ranking[0]
	r.Status = RoundCollected
	if err := saveRound(ctx, r); err != nil {
		return err
	}
	return emit(ctx, "CollectionClosed", r)
}

// RecordAggregate records round n's aggregate: the hash of the homomorphic sum and the JSON
// array of the companies whose updates it sums, which must be exactly the set fixed when
// collection closed. Only a ranked member whose slot has come may (the first ranked at once, the
// k-th after k-1 leader windows of ledger time); every member ranked above it is penalized for
// its missed slot, and the failover is recorded.
func (c *Contract) RecordAggregate(ctx contractapi.TransactionContextInterface, taskID, round string,
	includedJSON string, aggregateSHA256 string) error {
	company, task, r, err := actInRound(ctx, RoleCommittee, taskID, round)
	if err != nil {
		return err
	}
	n := r.Number
	if r.Status != RoundCollected {
		return fmt.Errorf("round %d of task %s is %s: an aggregate is recorded only once collection has closed, and once", n, taskID, r.Status)
	}
	rank := slices.Index(r.Election.Ranking, company.Name)
	if rank < 0 {
		return fmt.Errorf("company %s is not ranked in the election of round %d of task %s (ranking %v) and may not record its aggregate",
			company.Name, n, taskID, r.Election.Ranking)
	}
	if company.Status != StatusActive {
		return fmt.Errorf("company %s is %s and may not lead", company.Name, company.Status)
	}
	now, err := txSeconds(ctx)
	if err != nil {
		return err
	}
	if slot := r.Election.slot(now); rank > slot {
		return fmt.Errorf("company %s is ranked %d for round %d of task %s: it may record the aggregate only from ledger time %d, once each member ranked above it has had its %d s (now %d)",
			company.Name, rank+1, n, taskID, r.Election.ClosedAt+int64(rank)*r.Election.WindowSeconds, r.Election.WindowSeconds, now)
	}
	if err := checkSHA256("aggregate hash", aggregateSHA256); err != nil {
		return err
	}
	if err := checkLength("the list of included updates", includedJSON, maxListLength); err != nil {
		return err
	}
	var included []string
	if err := decodeStrict(includedJSON, &included, "the list of included updates"); err != nil {
		return err
	}
	if err := sameSet("the aggregate", included, r.Collected, "the updates fixed when collection closed"); err != nil {
		return err
	}
	book := newCompanyBook(ctx)
	if err := r.Election.missedSlots(book, task, rank); err != nil {
		return err
	}
	for i, failed := range r.Election.Ranking[:rank] {
		r.Election.Failovers = append(r.Election.Failovers, LeaderFailover{
			Failed: failed, Rank: i + 1, Successor: company.Name, At: now, TxID: ctx.GetStub().GetTxID(),
		})
	}
	if err := book.save(); err != nil {
		return err
	}
	if rank > 0 {
		// The missed slots' penalties came out of the task's stakes.
		if err := saveTask(ctx, task); err != nil {
			return err
		}
	}
	r.Standing.merge(book.standing())
	r.Leader = company.Name
	r.Aggregate = &AggregateRecord{SHA256: aggregateSHA256, Included: r.Collected, RecordedBy: company.Name, TxID: ctx.GetStub().GetTxID()}
	r.Status = RoundAggregated
	if err := saveRound(ctx, r); err != nil {
		return err
	}
	return emit(ctx, "AggregateRecorded", r)
}

// sameSet refuses a list of companies that is not exactly the expected set, naming what it
// omits and what it adds.
func sameSet(what string, got, want []string, wantName string) error {
	if repeats(got) {
		return fmt.Errorf("%s lists a company twice", what)
	}
	var omitted, added []string
	for _, name := range want {
		if !slices.Contains(got, name) {
			omitted = append(omitted, name)
		}
	}
	for _, name := range got {
		if !slices.Contains(want, name) {
			added = append(added, name)
		}
	}
	switch {
	case len(omitted) > 0:
		return fmt.Errorf("%s omits %v: it must include exactly %s %v", what, omitted, wantName, want)
	case len(added) > 0:
		return fmt.Errorf("%s includes %v, which are not among %s %v", what, added, wantName, want)
	}
	return nil
}

// Vote records a committee member's verdict on round n's aggregate ("true" or "false"; a reason
// is required when invalid) and, with a valid verdict, the SHA-256 of its partial decryption of
// the aggregate (or "" to give it later with RecordPartial). It writes only the member's own vote
// key, so a committee votes together without conflicting: the round's verdict is the tally of
// its votes (see tally), read by GetRound and settled by CloseRound or FailRound. An active
// member's vote counts; a demoted member's vote is recorded without counting.
func (c *Contract) Vote(ctx contractapi.TransactionContextInterface, taskID, round, validText, reason, partialSHA256 string) error {
	member, task, r, err := actInRound(ctx, RoleCommittee, taskID, round)
	if err != nil {
		return err
	}
	n := r.Number
	valid, err := parseBool("valid", validText)
	if err != nil {
		return err
	}
	if !slices.Contains(task.Committee, member.Name) {
		return fmt.Errorf("company %s is not on the committee of task %s", member.Name, taskID)
	}
	// Votes are taken on a recorded aggregate until the round ends: a member whose vote comes
	// after the quorum is still recorded (and so not penalized as absent at close).
	if r.Status != RoundAggregated && r.Status != RoundVerified {
		return fmt.Errorf("round %d of task %s is %s: votes are taken only on a recorded aggregate", n, taskID, r.Status)
	}
	counted := member.Status == StatusActive
	switch {
	case !valid && reason == "":
		return fmt.Errorf("a vote that the aggregate is invalid needs a reason")
	case reason != "":
		if err := checkReason("the reason", reason); err != nil {
			return err
		}
	}
	if partialSHA256 != "" {
		if !valid || !counted {
			return fmt.Errorf("only a counted valid vote may carry a partial decryption: a member decrypts only an aggregate it found valid")
		}
		if err := checkSHA256("partial decryption hash", partialSHA256); err != nil {
			return err
		}
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
	vote := &Vote{TaskID: taskID, Round: n, Member: member.Name, Valid: valid, Counted: counted, Reason: reason,
		PartialSHA256: partialSHA256, TxID: ctx.GetStub().GetTxID()}
	if err := putJSON(ctx, k, vote); err != nil {
		return err
	}
	return emit(ctx, "VoteCast", vote)
}

// tally counts an aggregated round's votes into r and derives its verdict: verified once a quorum
// of counted valid votes is in. Rounds that ended keep the counts their end recorded. It returns
// the round's votes (nil for a round not awaiting them).
func tally(ctx contractapi.TransactionContextInterface, task *Task, r *Round) ([]Vote, error) {
	if r.Status != RoundAggregated && r.Status != RoundVerified {
		return nil, nil
	}
	votes, err := listByPrefix[Vote](ctx, kindVote, r.TaskID, roundKeyPart(r.Number))
	if err != nil {
		return nil, err
	}
	r.ValidVotes, r.InvalidVotes = 0, 0
	for _, v := range votes {
		switch {
		case !v.Counted:
		case v.Valid:
			r.ValidVotes++
		default:
			r.InvalidVotes++
		}
	}
	if r.ValidVotes >= task.Quorum {
		r.Status = RoundVerified
	}
	return votes, nil
}

// rejected reports whether the committee's counted invalid votes leave the quorum out of reach.
func (r *Round) rejected(task *Task) bool {
	return r.InvalidVotes > len(task.Committee)-task.Quorum
}

// RecordPartial records the SHA-256 of the caller's partial decryption (or, under escrow custody,
// the master's opening) of round n's aggregate, for a member whose counted valid vote is on the
// ledger without one.
func (c *Contract) RecordPartial(ctx contractapi.TransactionContextInterface, taskID, round, partialSHA256 string) error {
	member, _, r, err := actInRound(ctx, RoleCommittee, taskID, round)
	if err != nil {
		return err
	}
	n := r.Number
	if r.Status != RoundAggregated && r.Status != RoundVerified {
		return fmt.Errorf("round %d of task %s is %s: partial decryptions are recorded only for a recorded aggregate", n, taskID, r.Status)
	}
	if err := checkSHA256("partial decryption hash", partialSHA256); err != nil {
		return err
	}
	k, err := key(ctx, kindVote, taskID, roundKeyPart(n), member.Name)
	if err != nil {
		return err
	}
	var vote Vote
	if found, err := getJSON(ctx, k, &vote); err != nil {
		return err
	} else if !found || !vote.Valid || !vote.Counted {
		return fmt.Errorf("%s has no counted valid vote on round %d of task %s: a member decrypts only an aggregate it has checked and voted valid",
			member.Name, n, taskID)
	}
	if vote.PartialSHA256 != "" {
		return fmt.Errorf("%s already recorded its partial decryption of round %d (%s…)", member.Name, n, vote.PartialSHA256[:16])
	}
	vote.PartialSHA256 = partialSHA256
	if err := putJSON(ctx, k, &vote); err != nil {
		return err
	}
	return emit(ctx, "PartialRecorded", &vote)
}

// CloseRound closes a verified round with the new global model's hash and the JSON array of
// the members whose partial decryptions were combined (exactly he.threshold of them under
// threshold custody; the current master under escrow custody), each with a counted valid vote
// and a recorded partial; the round's leader or the task's publisher may. It books the epsilon
// the round spent, pays the round's reward to the included updates in proportion to their
// contribution (formulas 7 and 11 of 002_d2037c4d31fbcea0.txt), credits every duty done and
// penalizes every duty missed.
func (c *Contract) CloseRound(ctx contractapi.TransactionContextInterface, taskID, round, modelSHA256, decryptedByJSON string) error {
	closer, task, r, err := actInRound(ctx, "", taskID, round)
	if err != nil {
		return err
	}
	n := r.Number
	if closer.Name != task.Publisher && closer.Name != r.Leader {
		return fmt.Errorf("only the publisher %s or the leader %s may close round %d", task.Publisher, r.Leader, n)
	}
	votes, err := tally(ctx, task, r)
	if err != nil {
		return err
	}
	if r.Status != RoundVerified {
		return fmt.Errorf("round %d of task %s is %s: only a verified round can be closed", n, taskID, r.Status)
	}
	if err := checkSHA256("model hash", modelSHA256); err != nil {
		return err
	}
	if err := checkLength("the list of decrypting members", decryptedByJSON, maxListLength); err != nil {
		return err
	}
	var decryptedBy []string
	if err := decodeStrict(decryptedByJSON, &decryptedBy, "the list of decrypting members"); err != nil {
		return err
	}
	if err := checkDecryptedBy(task, decryptedBy, votes); err != nil {
		return err
	}
	updates, err := listByPrefix[Update](ctx, kindUpdate, taskID, roundKeyPart(n))
	if err != nil {
		return err
	}
	book := newCompanyBook(ctx)
	rewards, err := reward(book, task, r, updates)
	if err != nil {
		return err
	}
	credited := slices.Clone(r.Aggregate.Included)
	credited = append(credited, r.Leader)
	for _, v := range votes {
		if v.Valid && v.Counted {
			credited = append(credited, v.Member)
		}
	}
	slices.Sort(credited)
	for _, name := range slices.Compact(credited) {
		if err := book.credit(name, task); err != nil {
			return err
		}
	}
	if err := penalizeAbsentees(book, task, votes); err != nil {
		return err
	}
	if err := book.save(); err != nil {
		return err
	}
	r.Standing.merge(book.standing())
	r.Rewards = rewards
	r.Status = RoundClosed
	r.ModelSHA256 = modelSHA256
	r.DecryptedBy = slices.Sorted(slices.Values(decryptedBy))
	if r.EndedAt, err = txSeconds(ctx); err != nil {
		return err
	}
	task.EpsilonSpentMicro = r.EpsilonAfterMicro
	task.ClosedRounds++
	if finished, err := endRound(ctx, task, r); err != nil {
		return err
	} else if !finished {
		if err := saveTask(ctx, task); err != nil {
			return err
		}
	}
	if err := saveRound(ctx, r); err != nil {
		return err
	}
	return emit(ctx, "RoundClosed", r)
}

// checkDecryptedBy checks who a close says decrypted the aggregate: distinct members with
// counted valid votes and recorded partials, as many as the task's custody needs.
func checkDecryptedBy(task *Task, decryptedBy []string, votes []Vote) error {
	if repeats(decryptedBy) {
		return fmt.Errorf("the list of decrypting members names a member twice")
	}
	switch task.Encryption.KeyCustody {
	case CustodyThreshold:
		if len(decryptedBy) != task.Encryption.Threshold {
			return fmt.Errorf("a round of task %s is decrypted by exactly %d members (he.threshold), the close names %d",
				task.TaskID, task.Encryption.Threshold, len(decryptedBy))
		}
	case CustodyEscrow:
		if len(decryptedBy) != 1 || decryptedBy[0] != task.Master {
			return fmt.Errorf("a round of escrow task %s is decrypted by its master %s alone, the close names %v",
				task.TaskID, task.Master, decryptedBy)
		}
	}
	for _, name := range decryptedBy {
		i := slices.IndexFunc(votes, func(v Vote) bool { return v.Member == name })
		switch {
		case i < 0 || !votes[i].Valid || !votes[i].Counted:
			return fmt.Errorf("%s has no counted valid vote on the round, so its partial decryption may not be combined", name)
		case votes[i].PartialSHA256 == "":
			return fmt.Errorf("%s has recorded no partial decryption of the round", name)
		}
	}
	return nil
}

// penalizeAbsentees penalizes committee members without a vote and, under threshold custody,
// members whose counted valid vote came without a partial decryption.
func penalizeAbsentees(book *companyBook, task *Task, votes []Vote) error {
	for _, member := range task.Committee {
		i := slices.IndexFunc(votes, func(v Vote) bool { return v.Member == member })
		switch {
		case i < 0:
			if err := book.penalize(member, task, DutyVote); err != nil {
				return err
			}
		case task.Encryption.KeyCustody == CustodyThreshold && votes[i].Valid && votes[i].Counted && votes[i].PartialSHA256 == "":
			if err := book.penalize(member, task, DutyPartial); err != nil {
				return err
			}
		}
	}
	return nil
}

// endRound finishes the task with its last round, closed or failed, and saves the task if so;
// it reports whether it did.
func endRound(ctx contractapi.TransactionContextInterface, task *Task, r *Round) (bool, error) {
	if r.Number != task.Rounds {
		return false, nil
	}
	task.Status = TaskFinished
	return true, saveTask(ctx, task)
}

// reward shares the task's per-round reward among the included updates in proportion to their
// contribution C_i = samples x compute time (Stake_i = C_i / sum C_j, formula 11), in integer
// arithmetic; the remainder of the division is not paid out. Both factors are bounded at
// submission (max_samples, millis_per_sample), and only updates in a verified aggregate earn.
func reward(book *companyBook, task *Task, r *Round, updates []Update) (map[string]int64, error) {
	// big.Int: reward x samples x compute time can pass 2^63.
	contribution := map[string]*big.Int{}
	total := new(big.Int)
	for _, u := range updates {
		if slices.Contains(r.Aggregate.Included, u.Company) {
			// At least the samples count, so an update with zero compute time still earns.
			ci := new(big.Int).Mul(big.NewInt(u.Samples), big.NewInt(max(u.ComputeMillis, 1)))
			contribution[u.Company] = ci
			total.Add(total, ci)
		}
	}
	rewards := map[string]int64{}
	names := make([]string, 0, len(contribution))
	for name := range contribution {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		amount := new(big.Int).Mul(big.NewInt(task.RewardPerRound), contribution[name])
		amount.Quo(amount, total)
		if err := book.reward(name, task, amount.Int64()); err != nil {
			return nil, err
		}
		rewards[name] = amount.Int64()
	}
	return rewards, nil
}

// FailRound ends a round that cannot complete (too few updates, a missing ciphertext, a stalled
// committee, fewer than he.threshold partial decryptions); only the task's publisher may, with a
// reason, in any status but closed or failed. Duties already missed are penalized: the slots of
// ranked members whose window has passed without an aggregate, and, once an aggregate is
// recorded, missing votes and partial decryptions, or, if the committee's votes rejected the
// aggregate, its leader alone. The next round may then open.
func (c *Contract) FailRound(ctx contractapi.TransactionContextInterface, taskID, round, reason string) error {
	n, err := parseRound(round)
	if err != nil {
		return err
	}
	task, err := taskOfPublisher(ctx, taskID, "fail its rounds")
	if err != nil {
		return err
	}
	r, err := loadRound(ctx, taskID, n)
	if err != nil {
		return err
	}
	if err := checkReason("the reason for failing a round", reason); err != nil {
		return err
	}
	now, err := txSeconds(ctx)
	if err != nil {
		return err
	}
	book := newCompanyBook(ctx)
	switch r.Status {
	case RoundOpen, RoundCollecting:
	case RoundCollected:
		// Every ranked member whose whole window has passed let its slot go.
		if err := r.Election.missedSlots(book, task, r.Election.passed(now)); err != nil {
			return err
		}
	case RoundAggregated, RoundVerified:
		votes, err := tally(ctx, task, r)
		if err != nil {
			return err
		}
		// A round whose aggregate its recorded partials already decrypt must be closed, and pay its
		// epsilon: failing it would release the aggregate off the books.
		partials, needed := 0, task.Encryption.Threshold
		for _, v := range votes {
			if v.Valid && v.Counted && v.PartialSHA256 != "" && (task.Encryption.KeyCustody == CustodyThreshold || v.Member == task.Master) {
				partials++
			}
		}
		if task.Encryption.KeyCustody == CustodyEscrow {
			needed = 1 // the master's opening alone decrypts
		}
		if partials >= needed {
			return fmt.Errorf("round %d of task %s can be decrypted: the partial decryptions its aggregate needs are on the ledger; close it (and book its epsilon) rather than fail it",
				n, taskID)
		}
		if r.rejected(task) {
			// The committee found the aggregate wrong: its leader alone answers for the round.
			if err := book.penalize(r.Leader, task, DutyAggregation); err != nil {
				return err
			}
		} else if err := penalizeAbsentees(book, task, votes); err != nil {
			return err
		}
	default:
		return fmt.Errorf("round %d of task %s is %s and cannot be failed", n, taskID, r.Status)
	}
	if err := book.save(); err != nil {
		return err
	}
	r.Standing.merge(book.standing())
	r.Status = RoundFailed
	r.FailureReason = reason
	r.EndedAt = now
	if saved, err := endRound(ctx, task, r); err != nil {
		return err
	} else if !saved && len(book.penalties) > 0 {
		// The penalties came out of the task's stakes.
		if err := saveTask(ctx, task); err != nil {
			return err
		}
	}
	if err := saveRound(ctx, r); err != nil {
		return err
	}
	return emit(ctx, "RoundFailed", r)
}

// GetRound returns a round as JSON.
func (c *Contract) GetRound(ctx contractapi.TransactionContextInterface, taskID, round string) (string, error) {
	n, err := parseRound(round)
	if err != nil {
		return "", err
	}
	task, r, err := taskAndRound(ctx, taskID, n)
	if err != nil {
		return "", err
	}
	// An aggregated round is shown with its votes tallied: verified once a quorum is in.
	if _, err := tally(ctx, task, r); err != nil {
		return "", err
	}
	raw, err := canonical(r)
	return string(raw), err
}

// ListUpdates returns a round's update records (one range query), ordered by company.
func (c *Contract) ListUpdates(ctx contractapi.TransactionContextInterface, taskID, round string) (string, error) {
	return listOfRound[Update](ctx, kindUpdate, taskID, round)
}

// ListVotes returns a round's committee votes, ordered by member.
func (c *Contract) ListVotes(ctx contractapi.TransactionContextInterface, taskID, round string) (string, error) {
	return listOfRound[Vote](ctx, kindVote, taskID, round)
}

func listOfRound[T any](ctx contractapi.TransactionContextInterface, kind, taskID, round string) (string, error) {
	n, err := parseRound(round)
	if err != nil {
		return "", err
	}
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
