#!/bin/sh
# /init of the cgroup v2 test guest (tests/vm/cgroup2.sh builds the image).
#
# Stage 1 runs on the initramfs itself, which cannot be pivot_root'ed away
# from (the sandbox does exactly that): it copies the image onto a tmpfs and
# switch_roots there. Stage 2 mounts cgroup2 alone at /sys/fs/cgroup (the way
# systemd does on a pure v2 host), runs the sandbox tests, prints one
# "PASS|FAIL cgroup2/..." line per case and "mxu-vm: done", and powers off.
# Settings come from /etc/mxu-vm.conf (TEST=the test binary).
export PATH=/usr/bin:/usr/sbin
set -u

if [ "${1:-}" != stage2 ]; then
    mount -t tmpfs -o mode=0755 root /newroot
    for e in /*; do
        case $e in /newroot | /proc | /sys | /dev) ;; *) cp -a "$e" /newroot/ ;; esac
    done
    mkdir -p /newroot/proc /newroot/sys /newroot/dev
    # shellcheck disable=SC2093 # (it returns only if it failed)
    exec switch_root /newroot /init stage2
    echo "FAIL cgroup2/boot: switch_root failed"
    poweroff -f
fi

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
chmod 1777 /tmp # on the root tmpfs: the build tree may live under /tmp
echo 1 >/proc/sys/kernel/printk # keep OOM reports off the console
# shellcheck disable=SC1091
. /etc/mxu-vm.conf

result() { # PASS|FAIL name [why]
    echo "$1 cgroup2/$2${3:+: $3}"
}
# Run one command; its PASS/FAIL lines get the cgroup2/<prefix> prefix, and
# a non-zero exit without a FAIL line counts as one.
run() { # prefix name cmd...
    prefix=$1 name=$2
    shift 2
    out=$("$@" 2>&1)
    rc=$?
    printf '%s\n' "$out" | grep -v -E '^(PASS|FAIL) '
    printf '%s\n' "$out" | grep -E '^(PASS|FAIL) ' | sed -E "s#^(PASS|FAIL) #\\1 cgroup2/$prefix#"
    if [ $rc -ne 0 ] && ! printf '%s\n' "$out" | grep -q '^FAIL '; then
        result FAIL "$prefix$name" "exit $rc"
    fi
}

# Only cgroup2, nothing of v1: what a systemd host in unified mode mounts.
if mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup &&
    ! grep -q ' cgroup ' /proc/mounts &&
    echo "+memory +pids +cpu" >/sys/fs/cgroup/cgroup.subtree_control; then
    result PASS "guest: cgroup2 only at /sys/fs/cgroup, +memory +pids +cpu ($(uname -r))"
else
    result FAIL "guest: cannot set up a pure cgroup v2 hierarchy"
fi

export MXU_TEST_REQUIRE_SANDBOX=1 # a sandbox that cannot run here is a failure
cd /tmp || exit 1

# 1. The node in the root cgroup (a container's or a VM's init).
run "" test-sandbox "$TEST"

# 2. The node alone in a cgroup of its own that it was put in, as in a
# systemd service with Delegate=yes: it cannot enable controllers there while
# it is inside, so it moves itself into a leaf beside its instances. One
# fresh service cgroup per case, each case in the node's own process.
i=0
for c in test_cgroup_limits test_oom test_fork_bomb test_leftovers_swept; do
    i=$((i + 1))
    svc=/sys/fs/cgroup/svc$i
    mkdir "$svc"
    # shellcheck disable=SC2016 # ($$ is the inner shell's)
    run service/ "$c" sh -c 'echo $$ >"$1/cgroup.procs" && MXU_TEST_NOFORK=1 exec "$2" "$3"' \
        sh "$svc" "$TEST" "$c"
    # What is left: the node's leaf, nothing else (its instances' and its
    # parent cgroup are gone with the node).
    left=$(cd "$svc" && find . -mindepth 1 -type d | grep -v -E '^\./mxu-[^/]*-node$' | tr '\n' ' ')
    leaf=$(cd "$svc" && find . -mindepth 1 -maxdepth 1 -type d -name 'mxu-*-node' | wc -l)
    if [ -z "$left" ] && [ "$leaf" -eq 1 ]; then
        result PASS "service/$c: the node moved into its leaf; nothing else left"
    else
        result FAIL "service/$c: left behind: ${left:-nothing} (leaves: $leaf)"
    fi
    find "$svc" -depth -mindepth 1 -type d -exec rmdir {} \;
    rmdir "$svc"
done

# 3. The node in a cgroup it shares with other processes (a login shell's):
# no controllers can be enabled there, so the sandbox must refuse, say why,
# and leave the node where it was and nothing behind.
svc=/sys/fs/cgroup/shared
mkdir "$svc"
# shellcheck disable=SC2016
out=$(env -u MXU_TEST_REQUIRE_SANDBOX sh -c \
    'echo $$ >"$1/cgroup.procs" && "$2" test_prepare_outside_bundle' sh "$svc" "$TEST" 2>&1)
left=$(cd "$svc" && find . -mindepth 1 -type d | tr '\n' ' ')
if printf '%s\n' "$out" | grep "other processes share the node's cgroup" && [ -z "$left" ]; then
    result PASS "shared cgroup: the sandbox refuses and says why; nothing left"
else
    printf '%s\n' "$out" | sed 's/^/  /' # its PASS line is not ours
    result FAIL "shared cgroup: no clear refusal, or left behind: ${left:-nothing}"
fi
rmdir "$svc"

# Nothing of any node or test anywhere in the hierarchy once they are done.
left=$(find /sys/fs/cgroup -mindepth 1 -type d | tr '\n' ' ')
if [ -z "$left" ]; then
    result PASS "no cgroup left in the hierarchy"
else
    result FAIL "cgroups left in the hierarchy: $left"
fi

echo "mxu-vm: done"
poweroff -f
