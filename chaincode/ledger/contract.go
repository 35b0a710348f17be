// Package ledger is the FedLedger chaincode: the consortium's record of companies, training tasks,
// rounds, encrypted-update hashes, aggregates, committee votes, privacy budget, key custody
// (each task's threshold key, dealt by a key-management company, the dealer, as sealed shares),
// stake and reputation.
//
// Every transaction identifies its caller by Fabric identity alone (MSP id, certificate
// fingerprint, the Fabric CA attribute fedledger.role, and the admin OU), checks the caller's
// right to act, and rejects anything else with a message the client shows verbatim. State is
// canonical JSON (sorted keys, integers or fixed-point strings, never floats); the only time is
// the transaction timestamp; every change emits one chaincode event.
package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// Version is the chaincode's version, reported by the Version transaction.
const Version = "0.4.0"

// Roles a company may hold; the fedledger.role certificate attribute lists them, comma-separated.
const (
	RoleParticipant = "participant"
	RoleCommittee   = "committee"
	RolePublisher   = "publisher"
	// RoleDealer is the key-management party: it generates a task's threshold key and deals the
	// shares, sealed to each committee member, and may hold no other place in that task.
	RoleDealer = "dealer"
)

// RoleAttribute is the Fabric CA attribute that carries an identity's roles.
const RoleAttribute = "fedledger.role"

// Contract holds every FedLedger transaction.
type Contract struct {
	contractapi.Contract
}

// NewContract returns the contract with its name set, ready for contractapi.NewChaincode.
func NewContract() *Contract {
	c := &Contract{}
	c.Name = "fedledger"
	c.Info.Version = Version
	c.Info.Title = "FedLedger consortium ledger"
	return c
}

// caller is who sent the transaction, as Fabric's identity says.
type caller struct {
	MSPID       string
	Fingerprint string
	Roles       []string
	Admin       bool
}

func (c caller) hasRole(role string) bool { return slices.Contains(c.Roles, role) }

func identify(ctx contractapi.TransactionContextInterface) (caller, error) {
	id := ctx.GetClientIdentity()
	msp, err := id.GetMSPID()
	if err != nil {
		return caller{}, fmt.Errorf("cannot read the caller's MSP id: %w", err)
	}
	cert, err := id.GetX509Certificate()
	if err != nil || cert == nil {
		return caller{}, errors.New("the caller's identity carries no X.509 certificate")
	}
	sum := sha256.Sum256(cert.Raw)
	roles, _, err := id.GetAttributeValue(RoleAttribute)
	if err != nil {
		return caller{}, fmt.Errorf("cannot read the caller's %s attribute: %w", RoleAttribute, err)
	}
	return caller{
		MSPID:       msp,
		Fingerprint: hex.EncodeToString(sum[:]),
		Roles:       splitRoles(roles),
		Admin:       slices.Contains(cert.Subject.OrganizationalUnit, "admin"),
	}, nil
}

func splitRoles(s string) []string {
	var roles []string
	for _, r := range strings.Split(s, ",") {
		if r = strings.TrimSpace(r); r != "" && !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	slices.Sort(roles)
	return roles
}

// canonical marshals v as JSON with object keys sorted at every level and numbers kept exact.
func canonical(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, err
	}
	// encoding/json writes map keys in sorted order; json.Number re-encodes digit for digit.
	return json.Marshal(generic)
}

// decodeStrict parses one JSON document into v, refusing unknown fields and trailing data.
func decodeStrict(data string, v any, what string) error {
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s is not valid JSON for this transaction: %v", what, err)
	}
	if dec.More() {
		return fmt.Errorf("%s has trailing data after the JSON document", what)
	}
	return nil
}

var (
	namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	sha256Hex   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	hexPattern  = regexp.MustCompile(`^[0-9a-f]+$`)
)

// repeats reports whether a list of names holds one twice.
func repeats(names []string) bool {
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	return len(slices.Compact(sorted)) != len(names)
}

func checkName(kind, name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%s name %q is invalid: use 1-64 of a-z 0-9 . _ -, starting with a letter or digit", kind, name)
	}
	return nil
}

func checkSHA256(what, value string) error {
	if !sha256Hex.MatchString(value) {
		return fmt.Errorf("%s must be 64 lower-case hex digits (a SHA-256), got %q", what, value)
	}
	return nil
}

// microScale is the fixed-point scale of privacy budgets: epsilon is stored in millionths.
const microScale = 1_000_000

// parseMicro parses a non-negative decimal string with at most 6 fraction digits into millionths.
func parseMicro(what, s string) (int64, error) {
	whole, frac, hasFrac := strings.Cut(s, ".")
	if whole == "" || (hasFrac && (frac == "" || len(frac) > 6)) {
		return 0, fmt.Errorf("%s must be a decimal like 3 or 0.25 with at most 6 decimals, got %q", what, s)
	}
	w, err := strconv.ParseUint(whole, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s must be a decimal like 3 or 0.25 with at most 6 decimals, got %q", what, s)
	}
	f := uint64(0)
	if hasFrac {
		padded := frac + strings.Repeat("0", 6-len(frac))
		if f, err = strconv.ParseUint(padded, 10, 32); err != nil {
			return 0, fmt.Errorf("%s must be a decimal like 3 or 0.25 with at most 6 decimals, got %q", what, s)
		}
	}
	return int64(w)*microScale + int64(f), nil
}

// formatMicro is the inverse of parseMicro, for messages: 3200000 -> "3.2".
func formatMicro(v int64) string {
	s := fmt.Sprintf("%d.%06d", v/microScale, v%microScale)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// Key kinds of the world state. Composite keys let one range query read all of a round's
// updates or votes.
const (
	kindCompany     = "company"
	kindCompanyCert = "company-cert"
	kindTask        = "task"
	kindRound       = "round"
	kindUpdate      = "update"
	kindVote        = "vote"
	kindKeyShare    = "keyshare"
	kindTaskKey     = "taskkey"
	kindProof       = "proof"
)

func roundKeyPart(n int) string { return fmt.Sprintf("%06d", n) }

func key(ctx contractapi.TransactionContextInterface, kind string, parts ...string) (string, error) {
	return ctx.GetStub().CreateCompositeKey(kind, parts)
}

// getJSON reads the value at key into v; it reports whether the key exists.
func getJSON(ctx contractapi.TransactionContextInterface, k string, v any) (bool, error) {
	raw, err := ctx.GetStub().GetState(k)
	if err != nil {
		return false, fmt.Errorf("reading the ledger failed: %w", err)
	}
	if raw == nil {
		return false, nil
	}
	return true, json.Unmarshal(raw, v)
}

// load reads the record at a composite key; a missing record is the error missing names.
func load[T any](ctx contractapi.TransactionContextInterface, missing string, kind string, parts ...string) (*T, error) {
	k, err := key(ctx, kind, parts...)
	if err != nil {
		return nil, err
	}
	var v T
	found, err := getJSON(ctx, k, &v)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errors.New(missing)
	}
	return &v, nil
}

// exists reports whether a key holds a value.
func exists(ctx contractapi.TransactionContextInterface, k string) (bool, error) {
	raw, err := ctx.GetStub().GetState(k)
	if err != nil {
		return false, fmt.Errorf("reading the ledger failed: %w", err)
	}
	return raw != nil, nil
}

// store writes a record at a composite key: the counterpart of load.
func store(ctx contractapi.TransactionContextInterface, v any, kind string, parts ...string) error {
	k, err := key(ctx, kind, parts...)
	if err != nil {
		return err
	}
	return putJSON(ctx, k, v)
}

func putJSON(ctx contractapi.TransactionContextInterface, k string, v any) error {
	raw, err := canonical(v)
	if err != nil {
		return err
	}
	return ctx.GetStub().PutState(k, raw)
}

// emit sets the transaction's chaincode event (Fabric keeps one per transaction).
func emit(ctx contractapi.TransactionContextInterface, name string, payload any) error {
	raw, err := canonical(payload)
	if err != nil {
		return err
	}
	return ctx.GetStub().SetEvent(name, raw)
}

func txSeconds(ctx contractapi.TransactionContextInterface) (int64, error) {
	ts, err := ctx.GetStub().GetTxTimestamp()
	if err != nil {
		return 0, fmt.Errorf("reading the transaction timestamp failed: %w", err)
	}
	return ts.GetSeconds(), nil
}

// Version reports the chaincode's name and version: the health check.
func (c *Contract) Version(ctx contractapi.TransactionContextInterface) (string, error) {
	raw, err := canonical(map[string]string{"chaincode": "fedledger", "version": Version})
	return string(raw), err
}

// WhoAmI reports how the chaincode sees the caller: MSP id, certificate fingerprint, roles,
// whether it is an org admin, and the company it is registered as (if any).
func (c *Contract) WhoAmI(ctx contractapi.TransactionContextInterface) (string, error) {
	who, err := identify(ctx)
	if err != nil {
		return "", err
	}
	company, err := companyOfCaller(ctx, who)
	if err != nil {
		return "", err
	}
	name := ""
	if company != nil {
		name = company.Name
	}
	raw, err := canonical(map[string]any{
		"admin": who.Admin, "company": name, "fingerprint": who.Fingerprint,
		"msp_id": who.MSPID, "roles": who.Roles,
	})
	return string(raw), err
}
