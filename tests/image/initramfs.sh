#!/bin/sh
# tests/image/initramfs.sh DIR BACKEND [NEXT] — the boot test's initramfs, DIR/initramfs.cpio.gz:
# everything the guest needs that is not the appliance image itself (the image is the guest's
# disk, see boot_test.sh):
#   /init -> busybox (init), /etc/inittab, /test/rcS, /test/console  (tests/image/guest/)
#   /lib/modules/*.ko + /etc/modules.load: e1000, virtio_pci, virtio_blk, crc32c, ext4 and
#       their dependencies, in load order, from the kernel package fetch.sh unpacked
#   /opt/backend/uwsgi_backend  (BACKEND, the static examples/uwsgi_backend)
#   /test/uwgate.next  (NEXT, the `upgrade-test` build: the version the test upgrades to in place)
#   /test/uwgate.ini  the site configuration; /srv/www/static/  the files it serves, plus a
#       generated big.bin (larger than a buffer) whose copy the host compares against
# The cpio is written by the fetched busybox, so the host needs no cpio of its own.
set -eu

dir=$(cd "${1:?usage: initramfs.sh DIR BACKEND [NEXT]}" && pwd)
backend=${2:?usage: initramfs.sh DIR BACKEND [NEXT]}
next=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
busybox=$dir/busybox/bin/busybox
moddir=$(find "$dir/kernel/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n 1)
if [ ! -x "$busybox" ] || [ -z "$moddir" ]; then
    echo "initramfs: run fetch.sh $dir first" >&2
    exit 1
fi
[ -x "$backend" ] || { echo "initramfs: no backend binary $backend" >&2; exit 1; }

root=$dir/initramfs
rm -rf "$root"
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/etc" "$root/proc" \
    "$root/sys" "$root/dev" "$root/run" "$root/tmp" "$root/var/log" "$root/mnt/image" \
    "$root/lib/modules" "$root/test" "$root/opt/backend" "$root/srv/www/static" "$root/root"

cp "$busybox" "$root/bin/busybox"
ln -s bin/busybox "$root/init"
cp "$here/guest/inittab" "$root/etc/inittab"
install -m 0755 "$here/guest/rcS" "$here/guest/console" "$root/test/"
cp "$here/guest/uwgate.ini" "$root/test/uwgate.ini"
install -m 0755 "$backend" "$root/opt/backend/uwsgi_backend"
if [ -n "$next" ]; then
    [ -x "$next" ] || { echo "initramfs: no upgrade binary $next" >&2; exit 1; }
    install -m 0755 "$next" "$root/test/uwgate.next"
    strip --strip-all "$root/test/uwgate.next" 2>/dev/null || true
fi
cp "$here/guest/www/static/index.html" "$root/srv/www/static/"
head -c 300000 /dev/urandom > "$root/srv/www/static/big.bin"
if [ "$(id -u)" = 0 ]; then mknod -m 0600 "$root/dev/console" c 5 1; fi

# Modules: depth-first over each module's "depends=" (from its .modinfo), dependencies first.
# Built-in ones (modules.builtin) need nothing. A subshell per call keeps the recursion's
# variables apart (POSIX sh has no `local`).
: > "$root/etc/modules.load"
add_module() (
    name=$1
    alt=$(echo "$name" | tr _ -)
    if grep -q -e "/$name\.ko\$" -e "/$alt\.ko\$" "$moddir/modules.builtin"; then
        exit 0
    fi
    file=$(find "$moddir/kernel" \( -name "$name.ko" -o -name "$alt.ko" \) | head -n 1)
    [ -n "$file" ] || { echo "initramfs: module $name not in $moddir" >&2; exit 1; }
    base=$(basename "$file")
    grep -qx "$base" "$root/etc/modules.load" && exit 0
    for dep in $(tr '\0' '\n' < "$file" | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' '); do
        add_module "$dep" || exit 1
    done
    cp "$file" "$root/lib/modules/$base"
    echo "$base" >> "$root/etc/modules.load"
)
for module in e1000 virtio_pci virtio_blk crc32c_generic ext4; do
    add_module "$module" || exit 1
done

(cd "$root" && find . | sort | "$busybox" cpio -o -H newc 2>/dev/null) | gzip -6 > "$dir/initramfs.cpio.gz"
echo "initramfs: $dir/initramfs.cpio.gz $(wc -c < "$dir/initramfs.cpio.gz") bytes;" \
    "modules: $(tr '\n' ' ' < "$root/etc/modules.load")"
