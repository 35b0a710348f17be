package ledgertest_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/pkg/cid"
	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"

	"fedledger/chaincode/internal/ledgertest"
)

// probe is a tiny contract that exposes what the stub shows a chaincode.
type probe struct {
	contractapi.Contract
}

// Put writes key=value.
func (probe) Put(ctx contractapi.TransactionContextInterface, key, value string) error {
	return ctx.GetStub().PutState(key, []byte(value))
}

// Get reads key ("" if absent).
func (probe) Get(ctx contractapi.TransactionContextInterface, key string) (string, error) {
	v, err := ctx.GetStub().GetState(key)
	return string(v), err
}

// Delete deletes key.
func (probe) Delete(ctx contractapi.TransactionContextInterface, key string) error {
	return ctx.GetStub().DelState(key)
}

// PutThenGet writes key=value and returns what a read of key then sees ("<nil>" if absent).
func (probe) PutThenGet(ctx contractapi.TransactionContextInterface, key, value string) (string, error) {
	if err := ctx.GetStub().PutState(key, []byte(value)); err != nil {
		return "", err
	}
	v, err := ctx.GetStub().GetState(key)
	if v == nil {
		return "<nil>", err
	}
	return string(v), err
}

// PutAndFail writes public and private data, sets an event, then fails.
func (probe) PutAndFail(ctx contractapi.TransactionContextInterface, key, value string) error {
	stub := ctx.GetStub()
	if err := stub.PutState(key, []byte(value)); err != nil {
		return err
	}
	if err := stub.PutPrivateData("secrets", key, []byte(value)); err != nil {
		return err
	}
	if err := stub.SetEvent("Doomed", []byte(value)); err != nil {
		return err
	}
	return fmt.Errorf("company %s is not registered", key)
}

// PutComposite writes the composite key (objectType, attrs...) = value.
func (probe) PutComposite(ctx contractapi.TransactionContextInterface, objectType string, attrs []string, value string) error {
	key, err := ctx.GetStub().CreateCompositeKey(objectType, attrs)
	if err != nil {
		return err
	}
	return ctx.GetStub().PutState(key, []byte(value))
}

// Range lists the keys GetStateByRange returns.
func (probe) Range(ctx contractapi.TransactionContextInterface, start, end string) ([]string, error) {
	it, err := ctx.GetStub().GetStateByRange(start, end)
	if err != nil {
		return nil, err
	}
	return drainKeys(it)
}

// Partial lists GetStateByPartialCompositeKey results as "type/attr/attr=value".
func (probe) Partial(ctx contractapi.TransactionContextInterface, objectType string, attrs []string) ([]string, error) {
	stub := ctx.GetStub()
	it, err := stub.GetStateByPartialCompositeKey(objectType, attrs)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := []string{}
	for it.HasNext() {
		kv, err := it.Next()
		if err != nil {
			return nil, err
		}
		typ, parts, err := stub.SplitCompositeKey(kv.GetKey())
		if err != nil {
			return nil, err
		}
		out = append(out, strings.Join(append([]string{typ}, parts...), "/")+"="+string(kv.GetValue()))
	}
	return out, nil
}

// Page lists one page of GetStateByRangeWithPagination as keys followed by "bookmark=<b>".
func (probe) Page(ctx contractapi.TransactionContextInterface, start, end string, size int, bookmark string) ([]string, error) {
	it, meta, err := ctx.GetStub().GetStateByRangeWithPagination(start, end, int32(size), bookmark)
	if err != nil {
		return nil, err
	}
	keys, err := drainKeys(it)
	if err != nil {
		return nil, err
	}
	return append(keys, fmt.Sprintf("bookmark=%s", meta.GetBookmark())), nil
}

// WriteThenPrivateRange writes, then runs a private-data range query (Fabric forbids this).
func (probe) WriteThenPrivateRange(ctx contractapi.TransactionContextInterface) error {
	if err := ctx.GetStub().PutState("k", []byte("v")); err != nil {
		return err
	}
	_, err := ctx.GetStub().GetPrivateDataByRange("secrets", "", "")
	return err
}

// History returns GetHistoryForKey as "txid|value|deleted" lines, as the iterator yields them.
func (probe) History(ctx contractapi.TransactionContextInterface, key string) ([]string, error) {
	it, err := ctx.GetStub().GetHistoryForKey(key)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := []string{}
	for it.HasNext() {
		m, err := it.Next()
		if err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprintf("%s|%s|%t|%s", m.GetTxId(), m.GetValue(), m.GetIsDelete(),
			m.GetTimestamp().AsTime().Format(time.RFC3339)))
	}
	return out, nil
}

// Emit sets two events; Fabric keeps only the last.
func (probe) Emit(ctx contractapi.TransactionContextInterface, name, payload string) error {
	if err := ctx.GetStub().SetEvent("Overwritten", nil); err != nil {
		return err
	}
	return ctx.GetStub().SetEvent(name, []byte(payload))
}

// whoami is what the cid library reports about the submitter.
type whoami struct {
	MSPID       string `json:"msp_id"`
	Role        string `json:"role"`
	RoleFound   bool   `json:"role_found"`
	Admin       bool   `json:"admin"`
	Client      bool   `json:"client"`
	CommonName  string `json:"common_name"`
	Fingerprint string `json:"fingerprint"`
}

// WhoAmI reports the submitter through both contractapi's client identity and the cid package.
func (probe) WhoAmI(ctx contractapi.TransactionContextInterface) (string, error) {
	ci := ctx.GetClientIdentity()
	mspID, err := ci.GetMSPID()
	if err != nil {
		return "", err
	}
	role, found, err := cid.GetAttributeValue(ctx.GetStub(), "fedledger.role")
	if err != nil {
		return "", err
	}
	admin, err := cid.HasOUValue(ctx.GetStub(), "admin")
	if err != nil {
		return "", err
	}
	client, err := cid.HasOUValue(ctx.GetStub(), "client")
	if err != nil {
		return "", err
	}
	cert, err := ci.GetX509Certificate()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(cert.Raw)
	b, err := json.Marshal(whoami{mspID, role, found, admin, client, cert.Subject.CommonName, hex.EncodeToString(sum[:])})
	return string(b), err
}

// StorePrivate writes the transient "value" to key in collection.
func (probe) StorePrivate(ctx contractapi.TransactionContextInterface, collection, key string) error {
	transient, err := ctx.GetStub().GetTransient()
	if err != nil {
		return err
	}
	value, ok := transient["value"]
	if !ok {
		return errors.New("transient field value is missing")
	}
	return ctx.GetStub().PutPrivateData(collection, key, value)
}

// ReadPrivate returns the committed private value and its hash as "value|hexhash".
func (probe) ReadPrivate(ctx contractapi.TransactionContextInterface, collection, key string) (string, error) {
	v, err := ctx.GetStub().GetPrivateData(collection, key)
	if err != nil {
		return "", err
	}
	h, err := ctx.GetStub().GetPrivateDataHash(collection, key)
	if err != nil {
		return "", err
	}
	return string(v) + "|" + hex.EncodeToString(h), nil
}

// Transient returns the transient map's keys and values as "k=v" lines, sorted.
func (probe) Transient(ctx contractapi.TransactionContextInterface) ([]string, error) {
	transient, err := ctx.GetStub().GetTransient()
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, k := range slices.Sorted(maps.Keys(transient)) {
		out = append(out, k+"="+string(transient[k]))
	}
	return out, nil
}

// TxInfo returns "txid|timestamp|channel" as the stub reports them.
func (probe) TxInfo(ctx contractapi.TransactionContextInterface) (string, error) {
	ts, err := ctx.GetStub().GetTxTimestamp()
	if err != nil {
		return "", err
	}
	return strings.Join([]string{ctx.GetStub().GetTxID(), ts.AsTime().Format(time.RFC3339), ctx.GetStub().GetChannelID()}, "|"), nil
}

func drainKeys(it shim.StateQueryIteratorInterface) ([]string, error) {
	defer it.Close()
	out := []string{}
	for it.HasNext() {
		kv, err := it.Next()
		if err != nil {
			return nil, err
		}
		out = append(out, kv.GetKey())
	}
	return out, nil
}

// --- helpers ---

func newLedger(t *testing.T) (*ledgertest.Ledger, *ledgertest.Identity) {
	t.Helper()
	return ledgertest.NewLedger(t, new(probe)), ledgertest.NewIdentity(t, "Org1MSP", "alice", "participant")
}

func mustOK(t *testing.T, r ledgertest.Result) ledgertest.Result {
	t.Helper()
	if r.Status != shim.OK {
		t.Fatalf("transaction %s failed with status %d: %s", r.TxID, r.Status, r.Message)
	}
	return r
}

func decodeStrings(t *testing.T, r ledgertest.Result) []string {
	t.Helper()
	mustOK(t, r)
	var out []string
	if err := json.Unmarshal(r.Payload, &out); err != nil {
		t.Fatalf("payload %q is not a JSON string list: %v", r.Payload, err)
	}
	return out
}

// --- tests ---

func TestAReadDoesNotSeeItsOwnTransactionsWrite(t *testing.T) {
	l, alice := newLedger(t)

	fresh := mustOK(t, l.Invoke(alice, "PutThenGet", "company", "v1"))
	updated := mustOK(t, l.Invoke(alice, "PutThenGet", "company", "v2"))

	if got := string(fresh.Payload); got != "<nil>" {
		t.Errorf("read after own write of a new key = %q, want <nil> (committed state only)", got)
	}
	if got := string(updated.Payload); got != "v1" {
		t.Errorf("read after own overwrite = %q, want the committed v1", got)
	}
	if got := l.State()["company"]; got != "v2" {
		t.Errorf("committed value = %q, want v2", got)
	}
}

func TestCommittedWritesAreVisibleToTheNextTransaction(t *testing.T) {
	l, alice := newLedger(t)

	mustOK(t, l.Invoke(alice, "Put", "company", "acme"))
	got := mustOK(t, l.Invoke(alice, "Get", "company"))

	if string(got.Payload) != "acme" {
		t.Errorf("next transaction read %q, want acme", got.Payload)
	}
}

func TestAFailedTransactionLeavesTheLedgerUnchanged(t *testing.T) {
	l, alice := newLedger(t)
	mustOK(t, l.Invoke(alice, "Put", "company", "before"))
	mustOK(t, l.Invoke(alice, "Emit", "Registered", "acme"))
	state, private := l.State(), l.PrivateState("secrets")
	history, events := l.History("company"), l.Events()

	r := l.Invoke(alice, "PutAndFail", "company", "after")

	if r.Status != shim.ERROR {
		t.Fatalf("status = %d, want %d", r.Status, shim.ERROR)
	}
	if r.Message != "company company is not registered" {
		t.Errorf("message = %q, want the chaincode's error verbatim", r.Message)
	}
	if r.Event != nil {
		t.Errorf("a failed transaction reported event %+v", r.Event)
	}
	if r.TxID == "" {
		t.Error("a failed transaction has no tx id")
	}
	if got := l.State(); !maps.Equal(got, state) {
		t.Errorf("state changed: %v, want %v", got, state)
	}
	if got := l.PrivateState("secrets"); !maps.Equal(got, private) {
		t.Errorf("private state changed: %v, want %v", got, private)
	}
	if got := l.History("company"); len(got) != len(history) {
		t.Errorf("history grew to %d entries, want %d", len(got), len(history))
	}
	if got := l.Events(); len(got) != len(events) {
		t.Errorf("events grew to %d, want %d", len(got), len(events))
	}
}

func TestHistoryAccumulatesCommittedWritesOnly(t *testing.T) {
	l, alice := newLedger(t)
	put1 := mustOK(t, l.Invoke(alice, "Put", "company", "v1"))
	put2 := mustOK(t, l.Invoke(alice, "Put", "company", "v2"))
	l.Invoke(alice, "PutAndFail", "company", "lost")
	del := mustOK(t, l.Invoke(alice, "Delete", "company"))
	emptyPut := mustOK(t, l.Invoke(alice, "Put", "company", "")) // an empty value is a delete on Fabric

	history := l.History("company")
	seen := decodeStrings(t, l.Invoke(alice, "History", "company"))

	want := []ledgertest.HistoryEntry{
		{TxID: put1.TxID, Value: []byte("v1")},
		{TxID: put2.TxID, Value: []byte("v2")},
		{TxID: del.TxID, IsDelete: true},
		{TxID: emptyPut.TxID, IsDelete: true},
	}
	if len(history) != len(want) {
		t.Fatalf("history has %d entries, want %d: %+v", len(history), len(want), history)
	}
	for i, w := range want {
		h := history[i]
		if h.TxID != w.TxID || string(h.Value) != string(w.Value) || h.IsDelete != w.IsDelete {
			t.Errorf("history[%d] = %+v, want %+v", i, h, w)
		}
		if i > 0 && !h.Timestamp.After(history[i-1].Timestamp) {
			t.Errorf("history[%d] timestamp %v is not after %v", i, h.Timestamp, history[i-1].Timestamp)
		}
	}
	// The chaincode sees the same entries newest first, as Fabric v2 returns them.
	if len(seen) != len(want) {
		t.Fatalf("chaincode saw %d history entries, want %d: %v", len(seen), len(want), seen)
	}
	for i, line := range seen {
		h := history[len(history)-1-i]
		wantLine := fmt.Sprintf("%s|%s|%t|%s", h.TxID, h.Value, h.IsDelete, h.Timestamp.Format(time.RFC3339))
		if line != wantLine {
			t.Errorf("chaincode history[%d] = %q, want %q", i, line, wantLine)
		}
	}
	if _, ok := l.State()["company"]; ok {
		t.Error("deleted key is still in the state")
	}
}

func TestRangeQueriesAreSortedAndSkipCompositeKeys(t *testing.T) {
	l, alice := newLedger(t)
	for _, k := range []string{"charlie", "alpha", "bravo", "delta"} {
		mustOK(t, l.Invoke(alice, "Put", k, "v-"+k))
	}
	mustOK(t, l.Invoke(alice, "PutComposite", "update", `["round2","acme"]`, "u3"))
	mustOK(t, l.Invoke(alice, "PutComposite", "update", `["round1","zeta"]`, "u2"))
	mustOK(t, l.Invoke(alice, "PutComposite", "update", `["round1","acme"]`, "u1"))
	mustOK(t, l.Invoke(alice, "PutComposite", "updates", `["round1","acme"]`, "other type"))

	all := decodeStrings(t, l.Invoke(alice, "Range", "", ""))
	bounded := decodeStrings(t, l.Invoke(alice, "Range", "alpha", "charlie"))
	round1 := decodeStrings(t, l.Invoke(alice, "Partial", "update", `["round1"]`))
	allUpdates := decodeStrings(t, l.Invoke(alice, "Partial", "update", `[]`))
	badStart := l.Invoke(alice, "Range", "\x00update", "")
	badAttr := l.Invoke(alice, "PutComposite", "update", `["a\u0000b"]`, "x")

	if want := []string{"alpha", "bravo", "charlie", "delta"}; !slices.Equal(all, want) {
		t.Errorf("full range = %q, want %q (no composite keys)", all, want)
	}
	if want := []string{"alpha", "bravo"}; !slices.Equal(bounded, want) {
		t.Errorf("[alpha, charlie) = %q, want %q", bounded, want)
	}
	if want := []string{"update/round1/acme=u1", "update/round1/zeta=u2"}; !slices.Equal(round1, want) {
		t.Errorf("partial key update/round1 = %q, want %q", round1, want)
	}
	if want := []string{"update/round1/acme=u1", "update/round1/zeta=u2", "update/round2/acme=u3"}; !slices.Equal(allUpdates, want) {
		t.Errorf("partial key update = %q, want %q", allUpdates, want)
	}
	if _, ok := l.State()["\x00update\x00round1\x00acme\x00"]; !ok {
		t.Errorf("composite key not stored in the shim's format; state keys: %q", slices.Sorted(maps.Keys(l.State())))
	}
	if badStart.Status != shim.ERROR || !strings.Contains(badStart.Message, "null character") {
		t.Errorf("a simple range starting with \\x00 gave %d %q, want the shim's null-character error", badStart.Status, badStart.Message)
	}
	if badAttr.Status != shim.ERROR || !strings.Contains(badAttr.Message, "U+0000") {
		t.Errorf("a composite attribute containing U+0000 gave %d %q, want the shim's error", badAttr.Status, badAttr.Message)
	}
}

func TestPaginatedRangeQueriesFollowBookmarks(t *testing.T) {
	l, alice := newLedger(t)
	for _, k := range []string{"e", "b", "d", "a", "c"} {
		mustOK(t, l.Invoke(alice, "Put", k, k))
	}

	first := decodeStrings(t, l.Invoke(alice, "Page", "", "", "2", ""))
	second := decodeStrings(t, l.Invoke(alice, "Page", "", "", "2", "c"))
	last := decodeStrings(t, l.Invoke(alice, "Page", "", "", "2", "e"))

	for _, c := range []struct {
		got, want []string
	}{
		{first, []string{"a", "b", "bookmark=c"}},
		{second, []string{"c", "d", "bookmark=e"}},
		{last, []string{"e", "bookmark="}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("page = %q, want %q", c.got, c.want)
		}
	}
}

func TestAPrivateQueryAfterAWriteIsRejectedAsOnFabric(t *testing.T) {
	l, alice := newLedger(t)

	r := l.Invoke(alice, "WriteThenPrivateRange")

	if r.Status != shim.ERROR || !strings.Contains(r.Message, "read-only transaction") {
		t.Errorf("got %d %q, want Fabric's read-only-transaction error", r.Status, r.Message)
	}
	if len(l.State()) != 0 {
		t.Errorf("state changed: %v", l.State())
	}
}

func TestClientIdentityIsSeenByCID(t *testing.T) {
	l := ledgertest.NewLedger(t, new(probe))
	member := ledgertest.NewIdentity(t, "Org1MSP", "alice", "participant,committee")
	noRole := ledgertest.NewIdentity(t, "Org2MSP", "bob", "")
	admin := ledgertest.NewAdmin(t, "Org2MSP", "org2-admin")

	for _, c := range []struct {
		id   *ledgertest.Identity
		want whoami
	}{
		{member, whoami{"Org1MSP", "participant,committee", true, false, true, "alice", member.Fingerprint()}},
		{noRole, whoami{"Org2MSP", "", false, false, true, "bob", noRole.Fingerprint()}},
		{admin, whoami{"Org2MSP", "", false, true, false, "org2-admin", admin.Fingerprint()}},
	} {
		t.Run(c.id.Name, func(t *testing.T) {
			r := mustOK(t, l.Invoke(c.id, "WhoAmI"))

			var got whoami
			if err := json.Unmarshal(r.Payload, &got); err != nil {
				t.Fatalf("payload %q: %v", r.Payload, err)
			}
			if got != c.want {
				t.Errorf("cid saw %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestIdentitiesCarryTheDocumentedCertificate(t *testing.T) {
	member := ledgertest.NewIdentity(t, "Org1MSP", "alice", "participant")
	admin := ledgertest.NewAdmin(t, "Org1MSP", "admin")

	sum := sha256.Sum256(member.Cert.Raw)
	if member.Fingerprint() != hex.EncodeToString(sum[:]) {
		t.Errorf("fingerprint %s is not the hex SHA-256 of the DER", member.Fingerprint())
	}
	if !strings.HasPrefix(string(member.CertPEM), "-----BEGIN CERTIFICATE-----") {
		t.Errorf("CertPEM is not PEM: %q", member.CertPEM)
	}
	if got := member.Cert.Subject.OrganizationalUnit; !slices.Equal(got, []string{"client"}) {
		t.Errorf("client OU = %q", got)
	}
	if got := admin.Cert.Subject.OrganizationalUnit; !slices.Equal(got, []string{"admin"}) || !admin.Admin {
		t.Errorf("admin OU = %q, Admin = %t", got, admin.Admin)
	}
	for _, ext := range admin.Cert.Extensions {
		if ext.Id.String() == "1.2.3.4.5.6.7.8.1" {
			t.Error("an admin without roles carries an attribute extension")
		}
	}
	if err := member.Cert.CheckSignatureFrom(admin.Cert); err == nil {
		t.Error("a client certificate verifies against another leaf; expected a CA-issued chain")
	}
}

func TestPrivateDataRoundTripsWithItsHash(t *testing.T) {
	l, alice := newLedger(t)
	secret := []byte("model-update-share")

	mustOK(t, l.InvokeWithTransient(alice, map[string][]byte{"value": secret}, "StorePrivate", "secrets", "share1"))
	read := mustOK(t, l.Invoke(alice, "ReadPrivate", "secrets", "share1"))
	missing := mustOK(t, l.Invoke(alice, "ReadPrivate", "secrets", "nope"))

	sum := sha256.Sum256(secret)
	if want := string(secret) + "|" + hex.EncodeToString(sum[:]); string(read.Payload) != want {
		t.Errorf("private read = %q, want %q", read.Payload, want)
	}
	if string(missing.Payload) != "|" {
		t.Errorf("absent private key read = %q, want empty value and nil hash", missing.Payload)
	}
	if got := l.PrivateState("secrets"); !maps.Equal(got, map[string]string{"share1": string(secret)}) {
		t.Errorf("private state = %v", got)
	}
	if len(l.State()) != 0 {
		t.Errorf("private data leaked into public state: %v", l.State())
	}
}

func TestTransientDataIsVisibleToTheChaincodeOnly(t *testing.T) {
	l, alice := newLedger(t)

	with := decodeStrings(t, l.InvokeWithTransient(alice, map[string][]byte{"b": []byte("2"), "a": []byte("1")}, "Transient"))
	without := decodeStrings(t, l.Invoke(alice, "Transient"))

	if want := []string{"a=1", "b=2"}; !slices.Equal(with, want) {
		t.Errorf("transient = %q, want %q", with, want)
	}
	if len(without) != 0 {
		t.Errorf("Invoke without transient saw %q", without)
	}
	if len(l.State()) != 0 {
		t.Errorf("transient data reached the state: %v", l.State())
	}
}

func TestEventsKeepTheLastOneSetPerCommittedTransaction(t *testing.T) {
	l, alice := newLedger(t)

	r := mustOK(t, l.Invoke(alice, "Emit", "RoundOpened", "round-1"))
	l.Invoke(alice, "PutAndFail", "x", "y")
	mustOK(t, l.Invoke(alice, "Emit", "RoundClosed", "round-1"))

	if r.Event == nil || r.Event.Name != "RoundOpened" || string(r.Event.Payload) != "round-1" {
		t.Errorf("result event = %+v, want RoundOpened/round-1", r.Event)
	}
	var names []string
	for _, e := range l.Events() {
		names = append(names, e.Name)
	}
	if want := []string{"RoundOpened", "RoundClosed"}; !slices.Equal(names, want) {
		t.Errorf("events = %q, want %q", names, want)
	}
}

func TestTxIDsAndTimestampsAreDeterministic(t *testing.T) {
	run := func() []string {
		l, alice := newLedger(t)
		var out []string
		for range 3 {
			r := mustOK(t, l.Invoke(alice, "TxInfo"))
			out = append(out, string(r.Payload))
		}
		return out
	}

	first, second := run(), run()

	if !slices.Equal(first, second) {
		t.Fatalf("two ledgers disagree:\n%q\n%q", first, second)
	}
	ids := map[string]bool{}
	for i, info := range first {
		parts := strings.Split(info, "|")
		if len(parts[0]) != 64 || ids[parts[0]] {
			t.Errorf("tx %d id %q is not a fresh 64-hex-digit id", i, parts[0])
		}
		ids[parts[0]] = true
		if want := time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC).Format(time.RFC3339); parts[1] != want {
			t.Errorf("tx %d timestamp = %s, want %s", i, parts[1], want)
		}
		if parts[2] != "fedledger" {
			t.Errorf("tx %d channel = %q, want fedledger", i, parts[2])
		}
	}
}

func TestUnknownFunctionsFailWithContractAPIsMessage(t *testing.T) {
	l, alice := newLedger(t)

	r := l.Invoke(alice, "NoSuchFunction")

	if r.Status != shim.ERROR || !strings.Contains(r.Message, "NoSuchFunction") {
		t.Errorf("got %d %q, want contractapi's function-not-found error", r.Status, r.Message)
	}
}
