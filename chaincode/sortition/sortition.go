// Package sortition recomputes FedLedger's stake-weighted choice of a round's leader and committee
// from the companies' VRF proofs, byte for byte as clients/fedledger/crypto/sortition.py does.
//
// The steps (see the Python module's docstring for the reasoning):
//
//  1. alpha = "fedledger/sortition/v1" || u32be(len(task)) || task || u64be(round) ||
//     u32be(len(seed)) || seed (Input);
//  2. verify every candidate's proof on alpha, zero-stake candidates included, and keep the
//     outputs of those with stake;
//  3. R = SHA-512("fedledger/sortition/v1/seed" || for each staked company in company-id order:
//     u32be(len(id)) || id || beta) (CombinedSeed);
//  4. draw committeeSize + 1 companies without replacement, each in proportion to its stake among
//     those left, by rejection sampling SHA-512(R || u32be(k) || u32be(attempt)) (Draw).
//
// Company-id order is the byte order of the ids' UTF-8 encodings, which is Go's string order.
// Everything is integer arithmetic: no floats, clocks or randomness, so every peer agrees.
package sortition

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"
	"unicode/utf8"

	"fedledger/chaincode/vrf"
)

// Domain-separation tags, shared with the Python implementation.
const (
	InputTag = "fedledger/sortition/v1"
	SeedTag  = "fedledger/sortition/v1/seed"
)

// MaxTotalStake bounds the sum of all stakes, so every cumulative sum fits an int64.
const MaxTotalStake int64 = math.MaxInt64

// Reasons an input is refused. Every error this package returns is an *Error whose Reason is one
// of these, or, for a candidate's proof, the *vrf.Error that refused it.
var (
	ErrInvalidID          = errors.New("invalid id")
	ErrDuplicateCompany   = errors.New("duplicate company id")
	ErrNegativeStake      = errors.New("negative stake")
	ErrZeroStake          = errors.New("zero stake")
	ErrTotalStake         = errors.New("total stake too large")
	ErrCommitteeSize      = errors.New("invalid committee size")
	ErrTooFewCandidates   = errors.New("too few companies with stake")
	ErrDrawCount          = errors.New("invalid draw count")
	ErrOutputLength       = errors.New("VRF output of the wrong length")
	ErrFieldLength        = errors.New("field too long")
	ErrNoUnbiasedDrawLeft = errors.New("rejection sampling exhausted")
)

// Error says what was refused and, where one is to blame, which company.
type Error struct {
	// Company is the company the error is about, or "" if none is.
	Company string
	// Reason is one of the Err* values of this package, or the *vrf.Error refusing a proof.
	Reason error
	msg    string
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the Reason, for errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Reason }

func fail(company string, reason error, format string, args ...any) *Error {
	return &Error{Company: company, Reason: reason, msg: fmt.Sprintf(format, args...)}
}

// Candidate is a company standing for selection: its VRF public key, its proof on the round's
// input and its stake (non-negative fixed-point units).
type Candidate struct {
	Company   string
	PublicKey []byte
	Proof     []byte
	Stake     int64
}

// Selection is the round's leader, its committee in draw order, and the 64-byte combined seed R.
type Selection struct {
	Leader    string
	Committee []string
	Seed      []byte
}

// Output is one company's 64-byte VRF output beta.
type Output struct {
	Company string
	Beta    []byte
}

// Stake is one company's positive stake, as Draw takes it.
type Stake struct {
	Company string
	Amount  int64
}

// Input builds the VRF input alpha that every company proves on for one round:
// "fedledger/sortition/v1" || u32be(len(taskID)) || taskID || u64be(round) || u32be(len(seed)) ||
// seed. The length prefixes make distinct (task, round, seed) triples give distinct inputs.
//
// It fails if taskID is empty or not valid UTF-8, or a field is 2^32 bytes or longer.
func Input(taskID string, round uint64, seed []byte) ([]byte, error) {
	if err := checkID(taskID, "task id"); err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(InputTag)+4+len(taskID)+8+4+len(seed))
	out = append(out, InputTag...)
	out, err := appendPrefixed(out, []byte(taskID))
	if err != nil {
		return nil, err
	}
	out = binary.BigEndian.AppendUint64(out, round)
	return appendPrefixed(out, seed)
}

// Select verifies every candidate's proof on alpha and draws the leader and committeeSize
// committee members in proportion to stake. Candidates may come in any order; the result does
// not depend on it.
//
// It fails if committeeSize is negative; if a company id is empty, not valid UTF-8 or repeated;
// if a stake is negative or the stakes sum past MaxTotalStake; if any proof, a zero-stake
// company's included, does not verify (the error names the company and wraps the *vrf.Error);
// or if fewer than committeeSize + 1 companies have stake.
func Select(candidates []Candidate, alpha []byte, committeeSize int) (Selection, error) {
	// The checks run in the order of the Python select, so both report the same first fault.
	if committeeSize < 0 {
		return Selection{}, fail("", ErrCommitteeSize,
			"committee size must be a non-negative integer, got %d", committeeSize)
	}
	seen := make(map[string]bool, len(candidates))
	ordered := make([]Candidate, 0, len(candidates))
	for _, c := range candidates {
		if err := checkID(c.Company, "company id"); err != nil {
			return Selection{}, err
		}
		if seen[c.Company] {
			return Selection{}, fail(c.Company, ErrDuplicateCompany, "duplicate company id %q", c.Company)
		}
		seen[c.Company] = true
		if c.Stake < 0 {
			return Selection{}, fail(c.Company, ErrNegativeStake,
				"stake of company %q is negative (%d)", c.Company, c.Stake)
		}
		ordered = append(ordered, c)
	}
	slices.SortFunc(ordered, func(a, b Candidate) int { return strings.Compare(a.Company, b.Company) })
	stakes := make([]int64, len(ordered))
	for i, c := range ordered {
		stakes[i] = c.Stake
	}
	if _, err := checkTotal(stakes); err != nil {
		return Selection{}, err
	}

	// Proofs are verified in company-id order so the first company named is the one Python names.
	outputs := make([]Output, 0, len(ordered))
	staked := make([]Stake, 0, len(ordered))
	for _, c := range ordered {
		beta, err := vrf.Verify(c.PublicKey, alpha, c.Proof)
		if err != nil {
			return Selection{}, fail(c.Company, err, "company %q: %v", c.Company, err)
		}
		// A zero-stake company must still publish a valid proof, but it neither feeds the seed
		// nor can be drawn.
		if c.Stake > 0 {
			outputs = append(outputs, Output{Company: c.Company, Beta: beta})
			staked = append(staked, Stake{Company: c.Company, Amount: c.Stake})
		}
	}

	if committeeSize >= len(outputs) {
		return Selection{}, fail("", ErrTooFewCandidates,
			"a leader and a committee of %d need %d companies with stake, got %d",
			committeeSize, uint64(committeeSize)+1, len(outputs))
	}
	seed, err := CombinedSeed(outputs)
	if err != nil {
		return Selection{}, err
	}
	drawn, err := Draw(seed, staked, committeeSize+1)
	if err != nil {
		return Selection{}, err
	}
	return Selection{Leader: drawn[0], Committee: drawn[1:], Seed: seed}, nil
}

// CombinedSeed hashes the companies' VRF outputs, in company-id order whatever their order here,
// into the 64-byte round seed R.
//
// It fails if a company id is empty, not valid UTF-8 or repeated, or a beta is not 64 bytes.
func CombinedSeed(outputs []Output) ([]byte, error) {
	seen := make(map[string]bool, len(outputs))
	ordered := make([]Output, 0, len(outputs))
	for _, o := range outputs {
		if err := checkID(o.Company, "company id"); err != nil {
			return nil, err
		}
		if seen[o.Company] {
			return nil, fail(o.Company, ErrDuplicateCompany, "duplicate company id %q", o.Company)
		}
		seen[o.Company] = true
		if len(o.Beta) != vrf.OutputSize {
			return nil, fail(o.Company, ErrOutputLength,
				"VRF output of company %q must be %d bytes", o.Company, vrf.OutputSize)
		}
		ordered = append(ordered, o)
	}
	slices.SortFunc(ordered, func(a, b Output) int { return strings.Compare(a.Company, b.Company) })
	h := sha512.New()
	h.Write([]byte(SeedTag))
	for _, o := range ordered {
		entry, err := appendPrefixed(nil, []byte(o.Company))
		if err != nil {
			return nil, err
		}
		h.Write(entry)
		h.Write(o.Beta)
	}
	return h.Sum(nil), nil
}

// Draw draws count distinct companies from seed, each with probability proportional to its stake
// among those not yet drawn, and returns them in draw order. The walk is in company-id order,
// whatever the order of stakes.
//
// It fails if a company id is empty, not valid UTF-8 or repeated; if a stake is not positive; if
// the stakes sum past MaxTotalStake; or if count is negative or more than the companies.
func Draw(seed []byte, stakes []Stake, count int) ([]string, error) {
	seen := make(map[string]bool, len(stakes))
	pool := make([]Stake, 0, len(stakes))
	for _, s := range stakes {
		if s.Amount < 0 {
			return nil, fail(s.Company, ErrNegativeStake,
				"stake of company %q is negative (%d)", s.Company, s.Amount)
		}
		if s.Amount == 0 {
			return nil, fail(s.Company, ErrZeroStake,
				"company %q has zero stake and cannot be drawn", s.Company)
		}
		if err := checkID(s.Company, "company id"); err != nil {
			return nil, err
		}
		// Python takes a mapping, whose keys cannot repeat; a slice can, so repeats are refused.
		if seen[s.Company] {
			return nil, fail(s.Company, ErrDuplicateCompany, "duplicate company id %q", s.Company)
		}
		seen[s.Company] = true
		pool = append(pool, s)
	}
	slices.SortFunc(pool, func(a, b Stake) int { return strings.Compare(a.Company, b.Company) })
	amounts := make([]int64, len(pool))
	for i, s := range pool {
		amounts[i] = s.Amount
	}
	total, err := checkTotal(amounts)
	if err != nil {
		return nil, err
	}
	// Draw k hashes k as a u32, so at most 2^32 draws; Python would fail past that too.
	if count < 0 || count > len(pool) || uint64(count) > 1<<32 {
		return nil, fail("", ErrDrawCount, "cannot draw %d of %d companies", count, len(pool))
	}

	drawn := make([]string, 0, count)
	for k := 0; k < count; k++ {
		target, err := uniformBelow(seed, uint32(k), total)
		if err != nil {
			return nil, err
		}
		var cumulative int64
		for i, s := range pool {
			cumulative += s.Amount
			if target < cumulative {
				drawn = append(drawn, s.Company)
				pool = append(pool[:i:i], pool[i+1:]...)
				total -= s.Amount
				break
			}
		}
	}
	return drawn, nil
}

// drawSpace is 2^512, the number of values a SHA-512 digest can take.
var drawSpace = new(big.Int).Lsh(big.NewInt(1), 512)

// uniformBelow is an integer uniform in [0, bound) from draw k: the first SHA-512(seed || u32be(k)
// || u32be(attempt)) below floor(2^512 / bound) * bound, reduced mod bound. Rejecting the values
// above that limit removes the modulo bias, so each company's chance is exactly proportional to
// its stake; a rejection happens with probability below bound / 2^512 < 2^-449.
func uniformBelow(seed []byte, k uint32, bound int64) (int64, error) {
	b := big.NewInt(bound)
	limit := new(big.Int).Div(drawSpace, b)
	limit.Mul(limit, b)
	input := make([]byte, 0, len(seed)+8)
	input = append(input, seed...)
	input = binary.BigEndian.AppendUint32(input, k)
	attemptAt := len(input)
	input = append(input, 0, 0, 0, 0)
	value := new(big.Int)
	for attempt := uint64(0); attempt <= math.MaxUint32; attempt++ {
		binary.BigEndian.PutUint32(input[attemptAt:], uint32(attempt))
		digest := sha512.Sum512(input)
		value.SetBytes(digest[:])
		if value.Cmp(limit) < 0 {
			return value.Mod(value, b).Int64(), nil
		}
	}
	return 0, fail("", ErrNoUnbiasedDrawLeft, "draw %d found no unbiased value in 2^32 attempts", k)
}

func checkID(id, what string) error {
	if id == "" {
		return fail(id, ErrInvalidID, "%s must be a non-empty string", what)
	}
	// Python ids are Unicode text encoded as UTF-8; a Go string holding anything else (including
	// an encoded surrogate) has no Python counterpart and is refused.
	if !utf8.ValidString(id) {
		return fail(id, ErrInvalidID, "%s %q is not valid UTF-8 text", what, id)
	}
	return nil
}

// checkTotal sums non-negative stakes, refusing a sum past MaxTotalStake.
func checkTotal(stakes []int64) (int64, error) {
	var total int64
	for _, s := range stakes {
		if s > MaxTotalStake-total {
			return 0, fail("", ErrTotalStake, "total stake %s exceeds the maximum %d",
				exactSum(stakes), MaxTotalStake)
		}
		total += s
	}
	return total, nil
}

// exactSum is the sum of stakes without overflow, for the error message.
func exactSum(stakes []int64) string {
	sum := new(big.Int)
	for _, s := range stakes {
		sum.Add(sum, big.NewInt(s))
	}
	return sum.String()
}

// appendPrefixed appends u32be(len(field)) || field.
func appendPrefixed(out, field []byte) ([]byte, error) {
	if uint64(len(field)) > math.MaxUint32 {
		return nil, fail("", ErrFieldLength, "a sortition field is longer than 2^32 - 1 bytes")
	}
	out = binary.BigEndian.AppendUint32(out, uint32(len(field)))
	return append(out, field...), nil
}
