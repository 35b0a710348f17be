package ledgertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/pkg/attrmgr"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
)

// roleAttribute is the Fabric CA attribute that carries a FedLedger identity's roles.
const roleAttribute = "fedledger.role"

// Certificates are valid over a fixed window that covers every transaction timestamp the
// ledger hands out, so a contract that checks validity against the tx time never trips on it.
var (
	certNotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	certNotAfter  = time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Identity is a Fabric client identity: an MSP id and a real X.509 certificate (ECDSA P-256)
// issued by a per-MSP test CA. When Roles is not empty the certificate carries the Fabric CA
// attribute extension (OID 1.2.3.4.5.6.7.8.1, JSON {"attrs":{"fedledger.role":Roles}}), so
// cid.GetAttributeValue(stub, "fedledger.role") returns Roles. Subject.OrganizationalUnit is
// ["admin"] for org admins and ["client"] otherwise, as with Fabric NodeOUs. VRF is the
// identity's leader-election key pair, derived from its MSP id and name (so a test's elections
// come out the same in every run).
type Identity struct {
	MSPID   string
	Name    string // certificate CN
	Roles   string // e.g. "participant,committee"; "" means no attribute extension at all
	Admin   bool
	Cert    *x509.Certificate
	CertPEM []byte
	VRF     *VRFKey
}

// NewIdentity returns a client identity (OU=client) of mspID named name, whose certificate
// carries roles in the fedledger.role attribute (no attribute extension when roles is "").
func NewIdentity(tb testing.TB, mspID, name, roles string) *Identity {
	tb.Helper()
	return newIdentity(tb, mspID, name, roles, false)
}

// NewAdmin returns an org admin of mspID (OU=admin) named name, with no role attribute.
func NewAdmin(tb testing.TB, mspID, name string) *Identity {
	tb.Helper()
	return newIdentity(tb, mspID, name, "", true)
}

// Serialized returns the proto-marshalled msp.SerializedIdentity{Mspid, IdBytes: CertPEM},
// the creator bytes a Fabric peer hands to chaincode.
func (i *Identity) Serialized() []byte {
	b, err := proto.Marshal(&msp.SerializedIdentity{Mspid: i.MSPID, IdBytes: i.CertPEM})
	if err != nil {
		// Marshalling two populated fields cannot fail; if it does, the proto runtime is broken.
		panic(fmt.Sprintf("ledgertest: marshalling the identity of %q in %s: %v", i.Name, i.MSPID, err))
	}
	return b
}

// Fingerprint returns the lower-case hex SHA-256 of the certificate's DER bytes.
func (i *Identity) Fingerprint() string {
	sum := sha256.Sum256(i.Cert.Raw)
	return hex.EncodeToString(sum[:])
}

func newIdentity(tb testing.TB, mspID, name, roles string, admin bool) *Identity {
	tb.Helper()
	if mspID == "" || name == "" {
		tb.Fatalf("ledgertest: an identity needs an MSP id and a name, got MSP id %q and name %q", mspID, name)
	}
	ca, err := authorityFor(mspID)
	if err != nil {
		tb.Fatalf("ledgertest: creating the test CA of %s: %v", mspID, err)
	}
	cert, certPEM, err := ca.issue(name, roles, admin)
	if err != nil {
		tb.Fatalf("ledgertest: issuing a certificate for %q in %s: %v", name, mspID, err)
	}
	return &Identity{MSPID: mspID, Name: name, Roles: roles, Admin: admin, Cert: cert, CertPEM: certPEM,
		VRF: vrfKeyFor(mspID, name)}
}

// certAuthority is the test CA of one MSP. Fabric identities are never self-signed, so
// each MSP gets its own CA and the chaincode sees a realistic issuer in cid.GetID.
type certAuthority struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

var (
	authoritiesMu sync.Mutex
	authorities   = map[string]*certAuthority{}
)

func authorityFor(mspID string) (*certAuthority, error) {
	authoritiesMu.Lock()
	defer authoritiesMu.Unlock()
	if ca, ok := authorities[mspID]; ok {
		return ca, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "ca." + mspID, Organization: []string{mspID}},
		NotBefore:             certNotBefore,
		NotAfter:              certNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &certAuthority{key: key, cert: cert}
	authorities[mspID] = ca
	return ca, nil
}

func (ca *certAuthority) issue(name, roles string, admin bool) (*x509.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	ou := "client"
	if admin {
		ou = "admin"
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, OrganizationalUnit: []string{ou}},
		NotBefore:             certNotBefore,
		NotAfter:              certNotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	if roles != "" {
		// Fabric CA stores the attributes as raw JSON in a non-critical extension; attrmgr
		// (used by cid) reads them back from exactly this shape.
		value, err := json.Marshal(map[string]map[string]string{"attrs": {roleAttribute: roles}})
		if err != nil {
			return nil, nil, err
		}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: attrmgr.AttrOID, Value: value}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}
