// Command fedledger-chaincode serves the FedLedger chaincode as a service (CCaaS): the peer's
// external builder points the peer at this process, which it reaches over gRPC with mutual TLS.
//
// Configuration, from the environment:
//
//	CHAINCODE_ID              the package id the peer installed (label:hash)
//	CHAINCODE_SERVER_ADDRESS  host:port to listen on
//	CHAINCODE_TLS_KEY_FILE, CHAINCODE_TLS_CERT_FILE, CHAINCODE_TLS_CLIENT_CA_FILE
//	                          server key and certificate, and the CA of the peers' client certificates
//	CHAINCODE_TLS_DISABLED    "true" to serve plaintext (never in a consortium; tests only)
package main

import (
	"fmt"
	"os"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"

	"fedledger/chaincode/ledger"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fedledger-chaincode:", err)
		os.Exit(1)
	}
}

func run() error {
	ccid, address := os.Getenv("CHAINCODE_ID"), os.Getenv("CHAINCODE_SERVER_ADDRESS")
	if ccid == "" || address == "" {
		return fmt.Errorf("set CHAINCODE_ID and CHAINCODE_SERVER_ADDRESS")
	}
	tls, err := tlsProperties()
	if err != nil {
		return err
	}
	cc, err := contractapi.NewChaincode(ledger.NewContract())
	if err != nil {
		return fmt.Errorf("building the chaincode: %w", err)
	}
	server := &shim.ChaincodeServer{CCID: ccid, Address: address, CC: cc, TLSProps: tls}
	return server.Start()
}

func tlsProperties() (shim.TLSProperties, error) {
	if os.Getenv("CHAINCODE_TLS_DISABLED") == "true" {
		return shim.TLSProperties{Disabled: true}, nil
	}
	var files [3][]byte
	for i, name := range []string{"CHAINCODE_TLS_KEY_FILE", "CHAINCODE_TLS_CERT_FILE", "CHAINCODE_TLS_CLIENT_CA_FILE"} {
		path := os.Getenv(name)
		if path == "" {
			return shim.TLSProperties{}, fmt.Errorf("set %s (or CHAINCODE_TLS_DISABLED=true outside a consortium)", name)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return shim.TLSProperties{}, fmt.Errorf("reading %s: %w", name, err)
		}
		files[i] = data
	}
	// ClientCACerts set: the server requires and verifies the peer's client certificate.
	return shim.TLSProperties{Key: files[0], Cert: files[1], ClientCACerts: files[2]}, nil
}
