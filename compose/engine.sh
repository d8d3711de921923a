#!/bin/sh
# The Docker engine for `make test-containers`: `start` uses the engine DOCKER_HOST (or the local
# socket) names; when none answers it installs Debian's docker.io if missing (root only) and starts
# dockerd in the background, remembering that it did; `stop` stops only a dockerd it started.
set -u
STATE=${SCORESTREAM_ENGINE_STATE:-.scorestream/engine}
case "${1:-}" in
start)
    if docker info >/dev/null 2>&1; then exit 0; fi
    if [ -n "${DOCKER_HOST:-}" ]; then
        echo "no Docker engine answers at DOCKER_HOST=$DOCKER_HOST: start it, or unset DOCKER_HOST to use a local one" >&2
        exit 1
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
            echo "no Docker engine and no way to install one here (needs root and apt-get): install Docker and retry" >&2
            exit 1
        fi
        echo "installing Debian's docker.io, debootstrap and docker-compose"
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            docker.io debootstrap docker-compose >/dev/null || { echo "apt-get install docker.io failed" >&2; exit 1; }
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "dockerd is installed but not running, and starting it needs root: start it (or ask for the docker group)" >&2
        exit 1
    fi
    mkdir -p "$STATE"
    echo "starting dockerd (log $STATE/dockerd.log)"
    dockerd >"$STATE/dockerd.log" 2>&1 &
    echo $! >"$STATE/dockerd.pid"
    for _ in $(seq 60); do
        if docker info >/dev/null 2>&1; then exit 0; fi
        kill -0 "$(cat "$STATE/dockerd.pid")" 2>/dev/null || break
        sleep 1
    done
    echo "dockerd did not come up; its log ($STATE/dockerd.log) ends:" >&2
    tail -15 "$STATE/dockerd.log" >&2
    exit 1
    ;;
stop)
    [ -f "$STATE/dockerd.pid" ] || exit 0
    pid=$(cat "$STATE/dockerd.pid")
    kill "$pid" 2>/dev/null && echo "stopping the dockerd started for the tests"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    rm -f "$STATE/dockerd.pid"
    ;;
*)
    echo "usage: $0 start|stop" >&2; exit 2
    ;;
esac
