package ledger

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"

	"fedledger/chaincode/vrf"
)

// Company statuses. A demoted company may still train but may not lead or sit on a committee; a
// revoked one may do nothing.
const (
	StatusActive  = "active"
	StatusDemoted = "demoted"
	StatusRevoked = "revoked"
)

// InitialReputation is a new company's reputation, in thousandths (1000 = 1.0).
const InitialReputation = 1000

// Company is a consortium member's identity on the ledger, its standing, and the public keys it
// has recorded: the X25519 key a dealer seals its key shares to, its Flower node's key, and the
// Ed25519 key its leader-election VRF proofs verify under. Demotion says why a demoted company
// is demoted (DemotedByReputation or DemotedByAdmin).
type Company struct {
	Name            string   `json:"name"`
	MSPID           string   `json:"msp_id"`
	CertFingerprint string   `json:"cert_fingerprint"`
	Roles           []string `json:"roles"`
	Status          string   `json:"status"`
	Reputation      int64    `json:"reputation"`
	Stake           int64    `json:"stake"`
	Tokens          int64    `json:"tokens"`
	Demotion        string   `json:"demotion,omitempty"`
	EncryptionKey   string   `json:"encryption_key,omitempty"`
	NodeKey         string   `json:"node_key,omitempty"`
	VrfKey          string   `json:"vrf_key,omitempty"`
}

// roleNames lists the roles for messages, in the order the documentation gives them.
const roleNames = "participant, committee, publisher or dealer"

func knownRole(r string) bool {
	return r == RoleParticipant || r == RoleCommittee || r == RolePublisher || r == RoleDealer
}

func (c *Company) hasRole(role string) bool { return slices.Contains(c.Roles, role) }

func loadCompany(ctx contractapi.TransactionContextInterface, name string) (*Company, error) {
	return load[Company](ctx, fmt.Sprintf("company %s is not registered", name), kindCompany, name)
}

func saveCompany(ctx contractapi.TransactionContextInterface, company *Company) error {
	return store(ctx, company, kindCompany, company.Name)
}

// companyOfCaller returns the company registered for the caller's certificate, or nil.
func companyOfCaller(ctx contractapi.TransactionContextInterface, who caller) (*Company, error) {
	k, err := key(ctx, kindCompanyCert, who.MSPID, who.Fingerprint)
	if err != nil {
		return nil, err
	}
	var name string
	found, err := getJSON(ctx, k, &name)
	if err != nil || !found {
		return nil, err
	}
	return loadCompany(ctx, name)
}

// actingCompany identifies the caller and returns its company, which must be registered, not
// revoked, and hold role both in its certificate and in its ledger record.
func actingCompany(ctx contractapi.TransactionContextInterface, role string) (*Company, error) {
	who, err := identify(ctx)
	if err != nil {
		return nil, err
	}
	company, err := companyOfCaller(ctx, who)
	if err != nil {
		return nil, err
	}
	if company == nil {
		return nil, fmt.Errorf("the caller (MSP %s, certificate %s) is not a registered company", who.MSPID, who.Fingerprint[:16])
	}
	if company.Status == StatusRevoked {
		return nil, fmt.Errorf("company %s is revoked", company.Name)
	}
	if role != "" && (!who.hasRole(role) || !company.hasRole(role)) {
		return nil, fmt.Errorf("company %s does not hold the %s role", company.Name, role)
	}
	return company, nil
}

// RegisterCompany records a company: the caller's own identity (certFingerprint empty or its
// own), or, when the caller is its org's admin, the identity with the given fingerprint in the
// admin's org. roles is a comma-separated subset of participant, committee, publisher, dealer;
// an identity registering itself may claim only roles its certificate's fedledger.role carries.
func (c *Contract) RegisterCompany(ctx contractapi.TransactionContextInterface, name, roles, certFingerprint string) error {
	if err := checkName("company", name); err != nil {
		return err
	}
	who, err := identify(ctx)
	if err != nil {
		return err
	}
	wanted := splitRoles(roles)
	if len(wanted) == 0 {
		return fmt.Errorf("company %s needs at least one role (%s)", name, roleNames)
	}
	for _, r := range wanted {
		if !knownRole(r) {
			return fmt.Errorf("unknown role %q: use %s", r, roleNames)
		}
	}
	switch {
	case certFingerprint == "" || certFingerprint == who.Fingerprint:
		certFingerprint = who.Fingerprint
		for _, r := range wanted {
			if !who.hasRole(r) {
				return fmt.Errorf("the caller's certificate does not carry the %s role (attribute %s)", r, RoleAttribute)
			}
		}
	case who.Admin:
		if err := checkSHA256("certificate fingerprint", certFingerprint); err != nil {
			return err
		}
	default:
		return fmt.Errorf("only the identity itself or an admin of %s may register company %s", who.MSPID, name)
	}
	nameKey, err := key(ctx, kindCompany, name)
	if err != nil {
		return err
	}
	if found, err := exists(ctx, nameKey); err != nil {
		return err
	} else if found {
		return fmt.Errorf("company %s is already registered", name)
	}
	certKey, err := key(ctx, kindCompanyCert, who.MSPID, certFingerprint)
	if err != nil {
		return err
	}
	var other string
	if found, err := getJSON(ctx, certKey, &other); err != nil {
		return err
	} else if found {
		return fmt.Errorf("that certificate is already registered as company %s", other)
	}
	company := &Company{
		Name: name, MSPID: who.MSPID, CertFingerprint: certFingerprint, Roles: wanted,
		Status: StatusActive, Reputation: InitialReputation,
	}
	if err := saveCompany(ctx, company); err != nil {
		return err
	}
	if err := putJSON(ctx, certKey, name); err != nil {
		return err
	}
	return emit(ctx, "CompanyRegistered", company)
}

// SetCompanyStatus demotes, revokes or reinstates a company; only an admin of its org may.
// Revocation is final.
func (c *Contract) SetCompanyStatus(ctx contractapi.TransactionContextInterface, name, status string) error {
	if status != StatusActive && status != StatusDemoted && status != StatusRevoked {
		return fmt.Errorf("unknown status %q: use active, demoted or revoked", status)
	}
	who, err := identify(ctx)
	if err != nil {
		return err
	}
	company, err := loadCompany(ctx, name)
	if err != nil {
		return err
	}
	if !who.Admin || who.MSPID != company.MSPID {
		return fmt.Errorf("only an admin of %s may change the status of company %s", company.MSPID, name)
	}
	if company.Status == StatusRevoked {
		return fmt.Errorf("company %s is revoked; revocation is final", name)
	}
	if company.Status == status {
		return fmt.Errorf("company %s is already %s", name, status)
	}
	company.Status = status
	company.Demotion = ""
	if status == StatusDemoted {
		company.Demotion = DemotedByAdmin
	}
	if err := saveCompany(ctx, company); err != nil {
		return err
	}
	return emit(ctx, "CompanyStatusChanged", company)
}

// MaxNodeKeyLength bounds a recorded Flower node public key (PEM or OpenSSH text).
const MaxNodeKeyLength = 1024

var (
	// x25519Hex is an X25519 public key (a libsodium sealed-box recipient key) in hex.
	x25519Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// openSSHKey is an OpenSSH public key line: its type, its base64 body, an optional comment.
	openSSHKey = regexp.MustCompile(`^(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+={0,2}( [ -~]*)?$`)
)

func checkEncryptionKey(key string) error {
	if !x25519Hex.MatchString(key) {
		return fmt.Errorf("the encryption key must be an X25519 public key (the libsodium sealed-box recipient key) as 64 lower-case hex digits, got %d characters", len(key))
	}
	if key == strings.Repeat("0", 64) {
		return fmt.Errorf("the encryption key is all zeros, which no X25519 key pair has; send the public key of the company's own key pair")
	}
	return nil
}

// checkVrfKey accepts an ECVRF-EDWARDS25519 public key: a canonical point of the prime-order
// subgroup, as 64 lower-case hex digits.
func checkVrfKey(key string) error {
	if !x25519Hex.MatchString(key) {
		return fmt.Errorf("the VRF key must be an Ed25519 public key as 64 lower-case hex digits, got %d characters", len(key))
	}
	raw, _ := hex.DecodeString(key)
	if err := vrf.CheckPublicKey(raw); err != nil {
		return fmt.Errorf("the VRF key is not usable: %v", err)
	}
	return nil
}

// checkNodeKey accepts a public key as PEM (printable ASCII lines) or as one OpenSSH line.
func checkNodeKey(key string) error {
	if len(key) < 1 || len(key) > MaxNodeKeyLength {
		return fmt.Errorf("the node key must be 1-%d characters of PEM or OpenSSH text, got %d", MaxNodeKeyLength, len(key))
	}
	for i := 0; i < len(key); i++ {
		if b := key[i]; b != '\n' && (b < 0x20 || b > 0x7e) {
			return fmt.Errorf("the node key must be printable ASCII (PEM or OpenSSH text); byte %d is 0x%02x", i, b)
		}
	}
	text := strings.TrimSpace(key)
	if strings.HasPrefix(text, "-----BEGIN ") {
		if !strings.Contains(text, "\n-----END ") || !strings.HasSuffix(text, "-----") {
			return fmt.Errorf("the node key starts as PEM but has no -----END line")
		}
		return nil
	}
	if strings.Contains(text, "\n") || !openSSHKey.MatchString(text) {
		return fmt.Errorf("the node key must be a public key in PEM (-----BEGIN PUBLIC KEY-----) or one OpenSSH line (ecdsa-sha2-nistp384 AAAA...)")
	}
	return nil
}

// RecordCompanyKeys records, or rotates, the caller's own company's public keys: encryptionKey,
// the X25519 key (64 hex digits) that dealers seal its key shares to, nodeKey, its Flower
// node's public key (PEM or OpenSSH), and vrfKey, the Ed25519 public key (64 hex digits) of its
// leader-election VRF. A share already dealt stays sealed to the key it was dealt to, which its
// record names. The VRF key is fixed once recorded: a company that could change it after seeing
// a task's seed could search for a key that ranks it first.
func (c *Contract) RecordCompanyKeys(ctx contractapi.TransactionContextInterface, encryptionKey, nodeKey, vrfKey string) error {
	company, err := actingCompany(ctx, "")
	if err != nil {
		return err
	}
	if err := checkEncryptionKey(encryptionKey); err != nil {
		return err
	}
	if err := checkNodeKey(nodeKey); err != nil {
		return err
	}
	if err := checkVrfKey(vrfKey); err != nil {
		return err
	}
	if company.VrfKey != "" && company.VrfKey != vrfKey {
		return fmt.Errorf("company %s recorded its VRF key %s… already; a VRF key never changes once recorded", company.Name, company.VrfKey[:16])
	}
	company.EncryptionKey, company.NodeKey, company.VrfKey = encryptionKey, nodeKey, vrfKey
	if err := saveCompany(ctx, company); err != nil {
		return err
	}
	return emit(ctx, "CompanyKeysRecorded", company)
}

// GetCompany returns a company's record as JSON.
func (c *Contract) GetCompany(ctx contractapi.TransactionContextInterface, name string) (string, error) {
	company, err := loadCompany(ctx, name)
	if err != nil {
		return "", err
	}
	raw, err := canonical(company)
	return string(raw), err
}

// ListCompanies returns every company's record as a JSON array, ordered by name.
func (c *Contract) ListCompanies(ctx contractapi.TransactionContextInterface) (string, error) {
	companies, err := listByPrefix[Company](ctx, kindCompany)
	if err != nil {
		return "", err
	}
	raw, err := canonical(companies)
	return string(raw), err
}

// listByPrefix reads every value under a composite-key prefix in one range query.
func listByPrefix[T any](ctx contractapi.TransactionContextInterface, kind string, parts ...string) ([]T, error) {
	iter, err := ctx.GetStub().GetStateByPartialCompositeKey(kind, parts)
	if err != nil {
		return nil, fmt.Errorf("reading the ledger failed: %w", err)
	}
	defer iter.Close()
	out := []T{}
	for iter.HasNext() {
		kv, err := iter.Next()
		if err != nil {
			return nil, fmt.Errorf("reading the ledger failed: %w", err)
		}
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
