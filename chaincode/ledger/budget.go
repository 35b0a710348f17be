package ledger

import (
	"fmt"

	"fedledger/chaincode/accountant"
)

// The chaincode computes a task's privacy budget itself, from the genesis's DP parameters, with
// the Go twin of the clients' RDP accountant (chaincode/accountant; the two agree to 1e-6 on the
// shared vectors in tests/vectors/accountant.json). No client sends an epsilon: OpenRound books
// what the round will have spent once it closes, in millionths (rounded up), and refuses a round
// past the budget; CreateTask refuses a task whose noise cannot pay for even one round. Floats are
// used only inside the accountant; the ledger holds integers.

// privacyParams are the accountant's parameters, from the genesis's fixed-point strings (each
// already checked by Genesis.validate).
func (g *Genesis) privacyParams() (accountant.Params, error) {
	p := accountant.Params{StepsPerRound: g.Privacy.StepsPerRound}
	for _, f := range []struct {
		what string
		text string
		into *int64
	}{
		{"dp.noise_multiplier", g.Privacy.NoiseMultiplier, &p.NoiseMultiplierMicro},
		{"dp.sample_rate", g.Privacy.SampleRate, &p.SampleRateMicro},
		{"dp.delta", g.Privacy.Delta, &p.DeltaMicro},
		{"dp.label_epsilon", g.Privacy.LabelEpsilon, &p.LabelEpsilonMicro},
	} {
		v, err := parseMicro(f.what, f.text)
		if err != nil {
			return p, err
		}
		*f.into = v
	}
	return p, nil
}

// epsilonAfter is the task's epsilon, in millionths, once rounds rounds have closed.
func (g *Genesis) epsilonAfter(rounds int) (int64, error) {
	p, err := g.privacyParams()
	if err != nil {
		return 0, err
	}
	eps, err := accountant.EpsilonAfterMicro(p, rounds)
	if err != nil {
		return 0, fmt.Errorf("the task's privacy parameters cannot be accounted: %v", err)
	}
	return eps, nil
}

// checkAffordable refuses a genesis whose noise cannot pay for even one round within its budget.
func (g *Genesis) checkAffordable(budget int64) error {
	if p, err := g.privacyParams(); err != nil {
		return err
	} else if p.NoiseMultiplierMicro == 0 {
		return fmt.Errorf("dp.noise_multiplier 0 adds no noise, so no epsilon budget can cover a round; set a positive noise multiplier")
	}
	eps, err := g.epsilonAfter(1)
	if err != nil {
		return err
	}
	if eps > budget {
		return fmt.Errorf("dp.noise_multiplier %s is too small for dp.epsilon_budget %s: one round alone would spend epsilon %s",
			g.Privacy.NoiseMultiplier, g.Privacy.EpsilonBudget, formatMicro(eps))
	}
	return nil
}
