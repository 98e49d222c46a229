#!/bin/sh
# tests/image/fetch.sh DIR — the boot test's guest parts, from Debian's archive via apt:
#   DIR/kernel/   Debian's linux-image (vmlinuz + its /lib/modules), the version
#                 linux-image-amd64 points at
#   DIR/busybox/  busybox-static: the guest's init, shell and tools
# Idempotent: a package already unpacked (DIR/<part>/.deb names it) is not fetched again.
# Needs apt-get (apt lists are refreshed once when a package is not found).
set -eu

dir=${1:?usage: fetch.sh DIR}
mkdir -p "$dir"

# candidate PACKAGE: the version apt would fetch, or nothing.
candidate() {
    apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)' || true
}

# fetch PACKAGE PART: download PACKAGE's .deb and unpack it into $dir/PART.
fetch() {
    pkg=$1 part=$2
    if [ -z "$(candidate "$pkg")" ]; then
        echo "fetch: $pkg unknown to apt, refreshing the package lists"
        apt-get update -q >/dev/null
    fi
    version=$(candidate "$pkg")
    [ -n "$version" ] || { echo "fetch: apt has no package $pkg" >&2; exit 1; }
    want="$pkg $version"
    if [ -r "$dir/$part/.deb" ] && [ "$(cat "$dir/$part/.deb")" = "$want" ]; then
        echo "fetch: $want (already unpacked in $dir/$part)"
        return 0
    fi
    echo "fetch: $want"
    rm -rf "${dir:?}/$part" "$dir/debs"
    mkdir -p "$dir/debs"
    if ! (cd "$dir/debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$version" 2>&1); then
        echo "fetch: apt-get download $pkg=$version failed" >&2
        exit 1
    fi
    for deb in "$dir/debs/${pkg}_"*.deb; do
        dpkg-deb -x "$deb" "$dir/$part"
    done
    rm -rf "$dir/debs"
    echo "$want" > "$dir/$part/.deb"
}

# linux-image-amd64 is a metapackage: the kernel is the linux-image-* package it depends on.
if [ -z "$(candidate linux-image-amd64)" ]; then apt-get update -q >/dev/null; fi
kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n 1)
[ -n "$kernel_pkg" ] || { echo "fetch: cannot resolve linux-image-amd64" >&2; exit 1; }

fetch "$kernel_pkg" kernel
fetch busybox-static busybox

ls "$dir"/kernel/boot/vmlinuz-* >/dev/null
[ -x "$dir/busybox/bin/busybox" ]
