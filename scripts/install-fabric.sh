#!/usr/bin/env bash
# Install Hyperledger Fabric's binaries with this machine's Go, from the Go module proxy, into a
# cache outside the repo ($FEDLEDGER_CACHE/bin, default ~/.cache/fedledger/bin). Idempotent: a
# binary already at the pinned version is kept, so a second run takes seconds.
#
#   scripts/install-fabric.sh            both components
#   scripts/install-fabric.sh ca         fabric-ca-server and fabric-ca-client (v1.5.21)
#   scripts/install-fabric.sh fabric     peer, orderer, configtxgen, osnadmin (v2.5.0), and the
#                                        default core.yaml and orderer.yaml they ship with
#
# Both are built from a small "tools" module that requires the pinned version: `go install
# pkg@version` would also ask the proxy for the module's version list (to warn of deprecation),
# which this proxy refuses.
set -euo pipefail

# The design pins Fabric v3.1.5 (commit 86c1172bec37e6590c6b1ae6f847833df48d65fc, pseudo-version
# v1.4.0-rc1.0.20260618074816-86c1172bec37), but the Go module proxy here answers 403 for every
# Fabric commit after April 2023. v2.5.0 (LTS; commit 695dd57e01c2) is the newest it serves, and it
# has everything FedLedger uses: Raft, channel participation without a system channel, the Gateway
# service and external builders. Fabric's v2+ tags have no /v2 module path, so Go knows a release only
# by its pseudo-version. To move to v3.1.5, set these three lines to the values above.
FABRIC_VERSION=2.5.0
FABRIC_COMMIT=695dd57e01c2
FABRIC_MODULE_VERSION=v1.4.0-rc1.0.20230405174026-695dd57e01c2
FABRIC_CA_VERSION=1.5.21

cache="${FEDLEDGER_CACHE:-$HOME/.cache/fedledger}"
bin="$cache/bin"
mkdir -p "$bin" "$cache/src"

say() { printf 'install-fabric: %s\n' "$*" >&2; }

# tools_module DIR MODULE VERSION PACKAGE... : a module that requires MODULE@VERSION and imports PACKAGEs.
tools_module() {
    local dir=$1 module=$2 version=$3; shift 3
    mkdir -p "$dir"
    printf 'module fedledger.local/tools\n\ngo 1.24.0\n\nrequire %s %s\n' "$module" "$version" > "$dir/go.mod"
    { printf '//go:build tools\n\npackage tools\n\nimport (\n'; printf '\t_ "%s"\n' "$@"; printf ')\n'; } > "$dir/tools.go"
    (cd "$dir" && GOFLAGS=-mod=mod go mod tidy)
}

install_ca() {
    if "$bin/fabric-ca-server" version 2>/dev/null | grep -q "Version: $FABRIC_CA_VERSION" &&
       "$bin/fabric-ca-client" version 2>/dev/null | grep -q "Version: $FABRIC_CA_VERSION"; then
        say "fabric-ca $FABRIC_CA_VERSION already in $bin"
        return
    fi
    say "building fabric-ca $FABRIC_CA_VERSION (fabric-ca-server needs cgo for sqlite)"
    local dir="$cache/src/fabric-ca-$FABRIC_CA_VERSION"
    tools_module "$dir" github.com/hyperledger/fabric-ca "v$FABRIC_CA_VERSION" \
        github.com/hyperledger/fabric-ca/cmd/fabric-ca-server github.com/hyperledger/fabric-ca/cmd/fabric-ca-client
    (cd "$dir" && CGO_ENABLED=1 go build -o "$bin/fabric-ca-server" github.com/hyperledger/fabric-ca/cmd/fabric-ca-server)
    (cd "$dir" && CGO_ENABLED=0 go build -o "$bin/fabric-ca-client" github.com/hyperledger/fabric-ca/cmd/fabric-ca-client)
    "$bin/fabric-ca-server" version | grep -q "Version: $FABRIC_CA_VERSION"
    say "fabric-ca $FABRIC_CA_VERSION installed in $bin"
}

install_fabric() {
    local tools=(peer orderer configtxgen osnadmin) missing=0
    # osnadmin prints no version: a stamp written after a whole build names what was built.
    [ "$(cat "$bin/.fabric-version" 2>/dev/null)" = "$FABRIC_MODULE_VERSION" ] || missing=1
    for t in "${tools[@]}"; do
        [ -x "$bin/$t" ] || missing=1
    done
    for f in core.yaml orderer.yaml; do
        [ -f "$cache/config/$f" ] || missing=1
    done
    if [ "$missing" = 0 ]; then
        say "Fabric $FABRIC_VERSION already in $bin"
        return
    fi
    say "building Fabric $FABRIC_VERSION ($FABRIC_MODULE_VERSION)"
    local dir="$cache/src/fabric-$FABRIC_VERSION"
    if ! tools_module "$dir" github.com/hyperledger/fabric "$FABRIC_MODULE_VERSION" \
        "${tools[@]/#/github.com/hyperledger/fabric/cmd/}" 2>"$cache/fabric-module.err"; then
        cat "$cache/fabric-module.err" >&2
        say "the Go module proxy did not serve github.com/hyperledger/fabric@$FABRIC_MODULE_VERSION."
        say "On this project's machines it answers 403 'This module version is not available' for"
        say "Fabric after April 2023; see README.md, 'Fabric version'. Nothing was installed."
        exit 3
    fi
    for t in "${tools[@]}"; do
        (cd "$dir" && CGO_ENABLED=0 go build \
            -ldflags "-X github.com/hyperledger/fabric/common/metadata.Version=$FABRIC_VERSION -X github.com/hyperledger/fabric/common/metadata.CommitSHA=$FABRIC_COMMIT" \
            -o "$bin/$t" "github.com/hyperledger/fabric/cmd/$t")
    done
    # The release archives ship Fabric's default node configuration beside the binaries; the
    # network bring-up starts from these files and sets every value it needs per node.
    local src
    src=$(cd "$dir" && go list -m -f '{{.Dir}}' github.com/hyperledger/fabric)
    mkdir -p "$cache/config"
    install -m 0644 "$src/sampleconfig/core.yaml" "$src/sampleconfig/orderer.yaml" "$cache/config/"
    echo "$FABRIC_MODULE_VERSION" > "$bin/.fabric-version"
    say "Fabric $FABRIC_VERSION installed in $bin (default configuration in $cache/config)"
}

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(ca fabric)
for c in "${components[@]}"; do
    case "$c" in
        ca) install_ca ;;
        fabric) install_fabric ;;
        *) say "unknown component '$c' (use ca, fabric)"; exit 2 ;;
    esac
done
