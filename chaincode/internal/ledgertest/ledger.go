// Package ledgertest is an in-memory Fabric peer for unit-testing FedLedger contracts: it drives
// a real contractapi chaincode (argument parsing, metadata validation and the cid library all
// run for real) with Fabric's transaction semantics.
//
// Each Invoke is one transaction. As on a peer, the chaincode reads committed state only (it
// never sees its own writes), writes are buffered in a write set, and the write set, history
// entries and chaincode event are committed together only if the chaincode's response status
// is below 400 (shim.ERRORTHRESHOLD; contractapi answers 200 or 500); otherwise nothing changes.
// Transaction ids and timestamps are deterministic so tests can pin them: the ledger's clock
// moves one second per transaction, and Advance moves it on further (to let a deadline pass).
package ledgertest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// channelID is the channel every transaction runs on.
const channelID = "fedledger"

// chaincodeName is the namespace reported in range query results, as a peer reports the
// chaincode's name there.
const chaincodeName = "fedledger"

// genesis is the timestamp of the first transaction; each later one is one second on.
var genesis = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Event is a chaincode event set by a committed transaction.
type Event struct {
	Name    string
	Payload []byte
}

// Result is the outcome of one transaction.
type Result struct {
	Status  int32 // shim.OK (200) or shim.ERROR (500)
	Payload []byte
	Message string // the chaincode's error message, verbatim
	TxID    string
	Event   *Event // the event the transaction set (nil if none); only for committed transactions
}

// HistoryEntry is one committed write of a key.
type HistoryEntry struct {
	TxID      string
	Timestamp time.Time
	Value     []byte
	IsDelete  bool
}

// Ledger is an in-memory channel with one chaincode installed. It is safe for concurrent use;
// transactions are executed and committed one at a time.
type Ledger struct {
	tb        testing.TB
	chaincode shim.Chaincode

	mu      sync.Mutex
	txCount uint64
	// skipped is how far Advance has moved the clock past one second per transaction.
	skipped time.Duration
	state   map[string][]byte
	private map[string]map[string][]byte // collection -> key -> value
	history map[string][]HistoryEntry    // public keys only: Fabric keeps no private data history
	events  []Event
}

// NewLedger returns an empty ledger running contractapi.NewChaincode(contracts...). It fails
// the test if contractapi rejects the contracts.
func NewLedger(tb testing.TB, contracts ...contractapi.ContractInterface) *Ledger {
	tb.Helper()
	cc, err := contractapi.NewChaincode(contracts...)
	if err != nil {
		tb.Fatalf("ledgertest: contractapi rejected the contracts: %v", err)
	}
	return &Ledger{
		tb:        tb,
		chaincode: cc,
		state:     map[string][]byte{},
		private:   map[string]map[string][]byte{},
		history:   map[string][]HistoryEntry{},
	}
}

// Invoke submits one transaction calling function (as contractapi expects it, e.g.
// "RegisterCompany" or "Contract:Function") with args, signed by id.
func (l *Ledger) Invoke(id *Identity, function string, args ...string) Result {
	l.tb.Helper()
	return l.InvokeWithTransient(id, nil, function, args...)
}

// InvokeWithTransient is Invoke with a transient map, which the chaincode reads with
// GetTransient and which, as on Fabric, never reaches the ledger.
func (l *Ledger) InvokeWithTransient(id *Identity, transient map[string][]byte, function string, args ...string) Result {
	l.tb.Helper()
	if id == nil {
		l.tb.Fatalf("ledgertest: %s needs an identity: every Fabric proposal is signed", function)
	}
	l.mu.Lock()
	defer l.mu.Unlock()

	l.txCount++
	tx := newTransaction(l, l.txCount, l.skipped, id, transient, function, args)
	resp := l.chaincode.Invoke(tx)

	result := Result{
		Status:  resp.GetStatus(),
		Payload: resp.GetPayload(),
		Message: resp.GetMessage(),
		TxID:    tx.txID,
	}
	// The endorser rejects any response at or above the threshold: no endorsement, no commit.
	if result.Status >= shim.ERRORTHRESHOLD {
		return result
	}
	l.commit(tx)
	if tx.event != nil {
		ev := cloneEvent(*tx.event)
		result.Event = &ev
	}
	return result
}

// Advance moves the ledger's clock d on: every later transaction is stamped d later than it
// would have been. A test lets ledger time pass this way (a leader's window, a deadline) without
// running transactions. d must not be negative: a peer's clock never runs back.
func (l *Ledger) Advance(d time.Duration) {
	l.tb.Helper()
	if d < 0 {
		l.tb.Fatalf("ledgertest: Advance(%v): the ledger's clock never runs back", d)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.skipped += d
}

// Now returns the timestamp the next transaction will carry.
func (l *Ledger) Now() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ts := txIdentity(l.txCount + 1)
	return ts.Add(l.skipped)
}

// State returns a copy of the committed public world state, composite keys included.
func (l *Ledger) State() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return stringMap(l.state)
}

// PrivateState returns a copy of the committed private data of collection (empty if none).
func (l *Ledger) PrivateState(collection string) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return stringMap(l.private[collection])
}

// History returns the committed history of a public key, oldest first. (The chaincode's
// GetHistoryForKey returns newest first, as Fabric v2 does.)
func (l *Ledger) History(key string) []HistoryEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]HistoryEntry, len(l.history[key]))
	for i, e := range l.history[key] {
		e.Value = slices.Clone(e.Value)
		out[i] = e
	}
	return out
}

// Events returns the events of committed transactions, in commit order.
func (l *Ledger) Events() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Event, len(l.events))
	for i, e := range l.events {
		out[i] = cloneEvent(e)
	}
	return out
}

// commit applies a transaction's write set, history and event. The caller holds l.mu.
func (l *Ledger) commit(tx *transaction) {
	for _, key := range slices.Sorted(maps.Keys(tx.writes)) {
		value := tx.writes[key]
		if value == nil {
			delete(l.state, key)
		} else {
			l.state[key] = value
		}
		l.history[key] = append(l.history[key], HistoryEntry{
			TxID:      tx.txID,
			Timestamp: tx.timestamp,
			Value:     value,
			IsDelete:  value == nil,
		})
	}
	for collection, writes := range tx.privateWrites {
		data := l.private[collection]
		if data == nil {
			data = map[string][]byte{}
			l.private[collection] = data
		}
		for key, value := range writes {
			if value == nil {
				delete(data, key)
			} else {
				data[key] = value
			}
		}
	}
	if tx.event != nil {
		l.events = append(l.events, cloneEvent(*tx.event))
	}
}

// txIdentity returns the deterministic id and timestamp of the n-th transaction (n >= 1):
// the hex SHA-256 of n as a big-endian uint64 (64 hex digits, like a real Fabric tx id), and
// genesis + (n-1) seconds.
func txIdentity(n uint64) (string, time.Time) {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], n)
	sum := sha256.Sum256(buf[:])
	return hex.EncodeToString(sum[:]), genesis.Add(time.Duration(n-1) * time.Second)
}

func stringMap(m map[string][]byte) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

func cloneEvent(e Event) Event {
	return Event{Name: e.Name, Payload: slices.Clone(e.Payload)}
}
