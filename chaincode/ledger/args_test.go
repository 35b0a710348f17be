package ledger

import (
	"fmt"
	"strings"
	"testing"
)

// roundTransactions are the transactions that take a round number, with placeholder arguments
// around it: the round is parsed before anything else, so none of the others matters.
var roundTransactions = []struct {
	fn          string
	before, end []string
}{
	{"OpenRound", []string{"mnist-1"}, nil},
	{"SubmitUpdate", []string{"mnist-1"}, []string{hash("a"), "10", "5", "5"}},
	{"SubmitElectionProof", []string{"mnist-1"}, []string{strings.Repeat("ab", 80)}},
	{"CloseCollection", []string{"mnist-1"}, nil},
	{"RecordAggregate", []string{"mnist-1"}, []string{`["acme","bolt"]`, hash("a")}},
	{"Vote", []string{"mnist-1"}, []string{"true", "", ""}},
	{"RecordPartial", []string{"mnist-1"}, []string{hash("p")}},
	{"CloseRound", []string{"mnist-1"}, []string{hash("m"), `["acme","bolt"]`}},
	{"FailRound", []string{"mnist-1"}, []string{"stalled"}},
	{"GetRound", []string{"mnist-1"}, nil},
	{"ListUpdates", []string{"mnist-1"}, nil},
	{"ListVotes", []string{"mnist-1"}, nil},
	{"GetElectionProofs", []string{"mnist-1"}, nil},
	{"GetRoundHistory", []string{"mnist-1"}, nil},
	{"GetUpdateHistory", []string{"mnist-1"}, []string{"acme"}},
}

func TestEveryRoundArgumentIsAWholeNumberFrom1To100000(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	c.ok(t, c.publisher, "OpenRound", "mnist-1", "1")
	bad := []struct{ round, want string }{
		{"x", `round must be a whole number from 1 to 100000, got "x"`},
		{"-1", `round must be a whole number from 1 to 100000, got "-1"`},
		{"1e3", `round must be a whole number from 1 to 100000, got "1e3"`},
		{"1.0", `round must be a whole number from 1 to 100000, got "1.0"`},
		{"", `round must be a whole number from 1 to 100000, got ""`},
		{" 1", `round must be a whole number from 1 to 100000, got " 1"`},
		{"0", `round must be a whole number from 1 to 100000, got "0"`},
		{"100001", `round must be a whole number from 1 to 100000, got "100001"`},
		{"99999999999", `round must be a whole number from 1 to 100000, got "99999999999"`},
		{"99999999999999999999", `round must be a whole number from 1 to 100000, got "99999999999999999999"`},
		{strings.Repeat("9", 300), "round must be a whole number from 1 to 100000, got 300 characters"},
	}
	for _, tx := range roundTransactions {
		for _, b := range bad {
			args := append(append(append([]string{}, tx.before...), b.round), tx.end...)
			c.refused(t, b.want, c.publisher, tx.fn, args...)
		}
	}
}

func TestAVerdictIsTrueOrFalse(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	c.aggregated(t, 1, ids(c.acme, c.bolt, c.cargo), c.acme, c.bolt)
	for _, tc := range []struct{ valid, want string }{
		{"yes", `valid must be true or false, got "yes"`},
		{"True", `valid must be true or false, got "True"`},
		{"1", `valid must be true or false, got "1"`},
		{"", `valid must be true or false, got ""`},
		{"true ", `valid must be true or false, got "true "`},
		{strings.Repeat("t", 40), `valid must be true or false, got "tttttttttttttttt…"`},
	} {
		c.refused(t, tc.want, c.bolt, "Vote", "mnist-1", "1", tc.valid, "a reason", "")
	}
	c.ok(t, c.bolt, "Vote", "mnist-1", "1", "false", "recomputed sum differs", "")
}

func TestReasonsArePrintableAndBounded(t *testing.T) {
	c := newConsortium(t)
	c.withKey(t, genesis())
	c.aggregated(t, 1, ids(c.acme, c.bolt, c.cargo), c.acme, c.bolt)
	cases := []struct{ reason, vote, fail string }{
		{"bad\nrow", "the reason holds a control character (byte 3 is 0x0a)", "the reason for failing a round holds a control character (byte 3 is 0x0a)"},
		{"\x1b[31mred", "the reason holds a control character (byte 0 is 0x1b)", "the reason for failing a round holds a control character (byte 0 is 0x1b)"},
		{"nul\x00", "the reason holds a control character (byte 3 is 0x00)", "the reason for failing a round holds a control character (byte 3 is 0x00)"},
		{strings.Repeat("r", 513), "the reason must be 1-512 characters, got 513", "the reason for failing a round must be 1-512 characters, got 513"},
	}
	for _, tc := range cases {
		c.refused(t, tc.vote, c.bolt, "Vote", "mnist-1", "1", "false", tc.reason, "")
		c.refused(t, tc.fail, c.publisher, "FailRound", "mnist-1", "1", tc.reason)
	}
	// A tab is text, and 512 bytes are allowed.
	c.ok(t, c.bolt, "Vote", "mnist-1", "1", "false", "column\tdiffers", "")
	c.ok(t, c.publisher, "FailRound", "mnist-1", "1", strings.Repeat("r", 512))
}

func TestParseIntAcceptsOnlyBase10WithinItsBounds(t *testing.T) {
	for _, tc := range []struct {
		text string
		want int
		ok   bool
	}{
		{"1", 1, true}, {"100000", 100_000, true}, {"0", 0, false}, {"100001", 0, false},
		{"0x10", 0, false}, {"1_000", 0, false}, {"٣", 0, false}, {"9223372036854775808", 0, false},
	} {
		got, err := parseRound(tc.text)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseRound(%q) = %d, %v; want %d, ok %v", tc.text, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseRound(f *testing.F) {
	for _, s := range []string{"1", "100000", "x", "-1", "1e3", "99999999999", "+7", "007"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseRound(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "round must be a whole number from 1 to 100000, got ") {
				t.Fatalf("parseRound(%q) refused in other words: %v", s, err)
			}
			return
		}
		if n < 1 || n > maxRounds || len(s) > 20 {
			t.Fatalf("parseRound(%q) = %d", s, n)
		}
		if back, err := parseRound(fmt.Sprint(n)); err != nil || back != n {
			t.Fatalf("parseRound(%d) = %d, %v", n, back, err)
		}
	})
}
