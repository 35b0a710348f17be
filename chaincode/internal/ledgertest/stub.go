package ledgertest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// transaction is the chaincode stub of one transaction: it plays both the shim (argument
// checks, composite keys) and the peer's transaction simulator (committed-state reads, a
// buffered write set, Fabric's rules on mixing writes with private or paginated queries).
type transaction struct {
	ledger    *Ledger
	txID      string
	timestamp time.Time
	creator   []byte
	args      [][]byte
	transient map[string][]byte

	// The write set: a nil value is a delete, as in Fabric's KVWrite.
	writes        map[string][]byte
	privateWrites map[string]map[string][]byte
	event         *Event

	// Fabric's transaction simulator refuses writes after private-data range queries or
	// paginated queries, and those queries after a write; these track what has happened.
	writePerformed          bool
	privateQueryPerformed   bool
	paginatedQueryPerformed bool
}

var _ shim.ChaincodeStubInterface = (*transaction)(nil)

// newTransaction is the n-th transaction, stamped skipped later than txIdentity says.
func newTransaction(l *Ledger, n uint64, skipped time.Duration, id *Identity, transient map[string][]byte, function string, args []string) *transaction {
	txID, ts := txIdentity(n)
	ts = ts.Add(skipped)
	argv := make([][]byte, 0, 1+len(args))
	argv = append(argv, []byte(function))
	for _, a := range args {
		argv = append(argv, []byte(a))
	}
	var tmap map[string][]byte
	if transient != nil {
		tmap = make(map[string][]byte, len(transient))
		for k, v := range transient {
			tmap[k] = slices.Clone(v)
		}
	}
	return &transaction{
		ledger:        l,
		txID:          txID,
		timestamp:     ts,
		creator:       id.Serialized(),
		args:          argv,
		transient:     tmap,
		writes:        map[string][]byte{},
		privateWrites: map[string]map[string][]byte{},
	}
}

func notSupported(method string) error {
	return fmt.Errorf("%s is not supported by ledgertest", method)
}

// --- arguments and proposal ---

// GetArgs returns the function name followed by the arguments.
func (t *transaction) GetArgs() [][]byte {
	out := make([][]byte, len(t.args))
	for i, a := range t.args {
		out[i] = slices.Clone(a)
	}
	return out
}

// GetStringArgs returns GetArgs as strings.
func (t *transaction) GetStringArgs() []string {
	out := make([]string, len(t.args))
	for i, a := range t.args {
		out[i] = string(a)
	}
	return out
}

// GetFunctionAndParameters splits the arguments as the shim does.
func (t *transaction) GetFunctionAndParameters() (string, []string) {
	args := t.GetStringArgs()
	if len(args) == 0 {
		return "", []string{}
	}
	return args[0], args[1:]
}

// GetArgsSlice returns the arguments concatenated, as the shim does.
func (t *transaction) GetArgsSlice() ([]byte, error) {
	var out []byte
	for _, a := range t.args {
		out = append(out, a...)
	}
	return out, nil
}

// GetTxID returns the transaction id.
func (t *transaction) GetTxID() string { return t.txID }

// GetChannelID returns "fedledger".
func (t *transaction) GetChannelID() string { return channelID }

// GetCreator returns the submitter's serialized identity.
func (t *transaction) GetCreator() ([]byte, error) { return slices.Clone(t.creator), nil }

// GetTransient returns the transient map given to InvokeWithTransient (nil for Invoke).
func (t *transaction) GetTransient() (map[string][]byte, error) {
	if t.transient == nil {
		return nil, nil
	}
	out := make(map[string][]byte, len(t.transient))
	for k, v := range t.transient {
		out[k] = slices.Clone(v)
	}
	return out, nil
}

// GetBinding is not supported: ledgertest builds no signed proposal.
func (t *transaction) GetBinding() ([]byte, error) { return nil, notSupported("GetBinding") }

// GetDecorations returns an empty map: the test peer adds no decorations.
func (t *transaction) GetDecorations() map[string][]byte { return map[string][]byte{} }

// GetSignedProposal is not supported: ledgertest builds no signed proposal.
func (t *transaction) GetSignedProposal() (*peer.SignedProposal, error) {
	return nil, notSupported("GetSignedProposal")
}

// GetTxTimestamp returns the deterministic transaction timestamp.
func (t *transaction) GetTxTimestamp() (*timestamppb.Timestamp, error) {
	return timestamppb.New(t.timestamp), nil
}

// SetEvent sets the transaction's event, replacing any set before (one event per tx).
func (t *transaction) SetEvent(name string, payload []byte) error {
	if name == "" {
		return errors.New("event name can not be empty string")
	}
	t.event = &Event{Name: name, Payload: slices.Clone(payload)}
	return nil
}

// InvokeChaincode is not supported: the test channel has a single chaincode.
func (t *transaction) InvokeChaincode(chaincodeName string, _ [][]byte, _ string) *peer.Response {
	return &peer.Response{
		Status:  shim.ERROR,
		Message: notSupported("InvokeChaincode (of " + chaincodeName + ")").Error(),
	}
}

// StartWriteBatch is a no-op: every write is already buffered until commit.
func (t *transaction) StartWriteBatch() {}

// FinishWriteBatch is a no-op: every write is already buffered until commit.
func (t *transaction) FinishWriteBatch() error { return nil }

// --- public state ---

// GetState returns the committed value of key (nil if absent), never this transaction's write.
func (t *transaction) GetState(key string) ([]byte, error) {
	return slices.Clone(t.ledger.state[key]), nil
}

// GetMultipleStates returns GetState of each key.
func (t *transaction) GetMultipleStates(keys ...string) ([][]byte, error) {
	return readMany(t.ledger.state, keys), nil
}

// PutState buffers a write of key. An empty value is a delete, as on a peer (the empty
// bytes reach the simulator as nil).
func (t *transaction) PutState(key string, value []byte) error {
	if key == "" {
		return errors.New("key must not be an empty string")
	}
	if err := t.beforeWrite(); err != nil {
		return err
	}
	t.writes[key] = slices.Clone(nilIfEmpty(value))
	return nil
}

// DelState buffers a delete of key.
func (t *transaction) DelState(key string) error {
	if err := t.beforeWrite(); err != nil {
		return err
	}
	t.writes[key] = nil
	return nil
}

// SetStateValidationParameter is not supported (no state-based endorsement in ledgertest).
func (t *transaction) SetStateValidationParameter(string, []byte) error {
	return notSupported("SetStateValidationParameter")
}

// GetStateValidationParameter is not supported (no state-based endorsement in ledgertest).
func (t *transaction) GetStateValidationParameter(string) ([]byte, error) {
	return nil, notSupported("GetStateValidationParameter")
}

// GetStateByRange iterates committed simple keys in [startKey, endKey) in byte order; an
// empty endKey is unbounded. As in the shim, an empty startKey becomes "\x01", so composite
// keys (which start with "\x00") never appear.
func (t *transaction) GetStateByRange(startKey, endKey string) (shim.StateQueryIteratorInterface, error) {
	startKey, err := simpleRange(startKey, endKey)
	if err != nil {
		return nil, err
	}
	return newIterator(scan(t.ledger.state, startKey, endKey)), nil
}

// GetStateByRangeWithPagination is GetStateByRange one page at a time (read-only
// transactions only, as on Fabric).
func (t *transaction) GetStateByRangeWithPagination(startKey, endKey string, pageSize int32,
	bookmark string) (shim.StateQueryIteratorInterface, *peer.QueryResponseMetadata, error) {
	startKey, err := simpleRange(startKey, endKey)
	if err != nil {
		return nil, nil, err
	}
	return t.page(startKey, endKey, pageSize, bookmark)
}

// GetStateByPartialCompositeKey iterates committed composite keys of objectType whose leading
// attributes are keys, in byte order.
func (t *transaction) GetStateByPartialCompositeKey(objectType string, keys []string) (shim.StateQueryIteratorInterface, error) {
	start, end, err := partialCompositeRange(objectType, keys)
	if err != nil {
		return nil, err
	}
	return newIterator(scan(t.ledger.state, start, end)), nil
}

// GetStateByPartialCompositeKeyWithPagination is GetStateByPartialCompositeKey one page at a
// time (read-only transactions only, as on Fabric).
func (t *transaction) GetStateByPartialCompositeKeyWithPagination(objectType string, keys []string,
	pageSize int32, bookmark string) (shim.StateQueryIteratorInterface, *peer.QueryResponseMetadata, error) {
	start, end, err := partialCompositeRange(objectType, keys)
	if err != nil {
		return nil, nil, err
	}
	return t.page(start, end, pageSize, bookmark)
}

// GetAllStatesCompositeKeyWithPagination pages through every committed composite key.
func (t *transaction) GetAllStatesCompositeKeyWithPagination(pageSize int32,
	bookmark string) (shim.StateQueryIteratorInterface, *peer.QueryResponseMetadata, error) {
	return t.page(compositeKeyNamespace, compositeKeyNamespace+string(maxUnicodeRune), pageSize, bookmark)
}

// CreateCompositeKey is the shim's own CreateCompositeKey.
func (t *transaction) CreateCompositeKey(objectType string, attributes []string) (string, error) {
	return shim.CreateCompositeKey(objectType, attributes)
}

// SplitCompositeKey splits a composite key as the shim does.
func (t *transaction) SplitCompositeKey(compositeKey string) (string, []string, error) {
	return splitCompositeKey(compositeKey)
}

// GetQueryResult is not supported: rich queries need CouchDB, and a LevelDB peer refuses them too.
func (t *transaction) GetQueryResult(string) (shim.StateQueryIteratorInterface, error) {
	return nil, notSupported("GetQueryResult (rich queries need CouchDB)")
}

// GetQueryResultWithPagination is not supported: rich queries need CouchDB.
func (t *transaction) GetQueryResultWithPagination(string, int32,
	string) (shim.StateQueryIteratorInterface, *peer.QueryResponseMetadata, error) {
	return nil, nil, notSupported("GetQueryResultWithPagination (rich queries need CouchDB)")
}

// GetHistoryForKey iterates the committed writes of key newest first, as Fabric v2 does.
func (t *transaction) GetHistoryForKey(key string) (shim.HistoryQueryIteratorInterface, error) {
	entries := t.ledger.history[key]
	mods := make([]*queryresult.KeyModification, 0, len(entries))
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		mods = append(mods, &queryresult.KeyModification{
			TxId:      e.TxID,
			Value:     slices.Clone(e.Value),
			Timestamp: timestamppb.New(e.Timestamp),
			IsDelete:  e.IsDelete,
		})
	}
	return newIterator(mods), nil
}

// --- private data ---

// GetPrivateData returns the committed value of key in collection (nil if absent).
func (t *transaction) GetPrivateData(collection, key string) ([]byte, error) {
	if err := checkCollection(collection); err != nil {
		return nil, err
	}
	return slices.Clone(t.ledger.private[collection][key]), nil
}

// GetMultiplePrivateData returns GetPrivateData of each key.
func (t *transaction) GetMultiplePrivateData(collection string, keys ...string) ([][]byte, error) {
	if err := checkCollection(collection); err != nil {
		return nil, err
	}
	return readMany(t.ledger.private[collection], keys), nil
}

// GetPrivateDataHash returns the SHA-256 of the committed value of key (nil if absent).
func (t *transaction) GetPrivateDataHash(collection, key string) ([]byte, error) {
	if err := checkCollection(collection); err != nil {
		return nil, err
	}
	value, ok := t.ledger.private[collection][key]
	if !ok {
		return nil, nil
	}
	sum := sha256.Sum256(value)
	return sum[:], nil
}

// PutPrivateData buffers a write of key in collection (an empty value is a delete).
func (t *transaction) PutPrivateData(collection, key string, value []byte) error {
	if err := checkCollection(collection); err != nil {
		return err
	}
	if key == "" {
		return errors.New("key must not be an empty string")
	}
	return t.writePrivate(collection, key, slices.Clone(nilIfEmpty(value)))
}

// DelPrivateData buffers a delete of key in collection.
func (t *transaction) DelPrivateData(collection, key string) error {
	if err := checkCollection(collection); err != nil {
		return err
	}
	return t.writePrivate(collection, key, nil)
}

// PurgePrivateData buffers a delete of key in collection; ledgertest keeps no private
// history, so a purge and a delete are the same here.
func (t *transaction) PurgePrivateData(collection, key string) error {
	if err := checkCollection(collection); err != nil {
		return err
	}
	return t.writePrivate(collection, key, nil)
}

// SetPrivateDataValidationParameter is not supported (no state-based endorsement in ledgertest).
func (t *transaction) SetPrivateDataValidationParameter(string, string, []byte) error {
	return notSupported("SetPrivateDataValidationParameter")
}

// GetPrivateDataValidationParameter is not supported (no state-based endorsement in ledgertest).
func (t *transaction) GetPrivateDataValidationParameter(string, string) ([]byte, error) {
	return nil, notSupported("GetPrivateDataValidationParameter")
}

// GetPrivateDataByRange is GetStateByRange on collection; as on Fabric it is only allowed
// before any write, and forbids writes after it.
func (t *transaction) GetPrivateDataByRange(collection, startKey, endKey string) (shim.StateQueryIteratorInterface, error) {
	if err := checkCollection(collection); err != nil {
		return nil, err
	}
	startKey, err := simpleRange(startKey, endKey)
	if err != nil {
		return nil, err
	}
	if err := t.beforePrivateQuery(); err != nil {
		return nil, err
	}
	return newIterator(scan(t.ledger.private[collection], startKey, endKey)), nil
}

// GetPrivateDataByPartialCompositeKey is GetStateByPartialCompositeKey on collection, under
// the same read-only rule as GetPrivateDataByRange.
func (t *transaction) GetPrivateDataByPartialCompositeKey(collection, objectType string,
	keys []string) (shim.StateQueryIteratorInterface, error) {
	if err := checkCollection(collection); err != nil {
		return nil, err
	}
	start, end, err := partialCompositeRange(objectType, keys)
	if err != nil {
		return nil, err
	}
	if err := t.beforePrivateQuery(); err != nil {
		return nil, err
	}
	return newIterator(scan(t.ledger.private[collection], start, end)), nil
}

// GetPrivateDataQueryResult is not supported: rich queries need CouchDB.
func (t *transaction) GetPrivateDataQueryResult(collection, _ string) (shim.StateQueryIteratorInterface, error) {
	if err := checkCollection(collection); err != nil {
		return nil, err
	}
	return nil, notSupported("GetPrivateDataQueryResult (rich queries need CouchDB)")
}

// --- Fabric's simulator rules and helpers ---

func (t *transaction) writePrivate(collection, key string, value []byte) error {
	if err := t.beforeWrite(); err != nil {
		return err
	}
	writes := t.privateWrites[collection]
	if writes == nil {
		writes = map[string][]byte{}
		t.privateWrites[collection] = writes
	}
	writes[key] = value
	return nil
}

// beforeWrite applies the peer's write precondition (txSimulator.checkWritePrecondition).
func (t *transaction) beforeWrite() error {
	if t.privateQueryPerformed {
		return fmt.Errorf("txid [%s]: unsupported transaction. Transaction has already performed queries on pvt data. Writes are not allowed", t.txID)
	}
	if t.paginatedQueryPerformed {
		return fmt.Errorf("txid [%s]: unsupported transaction. Transaction has already performed a paginated query. Writes are not allowed", t.txID)
	}
	t.writePerformed = true
	return nil
}

func (t *transaction) beforePrivateQuery() error {
	if t.writePerformed {
		return fmt.Errorf("txid [%s]: unsupported transaction. Queries on pvt data is supported only in a read-only transaction", t.txID)
	}
	t.privateQueryPerformed = true
	return nil
}

// page serves a paginated range query the way a LevelDB peer does: a bookmark replaces the
// start key, pageSize <= 0 means no page limit, and the returned bookmark is the next key
// (empty when the range is exhausted). Page size 0 with no bookmark is a plain range query.
func (t *transaction) page(start, end string, pageSize int32,
	bookmark string) (shim.StateQueryIteratorInterface, *peer.QueryResponseMetadata, error) {
	if pageSize != 0 || bookmark != "" {
		if t.writePerformed {
			return nil, nil, fmt.Errorf("txid [%s]: unsupported transaction. Paginated queries are supported only in a read-only transaction", t.txID)
		}
		t.paginatedQueryPerformed = true
		if bookmark != "" {
			start = bookmark
		}
	}
	results := scan(t.ledger.state, start, end)
	next := ""
	if pageSize > 0 && len(results) > int(pageSize) {
		next = results[pageSize].GetKey()
		results = results[:pageSize]
	}
	meta := &peer.QueryResponseMetadata{FetchedRecordsCount: int32(len(results)), Bookmark: next}
	return newIterator(results), meta, nil
}

// scan returns the entries of m with start <= key < end (end "" is unbounded) in byte order.
func scan(m map[string][]byte, start, end string) []*queryresult.KV {
	var keys []string
	for k := range maps.Keys(m) {
		if k >= start && (end == "" || k < end) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := make([]*queryresult.KV, len(keys))
	for i, k := range keys {
		out[i] = &queryresult.KV{Namespace: chaincodeName, Key: k, Value: slices.Clone(m[k])}
	}
	return out
}

func readMany(m map[string][]byte, keys []string) [][]byte {
	if len(keys) == 0 {
		return nil
	}
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = slices.Clone(m[k])
	}
	return out
}

func checkCollection(collection string) error {
	if collection == "" {
		return errors.New("collection must not be an empty string")
	}
	return nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
