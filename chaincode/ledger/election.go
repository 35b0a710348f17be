package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"

	"fedledger/chaincode/sortition"
	"fedledger/chaincode/vrf"
)

// The leader of a round is elected on the ledger (papers 003 step 5, 000, 002):
//
//  1. OpenRound fixes the round's seed, chained from the genesis's seed0:
//     seed_n = SHA-256("fedledger/round-seed/v1" || seed_{n-1} || u64be(n)), seed_0 = seed0.
//     Every committee member's VRF key is fixed before seed0 is (CreateTask requires it, and a
//     key never changes once recorded), so no member can choose a key that ranks it first.
//  2. Each eligible member (on the committee, active, with a VRF key) proves its VRF
//     (ECVRF-EDWARDS25519-SHA512-TAI, RFC 9381) on alpha = sortition.Input(task, n, seed_n)
//     with SubmitElectionProof; the chaincode verifies the proof with the Go verifier before
//     recording it, so a forged proof, or one made on another round's seed, is refused.
//  3. CloseCollection ranks every member that proved by the stake-weighted sortition
//     (sortition.Select: probability proportional to the member's stake in this task, Task.Stakes:
//     initial tokens + verified contribution - penalties, formulas 7 and 11; stake earned in other
//     tasks does not count). The first ranked may record the aggregate
//     at once; the k-th ranked from leader_window_seconds x (k-1) after collection closed, in
//     ledger time (transaction timestamps). A member that records it from rank k > 1 penalizes
//     every member ranked above it for the leader slot it missed, on the ledger.

const roundSeedTag = "fedledger/round-seed/v1"

// Election is a round's ranking of its would-be leaders, and every failover from one to the next.
type Election struct {
	CombinedSeed  string           `json:"combined_seed"`
	Ranking       []string         `json:"ranking"`
	Stakes        map[string]int64 `json:"stakes"`
	WindowSeconds int64            `json:"window_seconds"`
	ClosedAt      int64            `json:"closed_at"`
	Failovers     []LeaderFailover `json:"failovers,omitempty"`
}

// LeaderFailover records that Failed, ranked Rank (1 = first), let its slot pass and Successor
// recorded the aggregate instead, in transaction TxID at At.
type LeaderFailover struct {
	Failed    string `json:"failed"`
	Rank      int    `json:"rank"`
	Successor string `json:"successor"`
	At        int64  `json:"at"`
	TxID      string `json:"tx_id"`
}

// ElectionProof is a committee member's VRF proof for a round and its output beta, both in hex.
type ElectionProof struct {
	TaskID string `json:"task_id"`
	Round  int    `json:"round"`
	Member string `json:"member"`
	Proof  string `json:"proof"`
	Output string `json:"output"`
	TxID   string `json:"tx_id"`
}

// nextSeed chains a round's seed from the previous one.
func nextSeed(previous []byte, n int) []byte {
	h := sha256.New()
	h.Write([]byte(roundSeedTag))
	h.Write(previous)
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(n)))
	return h.Sum(nil)
}

// roundSeed is round n's seed: from seed0 for round 1, else from the previous round's record.
func roundSeed(ctx contractapi.TransactionContextInterface, task *Task, n int) ([]byte, error) {
	if n == 1 {
		seed0, err := hex.DecodeString(task.Seed0)
		if err != nil {
			return nil, fmt.Errorf("the task's seed0 is not hex: %w", err)
		}
		return nextSeed(seed0, 1), nil
	}
	previous, err := loadRound(ctx, task.TaskID, n-1)
	if err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(previous.Seed)
	if err != nil {
		return nil, fmt.Errorf("round %d's seed is not hex: %w", n-1, err)
	}
	return nextSeed(seed, n), nil
}

// electionInput is the VRF input alpha of a round: sortition.Input(task, n, seed_n).
func electionInput(round *Round) ([]byte, error) {
	seed, err := hex.DecodeString(round.Seed)
	if err != nil {
		return nil, fmt.Errorf("round %d's seed is not hex: %w", round.Number, err)
	}
	return sortition.Input(round.TaskID, uint64(round.Number), seed)
}

// SubmitElectionProof records the caller's VRF proof (80 bytes, 160 hex digits) for round n,
// verified on the round's seed against the VRF key the caller recorded. Only an active member of
// the task's committee may, once per round, before collection closes.
func (c *Contract) SubmitElectionProof(ctx contractapi.TransactionContextInterface, taskID, round, proofHex string) error {
	member, task, r, err := actInRound(ctx, RoleCommittee, taskID, round)
	if err != nil {
		return err
	}
	n := r.Number
	if !slices.Contains(task.Committee, member.Name) {
		return fmt.Errorf("company %s is not on the committee of task %s and stands for no election", member.Name, taskID)
	}
	if member.Status != StatusActive {
		return fmt.Errorf("company %s is %s and may not stand for leader", member.Name, member.Status)
	}
	if r.Status != RoundOpen && r.Status != RoundCollecting {
		return fmt.Errorf("round %d of task %s is %s: election proofs are taken only before collection closes", n, taskID, r.Status)
	}
	if len(proofHex) != 2*vrf.ProofSize || !hexPattern.MatchString(proofHex) {
		return fmt.Errorf("the election proof must be %d lower-case hex digits (an ECVRF-EDWARDS25519-SHA512-TAI proof), got %d characters",
			2*vrf.ProofSize, len(proofHex))
	}
	k, err := key(ctx, kindProof, taskID, roundKeyPart(n), member.Name)
	if err != nil {
		return err
	}
	if found, err := exists(ctx, k); err != nil {
		return err
	} else if found {
		return fmt.Errorf("company %s already proved for round %d of task %s", member.Name, n, taskID)
	}
	publicKey, err := hex.DecodeString(member.VrfKey)
	if err != nil || member.VrfKey == "" {
		return fmt.Errorf("company %s has recorded no VRF key (RecordCompanyKeys)", member.Name)
	}
	alpha, err := electionInput(r)
	if err != nil {
		return err
	}
	proof, _ := hex.DecodeString(proofHex)
	beta, err := vrf.Verify(publicKey, alpha, proof)
	if err != nil {
		return fmt.Errorf("the election proof of %s does not verify on the seed of round %d of task %s under its recorded VRF key: %v",
			member.Name, n, taskID, err)
	}
	record := &ElectionProof{TaskID: taskID, Round: n, Member: member.Name, Proof: proofHex,
		Output: hex.EncodeToString(beta), TxID: ctx.GetStub().GetTxID()}
	if err := putJSON(ctx, k, record); err != nil {
		return err
	}
	return emit(ctx, "ElectionProofSubmitted", record)
}

// elect ranks the members that proved for a round by the stake-weighted sortition. Members
// demoted or revoked since they proved, and members without positive stake, are not ranked.
func elect(ctx contractapi.TransactionContextInterface, task *Task, r *Round, now int64) (*Election, error) {
	proofs, err := listByPrefix[ElectionProof](ctx, kindProof, task.TaskID, roundKeyPart(r.Number))
	if err != nil {
		return nil, err
	}
	candidates := []sortition.Candidate{}
	stakes := map[string]int64{}
	for _, p := range proofs {
		member, err := loadCompany(ctx, p.Member)
		if err != nil {
			return nil, err
		}
		stake := task.Stakes[member.Name]
		if member.Status != StatusActive || stake <= 0 {
			continue
		}
		publicKey, _ := hex.DecodeString(member.VrfKey)
		proof, _ := hex.DecodeString(p.Proof)
		candidates = append(candidates, sortition.Candidate{Company: member.Name, PublicKey: publicKey, Proof: proof, Stake: stake})
		stakes[member.Name] = stake
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("no active committee member with stake has proved for round %d of task %s: none can lead it; fail the round",
			r.Number, task.TaskID)
	}
	alpha, err := electionInput(r)
	if err != nil {
		return nil, err
	}
	selection, err := sortition.Select(candidates, alpha, len(candidates)-1)
	if err != nil {
		var refused *sortition.Error
		if errors.As(err, &refused) {
			return nil, fmt.Errorf("the election of round %d cannot be drawn: %v", r.Number, err)
		}
		return nil, err
	}
	return &Election{
		CombinedSeed: hex.EncodeToString(selection.Seed), Ranking: append([]string{selection.Leader}, selection.Committee...),
		Stakes: stakes, WindowSeconds: task.LeaderWindowSeconds, ClosedAt: now,
	}, nil
}

// passed is how many ranked members' whole windows have passed at ledger time now.
func (e *Election) passed(now int64) int {
	elapsed := max(now-e.ClosedAt, 0)
	return int(min(elapsed/e.WindowSeconds, int64(len(e.Ranking))))
}

// slot is the lowest rank (0 = first) that may record the aggregate at ledger time now: the
// first from the close of collection, one more each window after.
func (e *Election) slot(now int64) int {
	return min(e.passed(now), len(e.Ranking)-1)
}

// missedSlots penalizes every member ranked above rank whose whole window has passed.
func (e *Election) missedSlots(book *companyBook, task *Task, upTo int) error {
	for _, name := range e.Ranking[:upTo] {
		if err := book.penalize(name, task, DutyLeaderSlot); err != nil {
			return err
		}
	}
	return nil
}

// GetElectionProofs returns a round's election proofs, ordered by member.
func (c *Contract) GetElectionProofs(ctx contractapi.TransactionContextInterface, taskID, round string) (string, error) {
	return listOfRound[ElectionProof](ctx, kindProof, taskID, round)
}
