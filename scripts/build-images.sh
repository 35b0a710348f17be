#!/usr/bin/env bash
# Build FedLedger's container images locally, for machines that reach no container registry.
#
#   scripts/build-images.sh                 build (or keep) all four images
#   eval "$(scripts/build-images.sh)"       ... and point docker-compose.yaml at them
#
# Each image is FROM scratch plus one static binary: the same Fabric binaries that
# scripts/install-fabric.sh built for the native network ($FEDLEDGER_CACHE/bin, default
# ~/.cache/fedledger/bin), so the docker and native runtimes run the same code:
#
#   fedledger/fabric-peer:2.5.0      peer, Fabric's default core.yaml, and busybox's sh, cp, mkdir
#                                    and grep for the chaincode-as-a-service builder scripts
#   fedledger/fabric-orderer:2.5.0   orderer and Fabric's default orderer.yaml
#   fedledger/fabric-ca:1.5.21       fabric-ca-server, rebuilt statically (cgo: sqlite) into
#                                    $FEDLEDGER_CACHE/bin-static, and fabric-ca-client
#   fedledger/chaincode:<version>    the chaincode service (chaincode/cmd/fedledger-chaincode)
#
# Paths follow Hyperledger's official images (/usr/local/bin, FABRIC_CFG_PATH=/etc/hyperledger/fabric),
# so docker-compose.yaml runs either. Nothing is pulled; the legacy builder is used (no buildx).
# Idempotent: an image whose inputs have not changed (a digest kept in a label) is not rebuilt,
# so a rerun takes about a second. Prints `export FEDLEDGER_*_IMAGE=...` lines on stdout (also
# written to $FEDLEDGER_CACHE/images.env); progress goes to stderr.
set -euo pipefail

FABRIC_VERSION=2.5.0
FABRIC_CA_VERSION=1.5.21

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${FEDLEDGER_CACHE:-$HOME/.cache/fedledger}"
bin="$cache/bin"
static="$cache/bin-static"
contexts="$cache/images"
export DOCKER_BUILDKIT=0

say() { printf 'build-images: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

docker info >/dev/null 2>&1 || fail "no Docker engine answers; run scripts/start-docker.sh first"
for tool in peer orderer fabric-ca-client; do
    [ -x "$bin/$tool" ] || fail "missing $bin/$tool; run scripts/install-fabric.sh"
done
for f in core.yaml orderer.yaml; do
    [ -f "$cache/config/$f" ] || fail "missing Fabric's default $cache/config/$f; run scripts/install-fabric.sh fabric"
done
busybox=/bin/busybox
[ -x "$busybox" ] || fail "missing $busybox, which the peer image needs for its builder scripts (Debian: apt-get install -y busybox-static)"

is_static() { ! ldd "$1" >/dev/null 2>&1; }
is_static "$busybox" || fail "$busybox is dynamically linked; install Debian's busybox-static"
for tool in peer orderer fabric-ca-client; do
    is_static "$bin/$tool" || fail "$bin/$tool is dynamically linked; rebuild it with scripts/install-fabric.sh (CGO_ENABLED=0)"
done

mkdir -p "$static" "$contexts"

# fabric-ca-server links sqlite through cgo, so the cache's copy needs the host's libc. A scratch
# image has none: link this copy statically (glibc's static libc; netgo and osusergo keep glibc's
# NSS, which cannot work statically, out of the binary).
ca_server="$static/fabric-ca-server"
if ! { [ -x "$ca_server" ] && is_static "$ca_server" &&
       "$ca_server" version 2>/dev/null | grep -q "Version: $FABRIC_CA_VERSION"; }; then
    src="$cache/src/fabric-ca-$FABRIC_CA_VERSION"
    [ -f "$src/go.mod" ] || fail "missing $src; run scripts/install-fabric.sh ca first"
    say "building a static fabric-ca-server $FABRIC_CA_VERSION (about a minute)"
    (cd "$src" && CGO_ENABLED=1 go build -tags netgo,osusergo,sqlite_omit_load_extension \
        -ldflags '-linkmode external -extldflags "-static"' -o "$ca_server.tmp" \
        github.com/hyperledger/fabric-ca/cmd/fabric-ca-server) 2> >(grep -v 'statically linked applications' >&2)
    mv "$ca_server.tmp" "$ca_server"
    is_static "$ca_server" || fail "the static build of fabric-ca-server is not static"
fi

# The chaincode service: the same build as the native runtime's, static.
chaincode_version=$(sed -n 's/^const Version = "\(.*\)"$/\1/p' "$repo/chaincode/ledger/contract.go")
[ -n "$chaincode_version" ] || fail "cannot read the chaincode's Version from chaincode/ledger/contract.go"
(cd "$repo/chaincode" && CGO_ENABLED=0 go build -o "$static/fedledger-chaincode" ./cmd/fedledger-chaincode)
grep -q "FEDLEDGER_CHAINCODE_IMAGE:-fedledger/chaincode:$chaincode_version}" "$repo/docker-compose.yaml" ||
    say "note: docker-compose.yaml's default chaincode image is not fedledger/chaincode:$chaincode_version (the chaincode's Version); update it"

# stage NAME: an empty build context for image NAME, with /tmp (sticky, world-writable) in its rootfs.
stage() {
    local dir="$contexts/$1"
    rm -rf "$dir"
    mkdir -p "$dir/rootfs/tmp" "$dir/rootfs/usr/local/bin"
    chmod 1777 "$dir/rootfs/tmp"
    echo "$dir"
}

# put FILE DEST: copy FILE into a context (a hard link when possible: the binaries are large).
put() {
    mkdir -p "$(dirname "$2")"
    ln -f "$1" "$2" 2>/dev/null || cp -p "$1" "$2"
}

# build DIR TAG: build the context DIR as TAG unless an image with the same inputs exists.
build() {
    local dir=$1 tag=$2 digest current previous
    digest=$(cd "$dir" && { find . -printf '%p %y %m %l\n' | LC_ALL=C sort;
                            find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-32)
    current=$(docker image inspect -f '{{index .Config.Labels "org.fedledger.inputs"}}' "$tag" 2>/dev/null || true)
    if [ "$current" = "$digest" ]; then
        say "$tag is up to date"
        return
    fi
    previous=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
    say "building $tag"
    printf 'LABEL org.fedledger.inputs="%s"\n' "$digest" >>"$dir/Dockerfile"
    # The legacy builder prints a deprecation notice on every build: show its output only on failure.
    local output
    output=$(docker build --quiet --pull=false -t "$tag" "$dir" 2>&1) || { printf '%s\n' "$output" >&2; fail "building $tag failed"; }
    # The image the tag named before may now have no tag at all: remove it then, unless a
    # container still uses it.
    if [ -n "$previous" ] && [ "$(docker image inspect -f '{{len .RepoTags}}' "$previous" 2>/dev/null)" = 0 ]; then
        docker image rm "$previous" >/dev/null 2>&1 || true
    fi
}

# -- peer: the external builder scripts (network/builders/ccaas, mounted by docker-compose.yaml)
# are /bin/sh scripts calling cp, mkdir and grep.
dir=$(stage peer)
put "$bin/peer" "$dir/rootfs/usr/local/bin/peer"
put "$busybox" "$dir/rootfs/bin/busybox"
for applet in sh cp mkdir grep cat ls; do ln -s busybox "$dir/rootfs/bin/$applet"; done
mkdir -p "$dir/rootfs/etc/hyperledger/fabric" "$dir/rootfs/var/hyperledger/production"
cp "$cache/config/core.yaml" "$dir/rootfs/etc/hyperledger/fabric/core.yaml"
cat >"$dir/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/bin FABRIC_CFG_PATH=/etc/hyperledger/fabric
EXPOSE 7051
CMD ["peer", "node", "start"]
EOF
build "$dir" "fedledger/fabric-peer:$FABRIC_VERSION"

# -- orderer
dir=$(stage orderer)
put "$bin/orderer" "$dir/rootfs/usr/local/bin/orderer"
mkdir -p "$dir/rootfs/etc/hyperledger/fabric" "$dir/rootfs/var/hyperledger/production"
cp "$cache/config/orderer.yaml" "$dir/rootfs/etc/hyperledger/fabric/orderer.yaml"
cat >"$dir/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin FABRIC_CFG_PATH=/etc/hyperledger/fabric
EXPOSE 7050
CMD ["orderer"]
EOF
build "$dir" "fedledger/fabric-orderer:$FABRIC_VERSION"

# -- CA
dir=$(stage ca)
put "$ca_server" "$dir/rootfs/usr/local/bin/fabric-ca-server"
put "$bin/fabric-ca-client" "$dir/rootfs/usr/local/bin/fabric-ca-client"
mkdir -p "$dir/rootfs/etc/hyperledger/fabric-ca-server"
cat >"$dir/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin FABRIC_CA_HOME=/etc/hyperledger/fabric-ca-server
EXPOSE 7054
CMD ["fabric-ca-server", "start"]
EOF
build "$dir" "fedledger/fabric-ca:$FABRIC_CA_VERSION"

# -- chaincode service
dir=$(stage chaincode)
put "$static/fedledger-chaincode" "$dir/rootfs/usr/local/bin/fedledger-chaincode"
cat >"$dir/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
EXPOSE 9999
CMD ["fedledger-chaincode"]
EOF
build "$dir" "fedledger/chaincode:$chaincode_version"

exports="export FEDLEDGER_PEER_IMAGE=fedledger/fabric-peer:$FABRIC_VERSION
export FEDLEDGER_ORDERER_IMAGE=fedledger/fabric-orderer:$FABRIC_VERSION
export FEDLEDGER_CA_IMAGE=fedledger/fabric-ca:$FABRIC_CA_VERSION
export FEDLEDGER_CHAINCODE_IMAGE=fedledger/chaincode:$chaincode_version"
printf '%s\n' "$exports" >"$cache/images.env"
say "images ready; to use them: . $cache/images.env (or eval the lines printed on stdout)"
printf '%s\n' "$exports"
