// Package accountant computes a task's privacy spending, epsilon after some rounds, as the
// FedLedger Python accountant (clients/fedledger/privacy/accountant.py, RdpAccountant) does, to
// about 1e-12, so the chaincode can work out a task's budget itself instead of taking a client's
// word for it.
//
// The maths is the Python module's, path by path (see its docstring for the papers): the Renyi DP
// of the sampled Gaussian mechanism at Opacus's default orders (an exact finite sum at integer
// orders, a convergent series at fractional ones), composed over rounds x steps per round; the
// label randomized response composed once as a pure-DP mechanism; and the conversion to
// (epsilon, delta) minimised over the orders. The shared vectors in
// tests/vectors/accountant.json, which the Python tests check too, hold the two together.
//
// Inputs are the ledger's fixed-point integers: millionths ("micro"), as the ledger parses a
// decimal with at most 6 fraction digits. Each is turned into a float64 by one correctly rounded
// division, float64(micro) / 1e6, which gives the same float as Python's micro / 1_000_000 for
// every micro below 2^53; from there both sides run the same operations in the same order.
//
// Floats are used in the computation only, never stored: the ledger books
// EpsilonAfterMicro, ceil(epsilon * 1e6) as an int64, rounded up so that what is booked is never
// below the epsilon spent.
//
// Go may fuse a multiply and an add into one FMA instruction (the spec allows it, and the gc
// compiler does so on arm64, ppc64le, s390x and riscv64), which skips the rounding of the product
// and so can change the last bits of a result. Python never fuses. Every product here that feeds
// a sum or difference is therefore wrapped in an explicit float64() conversion, which the spec
// says forces the rounding and so forbids the fusion; that is what the otherwise redundant
// conversions in this file are for, and they must stay. Fusion hides in unexpected places: gc
// rewrites 2 * (s * s) as s*s + s*s and fuses that, hence 2 * float64(s*s). After a change,
//
//	GOARCH=arm64 go build -gcflags=-S ./accountant 2>&1 | grep accountant.go | grep FMADD
//
// must print nothing (likewise with ppc64le, s390x and riscv64).
//
// The conversions do not reach inside the math package, whose kernels differ between
// architectures (assembly Exp and Log on amd64, assembly on s390x, pure Go, so fusible, elsewhere),
// nor make Go's functions C's libm, which Python calls (Python's sigma**2 even goes through C's
// pow, which misrounds about 0.1% of squares by an ulp; Go's sigma*sigma is correctly rounded).
// So Go and Python agree to about 1e-12 relative on the shared vectors, not bit for bit, and
// peers on different architectures are expected to agree as closely; the booked millionths differ
// only if epsilon * 1e6 lies that close to a whole number.
//
// Nothing here reads a clock, draws randomness or keeps state between calls.
package accountant

import (
	"errors"
	"fmt"
	"math"
)

// MicroScale is the fixed-point scale of every input and of the booked epsilon: millionths.
const MicroScale = 1_000_000

// MaxSteps bounds rounds x steps per round, so the step count converts to a float64 exactly, as
// Python's integer does.
const MaxSteps = 1 << 53

// Params are a task's privacy parameters as the ledger holds them, in millionths.
type Params struct {
	// NoiseMultiplierMicro is sigma, the noise standard deviation over the clip norm; positive.
	NoiseMultiplierMicro int64
	// SampleRateMicro is q, each unit's chance to be in a step, in (0, 1]: 1_000_000 at company level.
	SampleRateMicro int64
	// DeltaMicro is the delta of (epsilon, delta)-DP, in (0, 1): 10 for 1e-5.
	DeltaMicro int64
	// LabelEpsilonMicro is the epsilon of the label randomized response, >= 0 (0: no label noise).
	LabelEpsilonMicro int64
	// StepsPerRound is how many steps of the Gaussian mechanism a round composes, >= 1.
	StepsPerRound int
}

// Reasons an input is refused. Every error this package returns is an *Error whose Reason is one
// of these, so callers can test it with errors.Is.
var (
	ErrNegative      = errors.New("negative parameter")
	ErrNoNoise       = errors.New("noise multiplier 0: epsilon is unbounded")
	ErrSampleRate    = errors.New("sample rate out of range")
	ErrDelta         = errors.New("delta out of range")
	ErrStepsPerRound = errors.New("steps per round out of range")
	ErrRounds        = errors.New("rounds out of range")
	ErrLimit         = errors.New("round limit out of range")
	ErrUnbookable    = errors.New("epsilon too large to book")
)

// Error says which parameter was refused and why, in words a client can be shown verbatim.
type Error struct {
	// Reason is one of the Err* values of this package.
	Reason error
	msg    string
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the Reason, for errors.Is.
func (e *Error) Unwrap() error { return e.Reason }

func fail(reason error, format string, args ...any) *Error {
	return &Error{Reason: reason, msg: fmt.Sprintf(format, args...)}
}

// EpsilonAfter returns the epsilon that rounds rounds of the task spend in total, label noise
// included, at the task's delta: Python's RdpAccountant(...).epsilon_after(rounds, delta=...).
// Rounds 0 spends nothing and gives 0.
//
// It fails with an *Error if a parameter is out of range: a negative value, a noise multiplier
// of 0 (no noise: epsilon is unbounded), a sample rate of 0 or above 1, a delta of 0 or at
// least 1, fewer than 1 step per round, negative rounds, or more than MaxSteps steps in all.
func EpsilonAfter(p Params, rounds int) (float64, error) {
	if err := p.check(); err != nil {
		return 0, err
	}
	if err := checkRounds("rounds", rounds, p.StepsPerRound); err != nil {
		return 0, err
	}
	return newCurve(p).epsilonAfter(rounds), nil
}

// EpsilonAfterMicro returns what the ledger books for EpsilonAfter(p, rounds): ceil(epsilon *
// 1e6), the epsilon in millionths rounded up, with the float product epsilon * 1e6 rounded to
// float64 first, as Python's math.ceil(epsilon * 1_000_000) (fedledger.privacy.epsilon_micro).
//
// It fails as EpsilonAfter does, and with ErrUnbookable if the epsilon does not fit an int64 of
// millionths.
func EpsilonAfterMicro(p Params, rounds int) (int64, error) {
	eps, err := EpsilonAfter(p, rounds)
	if err != nil {
		return 0, err
	}
	return toMicro(eps)
}

// MaxRounds returns the most rounds, at most limit, whose EpsilonAfterMicro stays within
// budgetMicro; 0 if even one round costs more. Python's RdpAccountant.max_rounds compares the
// float epsilon with the budget instead; the two agree unless an epsilon lies within rounding of
// the budget, and this one agrees with what the ledger books.
//
// It fails as EpsilonAfter does, and if budgetMicro is negative or limit is below 1 or composes
// more than MaxSteps steps.
func MaxRounds(p Params, budgetMicro int64, limit int) (int, error) {
	if err := p.check(); err != nil {
		return 0, err
	}
	if budgetMicro < 0 {
		return 0, fail(ErrNegative, "epsilon budget must not be negative, got %s", formatMicro(budgetMicro))
	}
	if limit < 1 {
		return 0, fail(ErrLimit, "round limit must be at least 1, got %d", limit)
	}
	if err := checkRounds("round limit", limit, p.StepsPerRound); err != nil {
		return 0, err
	}
	c := newCurve(p)
	fits := func(rounds int) bool {
		micro, err := toMicro(c.epsilonAfter(rounds))
		return err == nil && micro <= budgetMicro
	}
	if !fits(1) {
		return 0, nil
	}
	// Epsilon never falls as rounds grow (each order's RDP grows, and so does their minimum), so
	// double up to the first round count that does not fit, then bisect.
	// Invariant: lo fits; hi does not, or is limit + 1.
	lo, probe := 1, 2
	for probe <= limit && fits(probe) {
		lo, probe = probe, probe*2
	}
	hi := min(probe, limit+1)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// check refuses parameters out of range, in a fixed order so every peer reports the same first
// error.
func (p Params) check() error {
	switch {
	case p.NoiseMultiplierMicro < 0:
		return fail(ErrNegative, "noise multiplier must not be negative, got %s", formatMicro(p.NoiseMultiplierMicro))
	case p.NoiseMultiplierMicro == 0:
		return fail(ErrNoNoise, "noise multiplier 0 adds no noise: epsilon is unbounded; use a positive noise multiplier")
	case p.SampleRateMicro <= 0 || p.SampleRateMicro > MicroScale:
		return fail(ErrSampleRate, "sample rate must be above 0 and at most 1, got %s", formatMicro(p.SampleRateMicro))
	case p.DeltaMicro <= 0 || p.DeltaMicro >= MicroScale:
		return fail(ErrDelta, "delta must be above 0 and below 1, got %s", formatMicro(p.DeltaMicro))
	case p.LabelEpsilonMicro < 0:
		return fail(ErrNegative, "label epsilon must not be negative (0: no label noise), got %s", formatMicro(p.LabelEpsilonMicro))
	case p.StepsPerRound < 1:
		return fail(ErrStepsPerRound, "steps per round must be at least 1, got %d", p.StepsPerRound)
	}
	return nil
}

func checkRounds(what string, rounds, stepsPerRound int) error {
	if rounds < 0 {
		return fail(ErrRounds, "%s must not be negative, got %d", what, rounds)
	}
	if rounds > MaxSteps/stepsPerRound {
		return fail(ErrRounds, "%s %d of %d steps each compose more than 2^53 steps", what, rounds, stepsPerRound)
	}
	return nil
}

func toMicro(eps float64) (int64, error) {
	micro := math.Ceil(eps * MicroScale)
	// 2^63 is the first float64 past the int64 range; the negation also catches NaN.
	if !(micro >= 0 && micro < 0x1p63) {
		return 0, fail(ErrUnbookable, "epsilon %g cannot be booked as an int64 of millionths", eps)
	}
	return int64(micro), nil
}

// formatMicro writes millionths as a decimal for messages: 3200000 -> "3.2", 10 -> "0.00001".
func formatMicro(v int64) string {
	sign, u := "", uint64(v)
	if v < 0 {
		sign, u = "-", -u
	}
	s := fmt.Sprintf("%s%d.%06d", sign, u/MicroScale, u%MicroScale)
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}

func fromMicro(v int64) float64 { return float64(v) / MicroScale }

// curve is a task's RDP at each order: one step of the Gaussian mechanism, and the label noise.
// Built once, it answers epsilonAfter for any number of rounds with len(orders) float operations.
type curve struct {
	perStep       [orderCount]float64
	label         [orderCount]float64
	stepsPerRound int
	logDelta      float64
}

func newCurve(p Params) *curve {
	sigma, q := fromMicro(p.NoiseMultiplierMicro), fromMicro(p.SampleRateMicro)
	labelEpsilon := fromMicro(p.LabelEpsilonMicro)
	c := &curve{stepsPerRound: p.StepsPerRound, logDelta: math.Log(fromMicro(p.DeltaMicro))}
	for k, order := range orders {
		c.perStep[k] = gaussianRDP(sigma, q, order)
		c.label[k] = pureDPRDP(labelEpsilon, order)
	}
	return c
}

// epsilonAfter is RdpAccountant.epsilon_after on checked parameters: rdp_after, then
// epsilon_from_rdp (Balle et al. 2020, Theorem 21), never below 0.
func (c *curve) epsilonAfter(rounds int) float64 {
	if rounds == 0 {
		// The conversion alone would report a small positive bound for nothing released.
		return 0
	}
	steps := float64(rounds * c.stepsPerRound) // exact: checkRounds keeps it within 2^53
	best := math.Inf(1)
	for k, order := range orders {
		rdp := float64(steps*c.perStep[k]) + c.label[k]
		eps := rdp - (c.logDelta+math.Log(order))/(order-1) + math.Log((order-1)/order)
		if eps < best {
			best = eps
		}
	}
	if 0 > best {
		return 0
	}
	return best
}

// orderCount is the number of Renyi orders: Opacus's RDPAccountant.DEFAULT_ALPHAS.
const orderCount = 99 + 52

// orders are 1.1, 1.2, ..., 10.9, then 12, 13, ..., 63, computed as 1 + x / 10 like Python's
// DEFAULT_ORDERS so the floats are identical (the shared vectors list them).
var orders = func() [orderCount]float64 {
	var out [orderCount]float64
	for x := 1; x < 100; x++ {
		out[x-1] = 1 + float64(x)/10
	}
	for a := 12; a < 64; a++ {
		out[99+a-12] = float64(a)
	}
	return out
}()

// The fractional-order series stops once its tail is known to within e^-30 of the total; an order
// whose series has not converged within maxSeriesTerms terms is dropped (its RDP is +Inf).
const (
	logTailCutoff  = 30.0
	maxSeriesTerms = 100_000
	// Below erfcDirectLimit, log(erfc(x)) is accurate from math.Erfc.
	erfcDirectLimit = 20.0
)

var (
	logHalf   = -math.Log(2.0)
	logSqrtPi = 0.5 * math.Log(math.Pi)
)

// gaussianRDP is gaussian_rdp: the RDP at order of one step of the sampled Gaussian mechanism,
// for sigma > 0 and q in (0, 1].
func gaussianRDP(sigma, q, order float64) float64 {
	if q == 1 {
		return order / (2 * float64(sigma*sigma))
	}
	var logA float64
	if order == math.Trunc(order) {
		logA = logAInteger(q, sigma, int(order))
	} else {
		logA = logAFractional(q, sigma, order)
	}
	return logA / (order - 1)
}

// pureDPRDP is pure_dp_rdp: min(epsilon, order * epsilon^2 / 2) (Bun & Steinke 2016, Prop. 3.3).
func pureDPRDP(epsilon, order float64) float64 {
	zcdp := order * (epsilon * epsilon) / 2
	if zcdp < epsilon {
		return zcdp
	}
	return epsilon
}

func lgamma(x float64) float64 {
	v, _ := math.Lgamma(x) // log|Gamma(x)|, as Python's math.lgamma
	return v
}

// logAdd is log(e^a + e^b).
func logAdd(a, b float64) float64 {
	if a == math.Inf(-1) {
		return b
	}
	if b == math.Inf(-1) {
		return a
	}
	hi, lo := a, b
	if b > a {
		hi, lo = b, a
	}
	return hi + math.Log1p(math.Exp(lo-hi))
}

// logSub is log(e^a - e^b) for a >= b; -Inf when they are equal.
func logSub(a, b float64) float64 {
	if b == math.Inf(-1) {
		return a
	}
	if a == b {
		return math.Inf(-1)
	}
	return a + math.Log1p(-math.Exp(b-a))
}

// logErfc is log(erfc(x)), accurate where erfc(x) itself underflows.
func logErfc(x float64) float64 {
	if x < erfcDirectLimit {
		return math.Log(math.Erfc(x))
	}
	// The asymptotic expansion erfc(x) = e^(-x^2) / (x sqrt(pi)) * sum_k (-1)^k (2k-1)!! / (2x^2)^k,
	// eight terms, by Horner's rule in the Python code's order.
	u := 1.0 / (2.0 * x * x)
	series := 2027025.0
	for _, c := range [...]float64{-135135, 10395, -945, 105, -15, 3, -1} {
		series = c + float64(u*series)
	}
	series = u * series
	return float64(-x*x) - math.Log(x) - logSqrtPi + math.Log1p(series)
}

// logAInteger is log A at an integer order: the finite sum over k of C(order, k) q^k
// (1-q)^(order-k) e^((k^2 - k) / (2 sigma^2)).
func logAInteger(q, sigma float64, order int) float64 {
	logQ, log1Q := math.Log(q), math.Log1p(-q)
	twoVar := 2 * float64(sigma*sigma)
	logA := math.Inf(-1)
	for k := 0; k <= order; k++ {
		logBinom := lgamma(float64(order+1)) - lgamma(float64(k+1)) - lgamma(float64(order-k+1))
		term := logBinom + float64(float64(k)*logQ) + float64(float64(order-k)*log1Q) + float64(k*k-k)/twoVar
		logA = logAdd(logA, term)
	}
	return logA
}

// logAFractional is log A at a fractional order > 1 (Mironov, Talwar & Zhang 2019, Section 3.3):
// the two binomial series either side of z0 = sigma^2 log(1/q - 1) + 1/2, integrated term by term,
// summed in log space with positive and negative terms apart, and stopped once the tail is known
// to within e^-30 of the total. See the Python _log_a_fractional for the derivation of the stop.
// It returns +Inf if the series has not converged within maxSeriesTerms terms, or if its sum is
// not positive.
func logAFractional(q, sigma, order float64) float64 {
	logQ, log1Q := math.Log(q), math.Log1p(-q)
	twoVar := 2 * float64(sigma*sigma)
	root2Sigma := math.Sqrt(2) * sigma
	z0 := float64(sigma*sigma*(log1Q-logQ)) + 0.5
	logGammaTop := lgamma(order + 1)
	// C(order, i) > 0 up to i = floor(order) + 1; from there its sign alternates with i.
	head := int(math.Floor(order)) + 1
	positive, negative := math.Inf(-1), math.Inf(-1)
	beforeLast, last := math.Inf(1), math.Inf(1) // log m_{i-2}, log m_{i-1}
	for i := range maxSeriesTerms {
		fi := float64(i)
		j := order - fi
		logBinom := logGammaTop - lgamma(fi+1) - lgamma(j+1)
		below := float64(fi*logQ) + float64(j*log1Q) + float64(i*i-i)/twoVar + logHalf + logErfc((fi-z0)/root2Sigma)
		above := float64(j*logQ) + float64(fi*log1Q) + (float64(j*j)-j)/twoVar + logHalf + logErfc((z0-j)/root2Sigma)
		term := logBinom + logAdd(below, above)
		isNegative := i > head && (i-head)%2 == 1
		if isNegative {
			negative = logAdd(negative, term)
		} else {
			positive = logAdd(positive, term)
		}
		if i > head+1 && term < last && last < beforeLast && positive > negative {
			step, previousStep := logSub(last, term), logSub(beforeLast, last)
			// Sizes shrinking convexly: the tail estimate m_i / 2 is off by at most (m_{i-1} - m_i) / 2.
			if step <= previousStep && step+logHalf < logSub(positive, negative)-logTailCutoff {
				// The tail takes the sign of term i + 1, the opposite of term i's.
				if isNegative {
					positive = logAdd(positive, term+logHalf)
				} else {
					negative = logAdd(negative, term+logHalf)
				}
				if positive > negative {
					return logSub(positive, negative)
				}
				return math.Inf(1)
			}
		}
		beforeLast, last = last, term
	}
	return math.Inf(1)
}
