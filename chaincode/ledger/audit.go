package ledger

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// Change is one committed write to a key, as the ledger's history holds it.
type Change struct {
	TxID      string          `json:"tx_id"`
	Timestamp int64           `json:"timestamp"`
	IsDelete  bool            `json:"is_delete"`
	Value     json.RawMessage `json:"value,omitempty"`
}

func history(ctx contractapi.TransactionContextInterface, k string) (string, error) {
	iter, err := ctx.GetStub().GetHistoryForKey(k)
	if err != nil {
		return "", fmt.Errorf("reading the key's history failed: %w", err)
	}
	defer iter.Close()
	changes := []Change{}
	for iter.HasNext() {
		m, err := iter.Next()
		if err != nil {
			return "", fmt.Errorf("reading the key's history failed: %w", err)
		}
		change := Change{TxID: m.GetTxId(), Timestamp: m.GetTimestamp().GetSeconds(), IsDelete: m.GetIsDelete()}
		if !m.GetIsDelete() {
			change.Value = m.GetValue()
		}
		changes = append(changes, change)
	}
	// Fabric (since v2.0) returns history newest first; an audit trail reads oldest first.
	slices.Reverse(changes)
	raw, err := canonical(changes)
	return string(raw), err
}

// GetTaskHistory returns every committed change to a task's record, oldest first.
func (c *Contract) GetTaskHistory(ctx contractapi.TransactionContextInterface, taskID string) (string, error) {
	k, err := key(ctx, kindTask, taskID)
	if err != nil {
		return "", err
	}
	return history(ctx, k)
}

// GetRoundHistory returns every committed change to a round's record.
func (c *Contract) GetRoundHistory(ctx contractapi.TransactionContextInterface, taskID, round string) (string, error) {
	n, err := parseRound(round)
	if err != nil {
		return "", err
	}
	k, err := roundKey(ctx, taskID, n)
	if err != nil {
		return "", err
	}
	return history(ctx, k)
}

// GetUpdateHistory returns every committed change to a company's update record of a round.
func (c *Contract) GetUpdateHistory(ctx contractapi.TransactionContextInterface, taskID, round, company string) (string, error) {
	n, err := parseRound(round)
	if err != nil {
		return "", err
	}
	k, err := key(ctx, kindUpdate, taskID, roundKeyPart(n), company)
	if err != nil {
		return "", err
	}
	return history(ctx, k)
}

// GetCompanyHistory returns every committed change to a company's record.
func (c *Contract) GetCompanyHistory(ctx contractapi.TransactionContextInterface, name string) (string, error) {
	k, err := key(ctx, kindCompany, name)
	if err != nil {
		return "", err
	}
	return history(ctx, k)
}
