package accountant

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"testing"
)

// vectorsFile is shared with the Python tests (tests/unit/privacy/test_accountant_vectors.py) and
// written by tests/vectors/make_accountant_vectors.py from the Python accountant.
const vectorsFile = "../../tests/vectors/accountant.json"

// epsilonTolerance is the agreement promised with Python, absolute, on epsilon.
const epsilonTolerance = 1e-6

// relativeTolerance is the agreement actually expected: the two sides run the same operations
// and differ only in their libm's last bits (lgamma, erfc, log, exp).
const relativeTolerance = 1e-11

type vectorCase struct {
	Name                 string  `json:"name"`
	NoiseMultiplierMicro int64   `json:"noise_multiplier_micro"`
	SampleRateMicro      int64   `json:"sample_rate_micro"`
	DeltaMicro           int64   `json:"delta_micro"`
	LabelEpsilonMicro    int64   `json:"label_epsilon_micro"`
	StepsPerRound        int     `json:"steps_per_round"`
	Rounds               int     `json:"rounds"`
	Epsilon              float64 `json:"epsilon"`
	EpsilonMicro         int64   `json:"epsilon_micro"`
}

func (c vectorCase) params() Params {
	return Params{NoiseMultiplierMicro: c.NoiseMultiplierMicro, SampleRateMicro: c.SampleRateMicro,
		DeltaMicro: c.DeltaMicro, LabelEpsilonMicro: c.LabelEpsilonMicro, StepsPerRound: c.StepsPerRound}
}

type vectorsDocument struct {
	Orders []float64    `json:"orders"`
	Cases  []vectorCase `json:"cases"`
}

func loadVectors(tb testing.TB) vectorsDocument {
	tb.Helper()
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		tb.Fatalf("reading the shared vectors: %v", err)
	}
	var doc vectorsDocument
	if err := json.Unmarshal(raw, &doc); err != nil {
		tb.Fatalf("parsing %s: %v", vectorsFile, err)
	}
	if len(doc.Cases) == 0 {
		tb.Fatalf("%s holds no cases", vectorsFile)
	}
	return doc
}

// demo is the README demo: record level, sigma 1.41, q 0.25, delta 1e-5.
var demo = Params{NoiseMultiplierMicro: 1_410_000, SampleRateMicro: 250_000, DeltaMicro: 10, StepsPerRound: 1}

// requireError checks that err is an *Error with the given reason and exact message.
func requireError(t *testing.T, err error, reason error, message string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want %q", message)
	}
	var accountantErr *Error
	if !errors.As(err, &accountantErr) {
		t.Fatalf("error %T %q is not an *accountant.Error", err, err)
	}
	if !errors.Is(err, reason) {
		t.Errorf("error %q has reason %v, want %v", err, accountantErr.Reason, reason)
	}
	if err.Error() != message {
		t.Errorf("error %q, want %q", err, message)
	}
}

// Shared vectors (the Python tests check the same file)

func TestOrdersAreTheVectorsOrders(t *testing.T) {
	doc := loadVectors(t)
	if len(doc.Orders) != len(orders) {
		t.Fatalf("%d orders, the vectors list %d", len(orders), len(doc.Orders))
	}
	for k, want := range doc.Orders {
		if math.Float64bits(orders[k]) != math.Float64bits(want) {
			t.Errorf("order %d is %v, the vectors say %v", k, orders[k], want)
		}
	}
}

func TestTheVectorsFileReproduces(t *testing.T) {
	doc := loadVectors(t)
	worstAbsolute, worstRelative, worstName := 0.0, 0.0, ""
	for _, c := range doc.Cases {
		t.Run(c.Name, func(t *testing.T) {
			got, err := EpsilonAfter(c.params(), c.Rounds)
			if err != nil {
				t.Fatalf("EpsilonAfter: %v", err)
			}
			diff := math.Abs(got - c.Epsilon)
			relative := 0.0
			if c.Epsilon != 0 {
				relative = diff / c.Epsilon
			}
			if diff > worstAbsolute {
				worstAbsolute, worstName = diff, c.Name
			}
			worstRelative = max(worstRelative, relative)
			if diff > epsilonTolerance {
				t.Errorf("epsilon %v, Python %v: off by %g, more than the promised %g", got, c.Epsilon, diff, epsilonTolerance)
			} else if relative > relativeTolerance {
				t.Errorf("epsilon %v, Python %v: off by %g relative, more than the expected %g", got, c.Epsilon, relative, relativeTolerance)
			}

			// Exact, not within 1: the generator refuses cases whose epsilon * 1e6 lies within
			// 1e-10 relative of a whole number, and the two sides agree far closer than that.
			micro, err := EpsilonAfterMicro(c.params(), c.Rounds)
			if err != nil {
				t.Fatalf("EpsilonAfterMicro: %v", err)
			}
			if micro != c.EpsilonMicro {
				t.Errorf("booked %d millionths, Python %d", micro, c.EpsilonMicro)
			}
		})
	}
	t.Logf("largest difference from Python: %g absolute (%s), %g relative", worstAbsolute, worstName, worstRelative)
}

// The budget each vector books is exactly enough for its rounds, and one millionth less is not.
func TestMaxRoundsOfEachVectorsBookedEpsilonIsItsRounds(t *testing.T) {
	for _, c := range loadVectors(t).Cases {
		if c.Rounds == 0 || c.EpsilonMicro == 0 {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			got, err := MaxRounds(c.params(), c.EpsilonMicro, 1_000_000)
			if err != nil {
				t.Fatal(err)
			}
			if got < c.Rounds {
				t.Errorf("MaxRounds(budget %d) = %d, below the vector's %d rounds", c.EpsilonMicro, got, c.Rounds)
			}
			got, err = MaxRounds(c.params(), c.EpsilonMicro-1, 1_000_000)
			if err != nil {
				t.Fatal(err)
			}
			if got >= c.Rounds {
				t.Errorf("MaxRounds(budget %d) = %d, at or past the vector's %d rounds", c.EpsilonMicro-1, got, c.Rounds)
			}
		})
	}
}

// Values

func TestNothingReleasedCostsNothing(t *testing.T) {
	eps, err := EpsilonAfter(demo, 0)
	micro, errMicro := EpsilonAfterMicro(demo, 0)

	if eps != 0 || err != nil || micro != 0 || errMicro != nil {
		t.Fatalf("0 rounds: epsilon %v (%v), %d millionths (%v)", eps, err, micro, errMicro)
	}
}

func TestTheBookedValueIsTheEpsilonRoundedUpToMillionths(t *testing.T) {
	for rounds := 1; rounds <= 20; rounds++ {
		eps, _ := EpsilonAfter(demo, rounds)
		micro, err := EpsilonAfterMicro(demo, rounds)
		if err != nil {
			t.Fatal(err)
		}
		if float64(micro) < eps*MicroScale || float64(micro-1) >= eps*MicroScale {
			t.Fatalf("%d rounds: epsilon %v booked as %d millionths", rounds, eps, micro)
		}
	}
}

func TestEpsilonNeverFallsAsRoundsGrow(t *testing.T) {
	for _, p := range []Params{
		demo,
		{NoiseMultiplierMicro: 1_100_000, SampleRateMicro: 10_000, DeltaMicro: 10, LabelEpsilonMicro: 1_000_000, StepsPerRound: 10},
		{NoiseMultiplierMicro: 5_000_000, SampleRateMicro: MicroScale, DeltaMicro: 1_000, StepsPerRound: 1},
	} {
		previous := 0.0
		for _, rounds := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 50, 100, 101, 1000, 10_000, 100_000} {
			eps, err := EpsilonAfter(p, rounds)
			if err != nil {
				t.Fatal(err)
			}
			if eps < previous {
				t.Fatalf("%+v: epsilon falls from %v to %v at round %d", p, previous, eps, rounds)
			}
			previous = eps
		}
	}
}

func TestTheSameInputsGiveTheSameBits(t *testing.T) {
	p := Params{NoiseMultiplierMicro: 700_000, SampleRateMicro: 64_000, DeltaMicro: 10, LabelEpsilonMicro: 2_500_000, StepsPerRound: 10}
	first, _ := EpsilonAfter(p, 37)
	for range 3 {
		again, _ := EpsilonAfter(p, 37)
		if math.Float64bits(again) != math.Float64bits(first) {
			t.Fatalf("epsilon %v, then %v", first, again)
		}
	}
}

func TestLabelNoiseIsPaidOnceNotPerRound(t *testing.T) {
	// At q 1 the Gaussian RDP grows linearly in rounds; label noise at 8.0 is past where its
	// pure-DP bound (RDP = 8 at every order) binds, so it adds exactly 8 to every order's RDP
	// whatever the rounds, and so 8 to epsilon.
	base := Params{NoiseMultiplierMicro: 5_000_000, SampleRateMicro: MicroScale, DeltaMicro: 1_000, StepsPerRound: 1}
	withLabels := base
	withLabels.LabelEpsilonMicro = 8_000_000
	for _, rounds := range []int{1, 10, 100} {
		plain, _ := EpsilonAfter(base, rounds)
		labelled, _ := EpsilonAfter(withLabels, rounds)
		if d := labelled - plain; math.Abs(d-8) > 1e-12 {
			t.Errorf("%d rounds: label noise adds %v, want 8", rounds, d)
		}
	}
}

func TestTheSmallestSigmaAndLargestSigmaBook(t *testing.T) {
	p := Params{NoiseMultiplierMicro: 1, SampleRateMicro: MicroScale, DeltaMicro: 10, StepsPerRound: 1}
	micro, err := EpsilonAfterMicro(p, 1)
	if err != nil || micro <= 0 {
		t.Fatalf("sigma 0.000001, q 1: %d millionths, %v", micro, err)
	}
	p.NoiseMultiplierMicro = 1_000_000_000_000 // sigma 1e6: next to no privacy spent
	eps, err := EpsilonAfter(p, 1)
	// What is left is the conversion's own cost at delta 1e-5, least at the largest order, 63.
	floor := -(math.Log(1e-5)+math.Log(63))/62 + math.Log(62.0/63)
	if err != nil || math.Abs(eps-floor) > 1e-9 {
		t.Fatalf("sigma 1e6, q 1: epsilon %v, %v; want about %v", eps, err, floor)
	}
}

// Errors

func TestEveryInvalidParameterIsRefusedInWords(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*Params)
		rounds  int
		reason  error
		message string
	}{
		{"negative sigma", func(p *Params) { p.NoiseMultiplierMicro = -500_000 }, 1, ErrNegative,
			"noise multiplier must not be negative, got -0.5"},
		{"sigma 0", func(p *Params) { p.NoiseMultiplierMicro = 0 }, 1, ErrNoNoise,
			"noise multiplier 0 adds no noise: epsilon is unbounded; use a positive noise multiplier"},
		{"sample rate 0", func(p *Params) { p.SampleRateMicro = 0 }, 1, ErrSampleRate,
			"sample rate must be above 0 and at most 1, got 0"},
		{"negative sample rate", func(p *Params) { p.SampleRateMicro = -1 }, 1, ErrSampleRate,
			"sample rate must be above 0 and at most 1, got -0.000001"},
		{"sample rate above 1", func(p *Params) { p.SampleRateMicro = 1_000_001 }, 1, ErrSampleRate,
			"sample rate must be above 0 and at most 1, got 1.000001"},
		{"delta 0", func(p *Params) { p.DeltaMicro = 0 }, 1, ErrDelta,
			"delta must be above 0 and below 1, got 0"},
		{"delta 1", func(p *Params) { p.DeltaMicro = MicroScale }, 1, ErrDelta,
			"delta must be above 0 and below 1, got 1"},
		{"negative delta", func(p *Params) { p.DeltaMicro = -10 }, 1, ErrDelta,
			"delta must be above 0 and below 1, got -0.00001"},
		{"negative label epsilon", func(p *Params) { p.LabelEpsilonMicro = -2_500_000 }, 1, ErrNegative,
			"label epsilon must not be negative (0: no label noise), got -2.5"},
		{"0 steps per round", func(p *Params) { p.StepsPerRound = 0 }, 1, ErrStepsPerRound,
			"steps per round must be at least 1, got 0"},
		{"negative rounds", func(*Params) {}, -1, ErrRounds,
			"rounds must not be negative, got -1"},
		{"more than 2^53 steps", func(p *Params) { p.StepsPerRound = 1 << 20 }, 1 << 34, ErrRounds,
			"rounds 17179869184 of 1048576 steps each compose more than 2^53 steps"},
		// The first fault in the fixed order is the one reported.
		{"several faults", func(p *Params) { p.DeltaMicro, p.SampleRateMicro = 0, 0 }, -1, ErrSampleRate,
			"sample rate must be above 0 and at most 1, got 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := demo
			tc.change(&p)

			eps, err := EpsilonAfter(p, tc.rounds)
			requireError(t, err, tc.reason, tc.message)
			if eps != 0 {
				t.Errorf("epsilon %v returned with the error", eps)
			}
			_, err = EpsilonAfterMicro(p, tc.rounds)
			requireError(t, err, tc.reason, tc.message)
			if tc.reason != ErrRounds { // MaxRounds takes a limit, not rounds
				_, err = MaxRounds(p, 3_000_000, 100)
				requireError(t, err, tc.reason, tc.message)
			}
		})
	}
}

func TestAnEpsilonPastInt64MillionthsIsNotBooked(t *testing.T) {
	// sigma 0.000001 at q 1: RDP order / 2e-12 a step, so about 5.5e11 epsilon a step.
	p := Params{NoiseMultiplierMicro: 1, SampleRateMicro: MicroScale, DeltaMicro: 10, StepsPerRound: 10_000}

	eps, err := EpsilonAfter(p, 1_000)
	if err != nil || !(eps > 0x1p63/MicroScale) {
		t.Fatalf("epsilon %v, %v", eps, err)
	}
	_, err = EpsilonAfterMicro(p, 1_000)
	requireError(t, err, ErrUnbookable, "epsilon 5.5e+18 cannot be booked as an int64 of millionths")
}

func TestMaxRoundsRefusesABadBudgetOrLimit(t *testing.T) {
	_, err := MaxRounds(demo, -1, 10)
	requireError(t, err, ErrNegative, "epsilon budget must not be negative, got -0.000001")
	_, err = MaxRounds(demo, 3_000_000, 0)
	requireError(t, err, ErrLimit, "round limit must be at least 1, got 0")
	p := demo
	p.StepsPerRound = 1 << 30
	_, err = MaxRounds(p, 3_000_000, 1<<30)
	requireError(t, err, ErrRounds, "round limit 1073741824 of 1073741824 steps each compose more than 2^53 steps")
}

// MaxRounds

// linearMaxRounds is MaxRounds the slow way: count up while the booked epsilon fits.
func linearMaxRounds(t *testing.T, p Params, budgetMicro int64, limit int) int {
	t.Helper()
	rounds := 0
	for rounds < limit {
		micro, err := EpsilonAfterMicro(p, rounds+1)
		if err != nil {
			t.Fatal(err)
		}
		if micro > budgetMicro {
			break
		}
		rounds++
	}
	return rounds
}

func TestMaxRoundsIsTheMostRoundsWithinTheBudget(t *testing.T) {
	local := Params{NoiseMultiplierMicro: 1_100_000, SampleRateMicro: 10_000, DeltaMicro: 10, LabelEpsilonMicro: 1_000_000, StepsPerRound: 10}
	company := Params{NoiseMultiplierMicro: 4_000_000, SampleRateMicro: MicroScale, DeltaMicro: 10, StepsPerRound: 1}
	for _, tc := range []struct {
		name   string
		p      Params
		budget int64
		limit  int
	}{
		{"demo, budget 3", demo, 3_000_000, 300},
		{"demo, budget 5", demo, 5_000_000, 300},
		{"demo, budget 12, limit 50", demo, 12_000_000, 50},
		{"local mode with labels, budget 4", local, 4_000_000, 300},
		{"company level, budget 10", company, 10_000_000, 300},
		{"company level, budget 10, limit 1", company, 10_000_000, 1},
		{"company level, budget 10, limit 7", company, 10_000_000, 7},
		{"budget 0", demo, 0, 300},
		{"budget just below one round", demo, 1_768_101, 300},
		{"budget exactly one round", demo, 1_768_102, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := linearMaxRounds(t, tc.p, tc.budget, tc.limit)

			got, err := MaxRounds(tc.p, tc.budget, tc.limit)

			if err != nil || got != want {
				t.Fatalf("MaxRounds = %d, %v; counting gives %d", got, err, want)
			}
		})
	}
}

func TestMaxRoundsOfTheDemoBudget(t *testing.T) {
	// The demo calibrates sigma 1.41 to spend at most epsilon 3 in 5 rounds, not 6.
	got, err := MaxRounds(demo, 3_000_000, 1_000_000)

	if err != nil || got != 5 {
		t.Fatalf("MaxRounds = %d, %v; want 5", got, err)
	}
}

func TestMaxRoundsStopsAtTheLimit(t *testing.T) {
	p := Params{NoiseMultiplierMicro: 50_000_000, SampleRateMicro: 1_000, DeltaMicro: 10, StepsPerRound: 1}

	got, err := MaxRounds(p, 1_000_000_000, 1_000_000)

	if err != nil || got != 1_000_000 {
		t.Fatalf("MaxRounds = %d, %v; want the limit 1000000", got, err)
	}
}

func TestFormatMicro(t *testing.T) {
	for v, want := range map[int64]string{0: "0", 10: "0.00001", 3_200_000: "3.2", 3_000_000: "3", -1: "-0.000001",
		math.MinInt64: "-9223372036854.775808"} {
		if got := formatMicro(v); got != want {
			t.Errorf("formatMicro(%d) = %q, want %q", v, got, want)
		}
	}
}

// Benchmarks

// BenchmarkEpsilonAfter times what OpenRound pays: one EpsilonAfterMicro at round 1000, which
// computes the RDP at all 151 orders afresh (nothing is cached between calls).
func BenchmarkEpsilonAfter(b *testing.B) {
	for _, bc := range []struct {
		name string
		p    Params
	}{
		{"company_sigma1.1", Params{NoiseMultiplierMicro: 1_100_000, SampleRateMicro: MicroScale, DeltaMicro: 10, StepsPerRound: 1}},
		{"demo_sigma1.41_q0.25", demo},
		{"record_sigma1.1_q0.01", Params{NoiseMultiplierMicro: 1_100_000, SampleRateMicro: 10_000, DeltaMicro: 10, StepsPerRound: 1}},
		{"local_sigma1.1_q0.01_10steps_label1", Params{NoiseMultiplierMicro: 1_100_000, SampleRateMicro: 10_000, DeltaMicro: 10, LabelEpsilonMicro: 1_000_000, StepsPerRound: 10}},
		{"record_sigma0.5_q0.01", Params{NoiseMultiplierMicro: 500_000, SampleRateMicro: 10_000, DeltaMicro: 10, StepsPerRound: 1}},
		{"record_sigma50_q0.5", Params{NoiseMultiplierMicro: 50_000_000, SampleRateMicro: 500_000, DeltaMicro: 10, StepsPerRound: 1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := EpsilonAfterMicro(bc.p, 1000); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
