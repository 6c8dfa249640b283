#!/usr/bin/env bash
# Local stand-ins for the base images the Dockerfile and docker-compose.yml name, for machines
# that cannot pull them (Docker Hub unreachable). For each image given (default: both):
#   1. if `docker pull` works, the real image is used and nothing is built;
#   2. else a stand-in already built by this script (label resilient-gateway.stand-in=true) is
#      used as it is (the cache between runs);
#   3. else one is built: `debootstrap --variant=minbase bookworm` from this machine's own apt
#      mirror, then `docker import` under the official tag.
# python:3.11-slim: Debian's python3.11 with a venv at /usr/local, so /usr/local/bin/python and
#   pip exist as in the official image; the machine's CA bundle is copied in and PIP_CERT points
#   at it (pip reaches the package index through it here).
# redis:7-alpine: Debian's redis-server; protected mode off, as the official image does when no
#   configuration file is given; runs as the redis user.
# Every line that decides prints what it decided. Needs root and docker; installs debootstrap
# with apt when a stand-in must be built and it is missing.
set -euo pipefail

LABEL=resilient-gateway.stand-in
SUITE=bookworm
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

say() { echo "[base-images] $*"; }

# The Debian archive this machine's apt uses (deb822 `URIs:` or one-line `deb` entries), not the
# security archive; deb.debian.org when none is found.
debian_mirror() {
    local mirror
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | sed -n -E 's/^URIs:[[:space:]]*([^[:space:]]+).*/\1/p; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+bookworm[[:space:]].*/\2/p' \
        | grep -v -E 'security|updates' | grep -E '/debian/?$' | head -n 1 || true)
    echo "${mirror:-http://deb.debian.org/debian}"
}

is_stand_in() {
    [ "$(docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null)" = "true" ]
}

# Build a root filesystem with debootstrap and import it under $tag. $1 tag, $2 packages,
# $3 a function that finishes the tree (run with the tree's path), then `docker import` changes.
build_stand_in() {
    local tag=$1 packages=$2 finish=$3
    shift 3
    local root
    root=$(mktemp -d /var/tmp/stand-in.XXXXXX)
    local mirror
    mirror=$(debian_mirror)
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap with apt"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    say "building a stand-in for $tag: debootstrap --variant=minbase $SUITE from $mirror"
    nice -n 10 debootstrap --variant=minbase --include="$packages" "$SUITE" "$root" "$mirror" \
        >"$root.debootstrap.log" 2>&1 || { tail -n 30 "$root.debootstrap.log"; rm -rf "$root" "$root.debootstrap.log"; exit 1; }
    rm -f "$root.debootstrap.log"
    "$finish" "$root"
    # No caches, package lists, docs or locales in the image.
    rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log \
        "$root"/root/.cache
    find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
    tar -C "$root" --numeric-owner -c . | docker import \
        --change "LABEL $LABEL=true" \
        --change "ENV LANG=C.UTF-8" \
        "$@" - "$tag" >/dev/null
    rm -rf "$root"
    say "built $tag ($(docker image inspect --format '{{.Size}}' "$tag" | numfmt --to=iec))"
}

finish_python() {
    local root=$1
    chroot "$root" /usr/bin/python3.11 -m venv /usr/local
    chroot "$root" /usr/local/bin/python -m pip --version >/dev/null
    mkdir -p "$root/usr/local/share/ca-certificates-host"
    cp "$CA_BUNDLE" "$root/usr/local/share/ca-certificates-host/ca-bundle.crt"
}

finish_redis() {
    local root=$1
    mkdir -p "$root/data"
    chroot "$root" chown redis:redis /data
    cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# As the official image: `redis-server ...` runs as the redis user with protected mode off.
set -e
if [ "$1" = "redis-server" ]; then
    shift
    exec setpriv --reuid=redis --regid=redis --init-groups redis-server "$@" --protected-mode no
fi
exec "$@"
EOF
    chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
}

ensure() {
    local tag=$1
    if docker pull --quiet "$tag" >/dev/null 2>&1; then
        say "$tag: pulled the real image"
    elif is_stand_in "$tag"; then
        say "$tag: cannot be pulled; using the stand-in cached by an earlier run (built $(docker image inspect --format '{{.Created}}' "$tag"))"
    elif docker image inspect "$tag" >/dev/null 2>&1; then
        say "$tag: cannot be pulled; using the copy already in the engine"
    else
        say "$tag: cannot be pulled; no copy in the engine"
        case "$tag" in
            python:3.11-slim)
                build_stand_in "$tag" python3.11,python3.11-venv,python3-distutils,ca-certificates finish_python \
                    --change "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin" \
                    --change "ENV PIP_CERT=/usr/local/share/ca-certificates-host/ca-bundle.crt" \
                    --change 'CMD ["python3"]'
                ;;
            redis:7-alpine)
                build_stand_in "$tag" redis-server finish_redis \
                    --change "WORKDIR /data" \
                    --change "EXPOSE 6379" \
                    --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
                    --change 'CMD ["redis-server"]'
                ;;
            *)
                echo "no stand-in recipe for $tag" >&2
                exit 1
                ;;
        esac
    fi
}

if [ "$#" -eq 0 ]; then
    set -- python:3.11-slim redis:7-alpine
fi
for tag in "$@"; do
    ensure "$tag"
done
