package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// TransientKeyShare is the transient-map key under which a committee member sends its key share:
// transient data reaches the endorsing peer but is never written to a block.
const TransientKeyShare = "key_share"

// KeyShareRecord is the public trace of a committee member's key share: its hash, never the share.
type KeyShareRecord struct {
	TaskID string `json:"task_id"`
	Member string `json:"member"`
	MSPID  string `json:"msp_id"`
	SHA256 string `json:"sha256"`
}

// implicitCollection is the private data collection every org has without configuration; only
// that org's peers store its contents.
func implicitCollection(mspID string) string { return "_implicit_org_" + mspID }

func custodyMember(ctx contractapi.TransactionContextInterface, taskID string) (*Company, string, error) {
	member, err := actingCompany(ctx, RoleCommittee)
	if err != nil {
		return nil, "", err
	}
	task, err := loadTask(ctx, taskID)
	if err != nil {
		return nil, "", err
	}
	if !slices.Contains(task.Committee, member.Name) {
		return nil, "", fmt.Errorf("company %s is not on the committee of task %s", member.Name, taskID)
	}
	k, err := key(ctx, kindKeyShare, taskID, member.Name)
	return member, k, err
}

// StoreKeyShare stores the caller's key share for a task (sent in the transient map under
// "key_share") in its own org's implicit private data collection, and records the share's
// SHA-256 on the public ledger. Once per member and task.
//
// Every endorsing peer sees the share in memory, and the Fabric Gateway will not pick endorsers
// for transient data bound for a collection that other orgs' peers do not keep: the client names
// the endorsing orgs, its own among them (only its own org's peers keep the share, and they get
// it only by endorsing), plus enough trusted orgs to satisfy the endorsement policy.
func (c *Contract) StoreKeyShare(ctx contractapi.TransactionContextInterface, taskID string) error {
	member, k, err := custodyMember(ctx, taskID)
	if err != nil {
		return err
	}
	if found, err := exists(ctx, k); err != nil {
		return err
	} else if found {
		return fmt.Errorf("committee member %s already stored its key share for task %s", member.Name, taskID)
	}
	transient, err := ctx.GetStub().GetTransient()
	if err != nil {
		return fmt.Errorf("reading the transient data failed: %w", err)
	}
	share := transient[TransientKeyShare]
	if len(share) == 0 {
		return fmt.Errorf("send the key share in the transient map under %q, not as an argument", TransientKeyShare)
	}
	sum := sha256.Sum256(share)
	record := &KeyShareRecord{TaskID: taskID, Member: member.Name, MSPID: member.MSPID, SHA256: hex.EncodeToString(sum[:])}
	if err := ctx.GetStub().PutPrivateData(implicitCollection(member.MSPID), k, share); err != nil {
		return fmt.Errorf("storing the key share in %s failed: %w", implicitCollection(member.MSPID), err)
	}
	if err := putJSON(ctx, k, record); err != nil {
		return err
	}
	return emit(ctx, "KeyShareStored", record)
}

// ReadKeyShare returns the caller's own key share for a task (base64, in JSON), after checking
// it against the hash on the public ledger. Only the member that stored it can read it back.
func (c *Contract) ReadKeyShare(ctx contractapi.TransactionContextInterface, taskID string) (string, error) {
	member, k, err := custodyMember(ctx, taskID)
	if err != nil {
		return "", err
	}
	record, err := loadKeyShareRecord(ctx, taskID, member.Name)
	if err != nil {
		return "", err
	}
	share, err := ctx.GetStub().GetPrivateData(implicitCollection(member.MSPID), k)
	if err != nil || share == nil {
		// A peer outside the member's org keeps only the share's hash. A real peer then fails the
		// read ("private data matching public hash version is not available") instead of
		// returning nothing, so both cases get the same answer: ask a peer that keeps the share.
		return "", fmt.Errorf("the peer that ran this query keeps no copy of the key share of %s for task %s: only peers of %s do; send the query to one of them",
			member.Name, taskID, member.MSPID)
	}
	sum := sha256.Sum256(share)
	if !bytes.Equal([]byte(hex.EncodeToString(sum[:])), []byte(record.SHA256)) {
		return "", fmt.Errorf("the key share held by this peer does not match its hash on the ledger")
	}
	raw, err := canonical(map[string]string{"key_share": base64.StdEncoding.EncodeToString(share), "sha256": record.SHA256})
	return string(raw), err
}

// GetKeyShareRecord returns the public record (hash) of a member's key share.
func (c *Contract) GetKeyShareRecord(ctx contractapi.TransactionContextInterface, taskID, member string) (string, error) {
	record, err := loadKeyShareRecord(ctx, taskID, member)
	if err != nil {
		return "", err
	}
	raw, err := canonical(record)
	return string(raw), err
}

func loadKeyShareRecord(ctx contractapi.TransactionContextInterface, taskID, member string) (*KeyShareRecord, error) {
	missing := fmt.Sprintf("committee member %s has stored no key share for task %s", member, taskID)
	return load[KeyShareRecord](ctx, missing, kindKeyShare, taskID, member)
}
