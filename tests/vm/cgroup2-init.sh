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

# 4. A real node (mxu serve --executor sandbox) in the root cgroup.
check() { # name command...: PASS if it succeeds
    name=$1
    shift
    if "$@"; then result PASS "node: $name"; else result FAIL "node: $name"; fi
}
gone() { # wait up to 10 s for none of the paths to exist
    for _ in $(seq 100); do
        ls -d "$@" >/dev/null 2>&1 || return 0
        sleep 0.1
    done
    return 1
}
serve() {
    "$MXU" serve --data /var/mxu --listen 127.0.0.1:8080 --executor sandbox \
        --deploy /srv/echo --deploy /srv/hog >>/tmp/mxu.log 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        "$MXU" health >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
ip link set lo up
id=0123456789abcdef # the node id, from its data directory
mkdir -p /var/mxu /srv/echo /srv/hog
echo $id >/var/mxu/node-id
printf 'name: echo\nruntime: exec\ncommand: ./run.sh\nmemory: 32Mi\ntimeout: 10s\n' >/srv/echo/mxu.yaml
printf '#!/bin/sh\nexec cat\n' >/srv/echo/run.sh
printf 'name: hog\nruntime: exec\ncommand: ./run.sh\nmemory: 32Mi\ntimeout: 10s\n' >/srv/hog/mxu.yaml
printf '#!/bin/sh\nexec dd if=/dev/zero of=/dev/null bs=64M count=1\n' >/srv/hog/run.sh
chmod 0755 /srv/echo/run.sh /srv/hog/run.sh
# What a node with this id left elsewhere in the hierarchy (it ran in
# another cgroup, then was killed): a cgroup with a process still inside.
old=/sys/fs/cgroup/elsewhere/mxu-$id
mkdir -p $old/i1
sleep 600 &
stray=$!
echo $stray >$old/i1/cgroup.procs
if serve; then
    result PASS "node: mxu serve --executor sandbox is up"
    check "a predecessor's cgroups elsewhere in the hierarchy are removed at start, their tasks killed" \
        gone $old /proc/$stray/cmdline
    check "a sandboxed function answers" test "$("$MXU" invoke echo -d hello)" = hello
    inst=$(find /sys/fs/cgroup/mxu-$id -mindepth 1 -maxdepth 1 -type d -name 'i[0-9]*' | head -n1)
    check "its instance is in a cgroup of its own (${inst#/sys/fs/cgroup}) with memory.max 32 MiB" \
        test -n "$inst" -a "$(cat "$inst/memory.max" 2>/dev/null)" = 33554432
    why=$("$MXU" invoke hog 2>&1)
    echo "  hog: $why"
    # shellcheck disable=SC2016
    check "a memory bomb is an OOM kill, told to the caller" \
        sh -c 'printf "%s" "$1" | grep -q "hog@1 killed: out of memory (limit 32 MiB)"' sh "$why"
    # A node killed with -9 while an instance is warm: the instance dies with
    # it; the next node on the same data directory removes its cgroups.
    "$MXU" invoke echo -d again >/dev/null 2>&1
    insts=$(find /sys/fs/cgroup/mxu-$id -mindepth 1 -maxdepth 1 -type d -name 'i[0-9]*' | tr '\n' ' ')
    kill -9 $pid
    wait $pid 2>/dev/null
    serve
    # shellcheck disable=SC2086 # (a list of paths)
    check "after kill -9, the next node removes the instance cgroups it left (${insts:-none})" \
        sh -c '[ -n "$*" ] && ! ls -d "$@" >/dev/null 2>&1' sh $insts
    "$MXU" invoke echo -d x >/dev/null 2>&1
    kill $pid
    wait $pid 2>/dev/null
    check "a node that stops leaves no cgroup behind" gone /sys/fs/cgroup/mxu-$id
else
    sed 's/^/  /' /tmp/mxu.log
    result FAIL "node: mxu serve --executor sandbox did not come up"
    kill $pid 2>/dev/null
fi
kill $stray 2>/dev/null
rmdir $old/i1 $old /sys/fs/cgroup/elsewhere 2>/dev/null
[ -n "$(cat /sys/fs/cgroup/elsewhere/cgroup.procs 2>/dev/null)" ] || rmdir /sys/fs/cgroup/elsewhere 2>/dev/null

# Nothing of any node or test anywhere in the hierarchy once they are done.
left=$(find /sys/fs/cgroup -mindepth 1 -type d | tr '\n' ' ')
if [ -z "$left" ]; then
    result PASS "no cgroup left in the hierarchy"
else
    result FAIL "cgroups left in the hierarchy: $left"
fi

echo "mxu-vm: done"
poweroff -f
