package ledger

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
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

// Company is a consortium member's identity on the ledger and its standing.
type Company struct {
	Name            string   `json:"name"`
	MSPID           string   `json:"msp_id"`
	CertFingerprint string   `json:"cert_fingerprint"`
	Roles           []string `json:"roles"`
	Status          string   `json:"status"`
	Reputation      int64    `json:"reputation"`
	Stake           int64    `json:"stake"`
	Tokens          int64    `json:"tokens"`
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
// admin's org. roles is a comma-separated subset of participant, committee, publisher; an
// identity registering itself may claim only roles its certificate's fedledger.role carries.
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
		return fmt.Errorf("company %s needs at least one role (participant, committee or publisher)", name)
	}
	for _, r := range wanted {
		if r != RoleParticipant && r != RoleCommittee && r != RolePublisher {
			return fmt.Errorf("unknown role %q: use participant, committee or publisher", r)
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
	if err := saveCompany(ctx, company); err != nil {
		return err
	}
	return emit(ctx, "CompanyStatusChanged", company)
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
