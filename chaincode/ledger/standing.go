package ledger

import (
	"sort"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// Why a company is demoted (Company.Demotion): its reputation fell below a task's threshold
// (it recovers by itself), or an admin of its org demoted it (only an admin reinstates it).
const (
	DemotedByReputation = "reputation"
	DemotedByAdmin      = "admin"
)

// Standing changes a round makes, in the words of the paper 000 health check and the formulas of
// 002_d2037c4d31fbcea0.txt: Stake(t+1) = Stake(t) + Reward - Penalty (f.7).
//
// A company loses Penalty of stake and reputation for each duty it missed (a leader slot, a
// vote, a partial decryption) or failed (an aggregate its committee rejected); below the task's
// reputation threshold it is demoted: it may still train, but may not lead, and its votes are
// recorded without counting. Each duty done in a closed round (an included update, a counted
// vote with the outcome, the aggregate) earns ReputationGain, up to InitialReputation; a company
// demoted by reputation whose reputation is back at the threshold is reinstated.

// companyBook collects the changes one transaction makes to companies. Fabric reads never see
// the transaction's own writes, so a company touched twice must be changed in memory and
// written once.
type companyBook struct {
	ctx        contractapi.TransactionContextInterface
	companies  map[string]*Company
	penalties  []Penalty
	reinstated []string
	demoted    []string
}

// Penalty is one penalty a transaction applied, for its event and the round's record.
type Penalty struct {
	Company string `json:"company"`
	Duty    string `json:"duty"`
	Amount  int64  `json:"amount"`
}

// Duties a company can miss or fail.
const (
	DutyLeaderSlot  = "leader slot"
	DutyVote        = "vote"
	DutyPartial     = "partial decryption"
	DutyAggregation = "aggregate rejected by the committee"
)

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

// penalize applies Stake(t+1) = Stake(t) - Penalty (formula 7), in the task and in the company's
// total, and lowers reputation by the same amount for a missed or failed duty; a company that
// falls below the task's threshold is demoted. The caller saves the task.
func (b *companyBook) penalize(name string, task *Task, duty string) error {
	c, err := b.get(name)
	if err != nil {
		return err
	}
	task.Stakes[name] -= task.Penalty
	c.Stake -= task.Penalty
	c.Reputation -= task.Penalty
	b.penalties = append(b.penalties, Penalty{Company: name, Duty: duty, Amount: task.Penalty})
	if c.Status == StatusActive && c.Reputation < task.ReputationThreshold {
		c.Status = StatusDemoted
		c.Demotion = DemotedByReputation
		b.demoted = append(b.demoted, name)
	}
	return nil
}

// credit raises a company's reputation by the task's gain for a duty done (at most to
// InitialReputation) and reinstates it if reputation alone had demoted it and it is back at the
// threshold.
func (b *companyBook) credit(name string, task *Task) error {
	c, err := b.get(name)
	if err != nil {
		return err
	}
	c.Reputation = min(c.Reputation+task.ReputationGain, max(c.Reputation, InitialReputation))
	if c.Status == StatusDemoted && c.Demotion == DemotedByReputation && c.Reputation >= task.ReputationThreshold {
		c.Status = StatusActive
		c.Demotion = ""
		b.reinstated = append(b.reinstated, name)
	}
	return nil
}

// reward pays a company tokens that also count as its stake in the task (formula 7's Reward) and
// in its total. The caller saves the task.
func (b *companyBook) reward(name string, task *Task, amount int64) error {
	c, err := b.get(name)
	if err != nil {
		return err
	}
	if task.Stakes == nil {
		task.Stakes = map[string]int64{}
	}
	task.Stakes[name] += amount
	c.Stake += amount
	c.Tokens += amount
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

// Standing is what a transaction did to companies' standing, for its event and the round.
type Standing struct {
	Penalties  []Penalty `json:"penalties,omitempty"`
	Demoted    []string  `json:"demoted,omitempty"`
	Reinstated []string  `json:"reinstated,omitempty"`
}

func (b *companyBook) standing() Standing {
	return Standing{Penalties: b.penalties, Demoted: b.demoted, Reinstated: b.reinstated}
}

// merge appends another transaction's standing changes (a round keeps all of its own).
func (s *Standing) merge(o Standing) {
	s.Penalties = append(s.Penalties, o.Penalties...)
	s.Demoted = append(s.Demoted, o.Demoted...)
	s.Reinstated = append(s.Reinstated, o.Reinstated...)
}
