package ledgertest

import (
	"fmt"
	"unicode/utf8"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
)

// The shim's key layout: composite keys live under a "\x00" namespace, their components are
// separated by U+0000, and U+10FFFF closes a partial-key range.
const (
	compositeKeyNamespace = "\x00"
	compositeKeySeparator = 0x00
	maxUnicodeRune        = utf8.MaxRune
	// emptyKeySubstitute replaces an empty range start key so that a simple-key range begins
	// after the composite key namespace.
	emptyKeySubstitute = "\x01"
)

// simpleRange checks a simple-key range as the shim does and returns its effective start key.
func simpleRange(startKey, endKey string) (string, error) {
	if startKey == "" {
		startKey = emptyKeySubstitute
	}
	for _, key := range []string{startKey, endKey} {
		if len(key) > 0 && key[0] == compositeKeyNamespace[0] {
			return "", fmt.Errorf("first character of the key [%s] contains a null character which is not allowed", key)
		}
	}
	return startKey, nil
}

// partialCompositeRange returns the key range holding every composite key of objectType whose
// leading attributes are attributes, as the shim computes it.
func partialCompositeRange(objectType string, attributes []string) (string, string, error) {
	prefix, err := shim.CreateCompositeKey(objectType, attributes)
	if err != nil {
		return "", "", err
	}
	return prefix, prefix + string(rune(maxUnicodeRune)), nil
}

// splitCompositeKey returns the object type and attributes of a composite key, exactly as the
// shim splits it. Where the shim would panic (no separator after the first byte), it returns
// an error instead.
func splitCompositeKey(compositeKey string) (string, []string, error) {
	var components []string
	start := 1
	for i := 1; i < len(compositeKey); i++ {
		if compositeKey[i] == compositeKeySeparator {
			components = append(components, compositeKey[start:i])
			start = i + 1
		}
	}
	if len(components) == 0 {
		return "", nil, fmt.Errorf("ledgertest: %q is not a composite key", compositeKey)
	}
	return components[0], components[1:], nil
}
