package ledger

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// Size bounds of a dealt key: every peer stores all of it, so every part has a ceiling.
const (
	// MaxThresholdKeyBytes bounds the threshold public key (decoded).
	MaxThresholdKeyBytes = 64 << 10
	// MaxSealedShareBytes bounds one sealed key share or escrow share (decoded).
	MaxSealedShareBytes = 16 << 10
	// MaxSealedKeyBytes bounds an escrow task's sealed master key (decoded).
	MaxSealedKeyBytes = 16 << 10
	// MaxReasonLength bounds the reason given for a failover.
	MaxReasonLength = 512
	// sealedBoxOverhead is what a libsodium sealed box adds to its plaintext: the ephemeral
	// X25519 public key (32 bytes) and the Poly1305 tag (16 bytes).
	sealedBoxOverhead = 48
	// Hex digits of a Paillier modulus of 1024 to 4096 bits.
	minModulusHex, maxModulusHex = 256, 1024
)

// Key kinds of escrow custody: a task's sealed master key, and the escrow shares its members
// release to a master that took over (task, master, member).
const (
	kindMasterKey     = "masterkey"
	kindEscrowRelease = "escrowrelease"
)

// base64Text is standard base64 with padding and nothing else: Go's decoder skips line breaks,
// which would let two texts of the same bytes onto the ledger.
var base64Text = regexp.MustCompile(`^[A-Za-z0-9+/]*={0,2}$`)

// Deal is the dealer's DealKey document: the task's Paillier modulus, its public key (base64,
// with its SHA-256: the threshold public key, or under escrow custody the Paillier public key),
// and each committee member's share sealed to that member's recorded encryption key: a threshold
// key share, or under escrow custody the member's Shamir share of the master key's factor. An
// escrow deal also carries the master's whole private key, sealed to the master.
type Deal struct {
	PaillierN       string           `json:"paillier_n"`
	PublicKey       string           `json:"public_key"`
	PublicKeySHA256 string           `json:"public_key_sha256"`
	Shares          []SealedShare    `json:"shares"`
	MasterKey       *SealedMasterKey `json:"master_key,omitempty"`
}

// SealedMasterKey is an escrow task's private key sealed to its master's encryption key;
// KeySHA256 is the hash of the key before sealing, which the master checks once it opens it.
type SealedMasterKey struct {
	SealedKey string `json:"sealed_key"`
	KeySHA256 string `json:"key_sha256"`
}

// SealedShare is one member's key share, sealed (a libsodium sealed box) to its encryption key;
// ShareSHA256 is the hash of the share before sealing, which the member checks once it opens it.
type SealedShare struct {
	Member      string `json:"member"`
	SealedShare string `json:"sealed_share"`
	ShareSHA256 string `json:"share_sha256"`
}

// ThresholdKey is a task's threshold public key as its dealer dealt it.
type ThresholdKey struct {
	TaskID          string `json:"task_id"`
	Dealer          string `json:"dealer"`
	PublicKey       string `json:"public_key"`
	PublicKeySHA256 string `json:"public_key_sha256"`
}

// KeyShareRecord is a committee member's key share, sealed to the encryption key named here: a
// sealed box opens only with that key's private half, which only the member holds, so the
// public ledger may keep it.
type KeyShareRecord struct {
	TaskID        string `json:"task_id"`
	Member        string `json:"member"`
	MSPID         string `json:"msp_id"`
	EncryptionKey string `json:"encryption_key"`
	SealedShare   string `json:"sealed_share"`
	ShareSHA256   string `json:"share_sha256"`
	Dealer        string `json:"dealer"`
}

// MasterKeyRecord is an escrow task's private key as its dealer dealt it, sealed to the encryption
// key named here: the one the original master (he.master) had recorded at deal time.
type MasterKeyRecord struct {
	TaskID        string `json:"task_id"`
	Master        string `json:"master"`
	MSPID         string `json:"msp_id"`
	EncryptionKey string `json:"encryption_key"`
	SealedKey     string `json:"sealed_key"`
	KeySHA256     string `json:"key_sha256"`
	Dealer        string `json:"dealer"`
}

// Release is a committee member's ReleaseEscrowShare document: its escrow share sealed to the
// current master's encryption key, and the share's hash, which must be the commitment the dealer
// recorded for it.
type Release struct {
	Master      string `json:"master"`
	SealedShare string `json:"sealed_share"`
	ShareSHA256 string `json:"share_sha256"`
}

// EscrowRelease is a committee member's escrow share released to a master that took over,
// sealed to the encryption key named here (the master's when the member released it).
type EscrowRelease struct {
	TaskID        string `json:"task_id"`
	Master        string `json:"master"`
	Member        string `json:"member"`
	EncryptionKey string `json:"encryption_key"`
	SealedShare   string `json:"sealed_share"`
	ShareSHA256   string `json:"share_sha256"`
	TxID          string `json:"tx_id"`
}

// decodeBase64 decodes standard base64 text of 1 to limit bytes.
func decodeBase64(what, text string, limit int) ([]byte, error) {
	if len(text) > base64.StdEncoding.EncodedLen(limit) {
		return nil, fmt.Errorf("%s is %d base64 characters; at most %d bytes (%d characters) are accepted",
			what, len(text), limit, base64.StdEncoding.EncodedLen(limit))
	}
	if !base64Text.MatchString(text) {
		return nil, fmt.Errorf("%s must be standard base64 (A-Z a-z 0-9 + / with = padding), without line breaks", what)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("%s is not valid base64: %v", what, err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("%s is empty", what)
	}
	if len(raw) > limit {
		return nil, fmt.Errorf("%s is %d bytes; at most %d are accepted", what, len(raw), limit)
	}
	return raw, nil
}

// maxDealLength bounds a deal document for a committee of n before it is parsed: the largest
// key and shares in base64 (and an escrow task's master key), with room for names, hashes and
// JSON around them.
func maxDealLength(n int, escrow bool) int {
	limit := 4096 + maxModulusHex + base64.StdEncoding.EncodedLen(MaxThresholdKeyBytes) +
		n*(512+base64.StdEncoding.EncodedLen(MaxSealedShareBytes))
	if escrow {
		limit += 512 + base64.StdEncoding.EncodedLen(MaxSealedKeyBytes)
	}
	return limit
}

// maxReleaseLength bounds a release document before it is parsed.
var maxReleaseLength = 1024 + base64.StdEncoding.EncodedLen(MaxSealedShareBytes)

// checkSealed decodes a sealed box (of content) in base64 of at most limit bytes, which must be
// longer than the box's overhead.
func checkSealed(what, content, text string, limit int) error {
	sealed, err := decodeBase64(what, text, limit)
	if err != nil {
		return err
	}
	if len(sealed) <= sealedBoxOverhead {
		return fmt.Errorf("%s is %d bytes: a sealed box is its %s plus %d bytes", what, len(sealed), content, sealedBoxOverhead)
	}
	return nil
}

func checkModulus(n string) error {
	if len(n) < minModulusHex || len(n) > maxModulusHex || !hexPattern.MatchString(n) || n[0] == '0' {
		return fmt.Errorf("paillier_n must be the Paillier modulus in lower-case hex without leading zeros, %d to %d digits (1024 to 4096 bits); got %d characters",
			minModulusHex, maxModulusHex, len(n))
	}
	// The product of two odd primes is odd.
	if strings.IndexByte("0123456789abcdef", n[len(n)-1])%2 == 0 {
		return fmt.Errorf("paillier_n is even, so it is no Paillier modulus (a product of two odd primes)")
	}
	return nil
}

// DealKey records a task's key; only the task's dealer (he.dealer, holding the dealer role,
// active) may, once, while the task awaits its key. dealJSON is a Deal: the Paillier modulus,
// the public key with its SHA-256 (checked here), and one sealed share for each committee
// member, sealed to the encryption key the member recorded with RecordCompanyKeys. An escrow
// task's deal also carries master_key, its private key sealed to the master's encryption key
// (GetMasterKeyRecord); a threshold task's may not. The task then becomes active, and an escrow
// task's current master is he.master.
func (c *Contract) DealKey(ctx contractapi.TransactionContextInterface, taskID, dealJSON string) error {
	task, err := loadTask(ctx, taskID)
	if err != nil {
		return err
	}
	dealer, err := actingCompany(ctx, RoleDealer)
	if err != nil {
		return err
	}
	if dealer.Name != task.Encryption.Dealer {
		return fmt.Errorf("only the task's dealer %s may deal the key of task %s", task.Encryption.Dealer, taskID)
	}
	if dealer.Status != StatusActive {
		return fmt.Errorf("company %s is %s and may not deal keys", dealer.Name, dealer.Status)
	}
	if task.Status != TaskAwaitingKey {
		return fmt.Errorf("the key of task %s has already been dealt (public key %s); a key is dealt once",
			taskID, task.Encryption.PublicKeySHA256)
	}
	escrow := task.Encryption.KeyCustody == CustodyEscrow
	if limit := maxDealLength(len(task.Committee), escrow); len(dealJSON) > limit {
		return fmt.Errorf("the deal is %d bytes; for a committee of %d it may be at most %d", len(dealJSON), len(task.Committee), limit)
	}
	var deal Deal
	if err := decodeStrict(dealJSON, &deal, "the deal"); err != nil {
		return err
	}
	if err := checkModulus(deal.PaillierN); err != nil {
		return err
	}
	publicKey, err := decodeBase64("public_key", deal.PublicKey, MaxThresholdKeyBytes)
	if err != nil {
		return err
	}
	if err := checkSHA256("public_key_sha256", deal.PublicKeySHA256); err != nil {
		return err
	}
	if sum := sha256.Sum256(publicKey); hex.EncodeToString(sum[:]) != deal.PublicKeySHA256 {
		return fmt.Errorf("public_key_sha256 %s is not the SHA-256 of public_key (%s)", deal.PublicKeySHA256, hex.EncodeToString(sum[:]))
	}
	shares := map[string]SealedShare{}
	for _, s := range deal.Shares {
		if !slices.Contains(task.Committee, s.Member) {
			return fmt.Errorf("the deal has a share for %q, which is not on the committee of task %s", s.Member, taskID)
		}
		if _, twice := shares[s.Member]; twice {
			return fmt.Errorf("the deal has two shares for committee member %s", s.Member)
		}
		if err := checkSealed("the sealed share of "+s.Member, "share", s.SealedShare, MaxSealedShareBytes); err != nil {
			return err
		}
		if err := checkSHA256("share_sha256 of "+s.Member, s.ShareSHA256); err != nil {
			return err
		}
		shares[s.Member] = s
	}
	switch {
	case escrow && deal.MasterKey == nil:
		return fmt.Errorf("the deal of escrow task %s needs master_key: the task's private key sealed to its master %s",
			taskID, task.Encryption.Master)
	case !escrow && deal.MasterKey != nil:
		return fmt.Errorf("the deal of task %s carries a master_key, but the task keeps its key by threshold custody: no one may hold the whole key",
			taskID)
	case escrow:
		if err := checkSealed("the sealed master key", "key", deal.MasterKey.SealedKey, MaxSealedKeyBytes); err != nil {
			return err
		}
		if err := checkSHA256("key_sha256", deal.MasterKey.KeySHA256); err != nil {
			return err
		}
	}
	var masterKey *MasterKeyRecord
	records := make([]*KeyShareRecord, 0, len(task.Committee))
	for _, name := range task.Committee {
		s, ok := shares[name]
		if !ok {
			return fmt.Errorf("the deal has no share for committee member %s", name)
		}
		member, err := loadCompany(ctx, name)
		if err != nil {
			return err
		}
		if member.EncryptionKey == "" {
			return fmt.Errorf("committee member %s has recorded no encryption key; it must run RecordCompanyKeys first", name)
		}
		records = append(records, &KeyShareRecord{
			TaskID: taskID, Member: name, MSPID: member.MSPID, EncryptionKey: member.EncryptionKey,
			SealedShare: s.SealedShare, ShareSHA256: s.ShareSHA256, Dealer: dealer.Name,
		})
		if escrow && name == task.Encryption.Master {
			masterKey = &MasterKeyRecord{
				TaskID: taskID, Master: name, MSPID: member.MSPID, EncryptionKey: member.EncryptionKey,
				SealedKey: deal.MasterKey.SealedKey, KeySHA256: deal.MasterKey.KeySHA256, Dealer: dealer.Name,
			}
		}
	}
	for _, record := range records {
		if err := store(ctx, record, kindKeyShare, taskID, record.Member); err != nil {
			return err
		}
	}
	event := map[string]any{
		"task_id": taskID, "dealer": dealer.Name, "public_key_sha256": deal.PublicKeySHA256, "members": task.Committee,
	}
	if masterKey != nil {
		if err := store(ctx, masterKey, kindMasterKey, taskID); err != nil {
			return err
		}
		task.Master = masterKey.Master
		event["master"] = masterKey.Master
	}
	key := &ThresholdKey{TaskID: taskID, Dealer: dealer.Name, PublicKey: deal.PublicKey, PublicKeySHA256: deal.PublicKeySHA256}
	if err := store(ctx, key, kindTaskKey, taskID); err != nil {
		return err
	}
	task.Encryption.PaillierN = deal.PaillierN
	task.Encryption.PublicKeySHA256 = deal.PublicKeySHA256
	task.Status = TaskActive
	if err := saveTask(ctx, task); err != nil {
		return err
	}
	return emit(ctx, "KeyDealt", event)
}

// GetThresholdKey returns a task's public key (base64) with its dealer and SHA-256: the threshold
// public key, or an escrow task's Paillier public key.
func (c *Contract) GetThresholdKey(ctx contractapi.TransactionContextInterface, taskID string) (string, error) {
	task, err := loadTask(ctx, taskID)
	if err != nil {
		return "", err
	}
	key, err := load[ThresholdKey](ctx, awaitingKey(task), kindTaskKey, taskID)
	if err != nil {
		return "", err
	}
	raw, err := canonical(key)
	return string(raw), err
}

// GetKeyShareRecord returns a committee member's sealed key share of a task and what it is
// sealed to.
func (c *Contract) GetKeyShareRecord(ctx contractapi.TransactionContextInterface, taskID, member string) (string, error) {
	task, err := loadTask(ctx, taskID)
	if err != nil {
		return "", err
	}
	missing := fmt.Sprintf("company %s is not on the committee of task %s and holds no key share of it", member, taskID)
	if task.Status == TaskAwaitingKey {
		missing = awaitingKey(task)
	}
	record, err := load[KeyShareRecord](ctx, missing, kindKeyShare, taskID, member)
	if err != nil {
		return "", err
	}
	raw, err := canonical(record)
	return string(raw), err
}

func awaitingKey(task *Task) string {
	return fmt.Sprintf("task %s awaits its key from dealer %s", task.TaskID, task.Encryption.Dealer)
}

// GetMasterKeyRecord returns an escrow task's private key as its dealer dealt it: sealed to the
// original master's encryption key, which the record names.
func (c *Contract) GetMasterKeyRecord(ctx contractapi.TransactionContextInterface, taskID string) (string, error) {
	task, err := loadTask(ctx, taskID)
	if err != nil {
		return "", err
	}
	if err := requireEscrow(task, "no master key"); err != nil {
		return "", err
	}
	record, err := load[MasterKeyRecord](ctx, awaitingKey(task), kindMasterKey, taskID)
	if err != nil {
		return "", err
	}
	raw, err := canonical(record)
	return string(raw), err
}

// requireEscrow refuses a task that keeps its key by threshold custody: it has lacking.
func requireEscrow(task *Task, lacking string) error {
	if task.Encryption.KeyCustody != CustodyEscrow {
		return fmt.Errorf("task %s keeps its key by threshold custody and has %s: only an escrow task has a master", task.TaskID, lacking)
	}
	return nil
}

// FailoverMaster hands an escrow task's key to a new master when the current one has failed;
// only the task's publisher may, while the task is active, with a reason of 1-512 characters.
// The new master is the next committee member after the current one, in the genesis's order and
// wrapping round, that has never been master, is active, and has recorded an encryption key; if
// there is none the failover is refused. The members then release their escrow shares to it
// (ReleaseEscrowShare) so that it can rebuild the key.
func (c *Contract) FailoverMaster(ctx contractapi.TransactionContextInterface, taskID, reason string) error {
	task, err := taskOfPublisher(ctx, taskID, "fail over the master of task "+taskID)
	if err != nil {
		return err
	}
	if err := requireEscrow(task, "no master to fail over"); err != nil {
		return err
	}
	if task.Status == TaskAwaitingKey {
		return errors.New(awaitingKey(task))
	}
	if task.Status != TaskActive {
		return fmt.Errorf("task %s is %s: a master is failed over only while its task is active", taskID, task.Status)
	}
	if reason == "" || len(reason) > MaxReasonLength {
		return fmt.Errorf("failing over a master needs a reason of 1-%d characters, got %d", MaxReasonLength, len(reason))
	}
	next, err := nextMaster(ctx, task)
	if err != nil {
		return err
	}
	at, err := txSeconds(ctx)
	if err != nil {
		return err
	}
	change := MasterChange{Master: next, Failed: task.Master, Reason: reason, TxID: ctx.GetStub().GetTxID(), At: at}
	task.Master = next
	task.MasterHistory = append(task.MasterHistory, change)
	if err := saveTask(ctx, task); err != nil {
		return err
	}
	return emit(ctx, "MasterFailedOver", map[string]any{
		"task_id": taskID, "master": change.Master, "failed": change.Failed, "reason": reason,
		"tx_id": change.TxID, "at": change.At,
	})
}

// nextMaster is the committee member that takes over from task's current master, or an error
// saying why each other member cannot.
func nextMaster(ctx contractapi.TransactionContextInterface, task *Task) (string, error) {
	been := map[string]bool{task.Encryption.Master: true, task.Master: true}
	for _, change := range task.MasterHistory {
		been[change.Master] = true
	}
	start := slices.Index(task.Committee, task.Master)
	n := len(task.Committee)
	var passed []string
	for i := 1; i < n; i++ {
		name := task.Committee[(start+i)%n]
		if been[name] {
			passed = append(passed, name+" has been master")
			continue
		}
		member, err := loadCompany(ctx, name)
		if err != nil {
			return "", err
		}
		switch {
		case member.Status != StatusActive:
			passed = append(passed, fmt.Sprintf("%s is %s", name, member.Status))
		case member.EncryptionKey == "":
			passed = append(passed, name+" has recorded no encryption key")
		default:
			return name, nil
		}
	}
	return "", fmt.Errorf("no committee member of task %s can take over from master %s: %s",
		task.TaskID, task.Master, strings.Join(passed, "; "))
}

// ReleaseEscrowShare releases the caller's escrow share of an escrow task to the master that took
// over after a failover. The caller is its own company (active or demoted, not revoked), on the
// task's committee, and not the current master (which opens its own share from its key share
// record). releaseJSON is a Release: it names the current master, carries the share sealed to
// that master's encryption key (recorded here), and the share's SHA-256, which must be the
// commitment the dealer recorded for the caller's share. A member releases once to each master;
// it may release after the task has finished too, since what was encrypted under the key stays
// decryptable only with it.
func (c *Contract) ReleaseEscrowShare(ctx contractapi.TransactionContextInterface, taskID, releaseJSON string) error {
	task, err := loadTask(ctx, taskID)
	if err != nil {
		return err
	}
	member, err := actingCompany(ctx, RoleCommittee)
	if err != nil {
		return err
	}
	if !slices.Contains(task.Committee, member.Name) {
		return fmt.Errorf("company %s is not on the committee of task %s and holds no escrow share of it", member.Name, taskID)
	}
	if err := requireEscrow(task, "no escrow shares to release"); err != nil {
		return err
	}
	if task.Status == TaskAwaitingKey {
		return errors.New(awaitingKey(task))
	}
	if len(task.MasterHistory) == 0 {
		return fmt.Errorf("the master of task %s has not been failed over: escrow shares are released only to a master that took over, and %s still holds the key",
			taskID, task.Master)
	}
	if member.Name == task.Master {
		return fmt.Errorf("company %s is the current master of task %s: it opens its own escrow share from its key share record and releases none to itself",
			member.Name, taskID)
	}
	if len(releaseJSON) > maxReleaseLength {
		return fmt.Errorf("the release is %d bytes; it may be at most %d", len(releaseJSON), maxReleaseLength)
	}
	var release Release
	if err := decodeStrict(releaseJSON, &release, "the release"); err != nil {
		return err
	}
	if release.Master != task.Master {
		return fmt.Errorf("the release is addressed to master %q, but the current master of task %s is %s: seal the share to %s's encryption key and name it",
			release.Master, taskID, task.Master, task.Master)
	}
	if err := checkSealed("the sealed escrow share", "share", release.SealedShare, MaxSealedShareBytes); err != nil {
		return err
	}
	if err := checkSHA256("share_sha256", release.ShareSHA256); err != nil {
		return err
	}
	dealt, err := load[KeyShareRecord](ctx, fmt.Sprintf("company %s was dealt no escrow share of task %s", member.Name, taskID),
		kindKeyShare, taskID, member.Name)
	if err != nil {
		return err
	}
	if release.ShareSHA256 != dealt.ShareSHA256 {
		return fmt.Errorf("share_sha256 %s is not the commitment %s the dealer recorded for the escrow share of %s in task %s",
			release.ShareSHA256, dealt.ShareSHA256, member.Name, taskID)
	}
	k, err := key(ctx, kindEscrowRelease, taskID, task.Master, member.Name)
	if err != nil {
		return err
	}
	var earlier EscrowRelease
	if found, err := getJSON(ctx, k, &earlier); err != nil {
		return err
	} else if found {
		return fmt.Errorf("company %s already released its escrow share of task %s to master %s (tx %s)",
			member.Name, taskID, task.Master, earlier.TxID)
	}
	master, err := loadCompany(ctx, task.Master)
	if err != nil {
		return err
	}
	if master.EncryptionKey == "" {
		return fmt.Errorf("master %s of task %s has recorded no encryption key to seal a share to", master.Name, taskID)
	}
	record := &EscrowRelease{
		TaskID: taskID, Master: master.Name, Member: member.Name, EncryptionKey: master.EncryptionKey,
		SealedShare: release.SealedShare, ShareSHA256: release.ShareSHA256, TxID: ctx.GetStub().GetTxID(),
	}
	if err := putJSON(ctx, k, record); err != nil {
		return err
	}
	// The event names the release, never the sealed share: the state holds it once.
	return emit(ctx, "EscrowShareReleased", map[string]any{
		"task_id": taskID, "master": record.Master, "member": record.Member,
		"encryption_key": record.EncryptionKey, "share_sha256": record.ShareSHA256, "tx_id": record.TxID,
	})
}

// ListEscrowReleases returns the escrow shares released to an escrow task's current master, as
// a JSON array ordered by member (empty until members release theirs).
func (c *Contract) ListEscrowReleases(ctx contractapi.TransactionContextInterface, taskID string) (string, error) {
	task, err := loadTask(ctx, taskID)
	if err != nil {
		return "", err
	}
	if err := requireEscrow(task, "no escrow releases"); err != nil {
		return "", err
	}
	if task.Status == TaskAwaitingKey {
		return "", errors.New(awaitingKey(task))
	}
	releases, err := listByPrefix[EscrowRelease](ctx, kindEscrowRelease, taskID, task.Master)
	if err != nil {
		return "", err
	}
	raw, err := canonical(releases)
	return string(raw), err
}
