#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine, starting Debian's dockerd if none does.
#
#   scripts/start-docker.sh      exit 0 once `docker info` works; non-zero, with the reason on
#                                stderr, if no engine can be had
#
# Development machines and CI have no init system running services, so the engine is started here
# by hand, in the background, logging to $FEDLEDGER_CACHE/dockerd.log (default
# ~/.cache/fedledger/dockerd.log). An engine that already answers is left alone. When run as root
# on Debian with the packages missing, it installs docker.io, a compose (docker-compose-v2 where the
# distribution has it, else the older docker-compose) and busybox-static (scripts/build-images.sh
# copies busybox into the peer image). Set FEDLEDGER_NO_INSTALL=1 to forbid that.
#
# No registry is reachable from these machines: nothing here pulls an image.
set -euo pipefail

cache="${FEDLEDGER_CACHE:-$HOME/.cache/fedledger}"
log="$cache/dockerd.log"
wait_seconds="${FEDLEDGER_DOCKERD_WAIT:-60}"
mkdir -p "$cache"

say() { printf 'start-docker: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

have_compose() {
    docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1
}

install_packages() {
    local wanted=()
    command -v dockerd >/dev/null 2>&1 || wanted+=(docker.io)
    [ -x /bin/busybox ] || wanted+=(busybox-static)
    if ! have_compose; then
        # Debian 12 has only the Python docker-compose (1.29); later releases package v2.
        if apt-cache show docker-compose-v2 >/dev/null 2>&1; then wanted+=(docker-compose-v2)
        else wanted+=(docker-compose); fi
    fi
    [ ${#wanted[@]} -gt 0 ] || return 0
    if [ "${FEDLEDGER_NO_INSTALL:-0}" = 1 ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        fail "not installed: ${wanted[*]} (Debian: apt-get install -y ${wanted[*]}; as root this script installs them)"
    fi
    say "installing ${wanted[*]} (Debian packages)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${wanted[@]}" >"$cache/apt-docker.log" 2>&1; then
        apt-get update -qq >>"$cache/apt-docker.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${wanted[@]}" >>"$cache/apt-docker.log" 2>&1 ||
            fail "apt-get install ${wanted[*]} failed; see $cache/apt-docker.log"
    fi
}

install_packages
command -v docker >/dev/null 2>&1 || fail "no docker client on PATH (Debian package docker.io)"
have_compose || fail "neither 'docker compose' nor 'docker-compose' is available"

if docker info >/dev/null 2>&1; then
    exit 0
fi
[ "$(id -u)" = 0 ] || fail "no Docker engine answers and only root can start dockerd here; start it (or ask an administrator) and run this again"
if ! pgrep -x dockerd >/dev/null 2>&1; then
    # In its own session, so the engine outlives the shell or test run that started it; dockerd
    # starts its own containerd when no system containerd runs.
    say "no Docker engine answers; starting dockerd (log: $log)"
    setsid nohup dockerd >>"$log" 2>&1 </dev/null &
    disown || true
else
    say "dockerd is running but does not answer yet; waiting"
fi

deadline=$((SECONDS + wait_seconds))
until docker info >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
        reason=$(grep -Ei 'level=(fatal|error)|failed to start' "$log" 2>/dev/null | tail -n 3 || true)
        fail "dockerd did not answer within ${wait_seconds} s${reason:+: $reason} (full log: $log)"
    fi
    if ! pgrep -x dockerd >/dev/null 2>&1; then
        reason=$(tail -n 3 "$log" 2>/dev/null || true)
        fail "dockerd exited: ${reason:-no log} (full log: $log)"
    fi
    sleep 0.5
done
say "Docker engine up ($(docker info --format '{{.ServerVersion}}' 2>/dev/null), storage driver $(docker info --format '{{.Driver}}' 2>/dev/null))"
