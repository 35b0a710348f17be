package ledger

import (
	"fmt"
	"strconv"
)

// Every transaction takes its arguments as strings and parses them here, so a malformed one is
// refused in words naming the argument ("round must be a whole number from 1 to 100000, got
// "x"") rather than contractapi's "error managing parameter param1. conversion error". Each
// argument also has a size limit, checked before anything is parsed or written.
const (
	// maxRounds bounds a task's rounds, and so every round number.
	maxRounds = 100_000
	// maxGenesisLength bounds a genesis document before it is parsed.
	maxGenesisLength = 64 * 1024
	// maxListLength bounds a JSON list of company names (an aggregate's updates, the partials
	// a close combined) before it is parsed.
	maxListLength = 16 * 1024
	// maxReasonLength bounds a reason (an invalid vote's, a failure's, a failover's).
	maxReasonLength = 512
	// maxCommitteeSize and maxParticipants bound a genesis's lists.
	maxCommitteeSize = 64
	maxParticipants  = 1024
	// maxSeedHex bounds seed0 (hex digits): 16 to 64 bytes of public randomness.
	minSeedHex, maxSeedHex = 32, 128
	// maxCount bounds sizes, sample counts and compute times: far above any real update.
	maxCount = 1 << 40
)

// parseRound parses a round number: a whole number from 1 to maxRounds.
func parseRound(text string) (int, error) {
	return parseInt("round", text, 1, maxRounds)
}

// parseInt parses a base-10 integer argument within [lo, hi].
func parseInt(what, text string, lo, hi int64) (int, error) {
	if len(text) > 20 {
		return 0, fmt.Errorf("%s must be a whole number from %d to %d, got %d characters", what, lo, hi, len(text))
	}
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("%s must be a whole number from %d to %d, got %q", what, lo, hi, text)
	}
	return int(v), nil
}

// parseBool parses a yes/no argument: exactly "true" or "false".
func parseBool(what, text string) (bool, error) {
	switch text {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	if len(text) > 16 {
		text = text[:16] + "…"
	}
	return false, fmt.Errorf("%s must be true or false, got %q", what, text)
}

// checkLength refuses an argument longer than limit bytes, before it is parsed.
func checkLength(what, text string, limit int) error {
	if len(text) > limit {
		return fmt.Errorf("%s is %d bytes; at most %d are accepted", what, len(text), limit)
	}
	return nil
}

// checkReason checks a reason: 1 to maxReasonLength bytes of printable text.
func checkReason(what, reason string) error {
	if reason == "" || len(reason) > maxReasonLength {
		return fmt.Errorf("%s must be 1-%d characters, got %d", what, maxReasonLength, len(reason))
	}
	for i := 0; i < len(reason); i++ {
		if reason[i] < 0x20 && reason[i] != '\t' {
			return fmt.Errorf("%s holds a control character (byte %d is 0x%02x)", what, i, reason[i])
		}
	}
	return nil
}
