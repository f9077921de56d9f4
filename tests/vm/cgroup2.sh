#!/bin/sh
# The sandbox executor on a pure cgroup v2 host, for real: boot a KVM guest
# whose only cgroup hierarchy is cgroup2 and run the sandbox's unit tests in
# it (this project's machines have v1 controllers, so the v2 path would
# otherwise never run). Prints the guest's "PASS|FAIL cgroup2/..." lines, as
# scripts/check.sh counts them; exits non-zero if any failed, or if the guest
# could not be run at all (no /dev/kvm is a failure, not a skip).
#
#   tests/vm/cgroup2.sh [BUILD_DIR]     default: build
#
# Needs qemu-system-x86, busybox-static and cpio (scripts/deps.sh), and the
# network once: a Debian cloud kernel is fetched with `apt-get download`
# (never installed) into MXU_VM_CACHE (default /var/cache/mxu-vm, or
# build/vm-cache when that is not writable). MXU_VM_TIMEOUT bounds the guest
# (seconds, default 150).
set -eu
cd "$(dirname "$0")/../.."
BUILD=$(cd "${1:-build}" && pwd)
TIMEOUT=${MXU_VM_TIMEOUT:-150}
t0=$(date +%s)

fail() {
    echo "FAIL cgroup2/setup: $*"
    exit 1
}

# ---- the guest's programs -----------------------------------------------------------
TEST=$BUILD/tests/unit/test-sandbox
PROBE=$BUILD/tests/unit/exec/sandbox-probe
MXU=$BUILD/mxu
for f in "$TEST" "$PROBE" "$MXU"; do
    [ -x "$f" ] || fail "$f is missing: build first (ninja -C $BUILD)"
done
# test-sandbox copies the probe from the absolute path it was built with.
grep -q -F -a "$PROBE" "$TEST" || fail "$TEST was not built with SANDBOX_PROBE=$PROBE"

# ---- qemu, its accelerator, busybox --------------------------------------------------
command -v qemu-system-x86_64 >/dev/null || fail "no qemu-system-x86_64: run scripts/deps.sh"
# KVM where it can run a stock kernel. Some nested hosts (this project's
# machines) offer /dev/kvm through PVM (kvm_pvm), which runs only kernels
# built as PVM guests: a Debian kernel there crawls (no console in 90 s), so
# the guest is emulated instead (TCG: a few seconds more, the same kernel and
# the same cgroup v2). MXU_VM_ACCEL=kvm|tcg overrides; kvm asked for and not
# usable is a failure, never a skip.
ACCEL=${MXU_VM_ACCEL:-}
if [ -z "$ACCEL" ]; then
    if [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ]; then
        ACCEL=kvm
    else
        ACCEL=tcg
        if [ -d /sys/module/kvm_pvm ]; then
            why="/dev/kvm is PVM (kvm_pvm), which cannot run a stock kernel"
        else
            why="no usable /dev/kvm"
        fi
        echo "cgroup2: $why: emulating the guest (TCG)" >&2
    fi
fi
case $ACCEL in
kvm)
    if [ ! -c /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
        fail "MXU_VM_ACCEL=kvm, but /dev/kvm is missing or not usable by $(id -un)"
    fi
    accel="-enable-kvm -cpu host"
    ;;
tcg) accel="-accel tcg -cpu max" ;;
*) fail "MXU_VM_ACCEL must be kvm or tcg, not $ACCEL" ;;
esac
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || fail "no busybox: run scripts/deps.sh (busybox-static)"
command -v cpio >/dev/null || fail "no cpio: run scripts/deps.sh"

# ---- the kernel: a Debian cloud kernel, downloaded once, never installed ------------
CACHE=${MXU_VM_CACHE:-/var/cache/mxu-vm}
mkdir -p "$CACHE" 2>/dev/null && [ -w "$CACHE" ] || CACHE=$BUILD/vm-cache
mkdir -p "$CACHE"
kernel_pkg() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1
}
pkg=$(kernel_pkg)
if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ] && [ -z "$(find "$CACHE" -maxdepth 1 -name '*.vmlinuz')" ]; then
    apt-get update -q >/dev/null 2>&1 || true # a fresh machine has no package index
    pkg=$(kernel_pkg)
fi
if [ -z "$pkg" ]; then
    # No package index (offline): whatever kernel is cached.
    pkg=$(find "$CACHE" -maxdepth 1 -name 'linux-image-*-cloud-amd64.vmlinuz' | sort | tail -n1)
    [ -n "$pkg" ] || fail "cannot find linux-image-cloud-amd64's kernel package (apt-get update?)"
    pkg=$(basename "$pkg" .vmlinuz)
fi
kernel=$CACHE/$pkg.vmlinuz
if [ ! -s "$kernel" ]; then
    deb=$(find "$CACHE" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
    if [ -z "$deb" ]; then
        echo "cgroup2: downloading $pkg into $CACHE" >&2
        # apt's _apt sandbox user may not write the cache: download as ourselves.
        (cd "$CACHE" && apt-get download -q -o APT::Sandbox::User="$(id -un)" "$pkg" >&2) ||
            fail "apt-get download $pkg failed"
        deb=$(find "$CACHE" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
    fi
    x=$(mktemp -d)
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$x" --wildcards './boot/vmlinuz-*' ||
        fail "cannot extract the kernel from $deb"
    mv "$x"/boot/vmlinuz-* "$kernel.tmp" && mv "$kernel.tmp" "$kernel"
    rm -rf "$x" "$deb" # the kernel is what is kept
    find "$CACHE" -maxdepth 1 -name '*.vmlinuz' ! -name "$pkg.vmlinuz" -exec rm -f {} + # older ones
fi

# ---- the initramfs ------------------------------------------------------------------
# Merged /usr like Debian 12: the sandbox binds the guest's /usr and links
# /bin, /sbin, /lib, /lib64 the same way, so its programs find their loader.
work=$BUILD/vm-cgroup2
rm -rf "$work"
stage=$work/root
mkdir -p "$stage/usr/bin" "$stage/usr/sbin" "$stage/usr/lib" "$stage/usr/lib64" \
    "$stage/etc" "$stage/newroot" "$stage/proc" "$stage/sys" "$stage/dev" "$stage/tmp"
for d in bin sbin lib lib64; do
    ln -s "usr/$d" "$stage/$d"
done
cp "$BUSYBOX" "$stage/usr/bin/busybox"
for a in $("$BUSYBOX" --list); do
    [ -e "$stage/usr/bin/$a" ] || ln -s busybox "$stage/usr/bin/$a"
done
# The tests at the paths they were built with, and every library they load.
copy() { # host path -> the same path in the guest, through the guest's links
    mkdir -p "$stage$(dirname "$1")"
    cp -L "$1" "$stage$1"
}
copy "$TEST"
copy "$PROBE"
copy "$MXU"
for f in "$TEST" "$PROBE" "$MXU" "$BUSYBOX"; do # (busybox-static needs none)
    for lib in $(ldd "$f" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p'); do
        [ -e "$stage$lib" ] || copy "$lib"
    done
done
cp tests/vm/cgroup2-init.sh "$stage/init"
chmod 0755 "$stage/init"
printf 'TEST=%s\nMXU=%s\n' "$TEST" "$MXU" >"$stage/etc/mxu-vm.conf"
printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$stage/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"
(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

# ---- boot ----------------------------------------------------------------------------
echo "cgroup2: booting $(basename "$kernel" .vmlinuz) ($ACCEL, initramfs $(du -k "$work/initrd.gz" | cut -f1) KiB)" >&2
rc=0
# shellcheck disable=SC2086
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 $accel -m 1024 -smp 2 \
    -nodefaults -no-user-config -display none -serial stdio -monitor none -no-reboot \
    -kernel "$kernel" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init" \
    </dev/null >"$work/console.log" 2>&1 || rc=$?
tr -d '\r' <"$work/console.log" >"$work/console.txt"
# The guest's own lines (not the kernel's), as they came.
grep -v -E '^\[ *[0-9]+\.[0-9]+\]' "$work/console.txt" || true
secs=$(($(date +%s) - t0))
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "FAIL cgroup2/guest: timed out after ${TIMEOUT}s (console: $work/console.txt)"
    exit 1
fi
if ! grep -q '^mxu-vm: done' "$work/console.txt"; then
    echo "FAIL cgroup2/guest: did not finish (qemu exit $rc; console: $work/console.txt)"
    exit 1
fi
passed=$(grep -c '^PASS cgroup2/' "$work/console.txt" || true)
failed=$(grep -c '^FAIL cgroup2/' "$work/console.txt" || true)
echo "cgroup2: $passed passed, $failed failed in the guest (${secs}s in all)" >&2
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
