/*
 * mxu-vmm — the helper process of one vm instance:
 *
 *   mxu-vmm [--timeout-ms N] [--recycle] [--reset cow|dirtylog] MEMORY_BYTES IMAGE
 *
 * started by the vm executor exactly as the process executor starts a
 * function (its own process group, PR_SET_PDEATHSIG, rlimits, the channel
 * on fd 3 (in) and fd 4 (out), stderr to the node's log). It boots IMAGE in
 * a KVM guest of MEMORY_BYTES and bridges the channel to it (vm-serve.c).
 *
 * Why a process per instance rather than a vCPU thread inside the node: a
 * VMM bug (or a KVM one) takes down one instance, not the node; the
 * scheduler's instance handling (pidfd, kill, CPU and memory usage,
 * stderr, exit reasons) works unchanged; and KVM_RUN blocks its thread, which
 * a libuv node would otherwise have to hand to a thread per VM anyway. The
 * cost is one fork+exec per cold start (docs/vm.md has the numbers).
 *
 * Recycling (--recycle; fd 5 is then a control socket to the executor,
 * exec-vm.c). The guest is booted to its first READ and kept as its
 * pristine image (mxu_vm_snapshot), its HELLO bytes recorded. When an
 * instance ends cleanly (the guest exits with 0 after BYE or EOF), the VM
 * is reset to that image — byte for byte, vm-kvm.c — and the helper tells
 * the executor ("R") and waits for the next instance's channel and stderr
 * ("G" with three descriptors), which it puts on fds 3, 4 and 2 before it
 * sends the recorded HELLO again and serves on: the guest cannot tell a
 * recycled start from a first one, and keeps nothing of the last instance.
 * An EOF on the control socket ends the helper with 0. Any other end (a
 * fault, a timeout, a non-zero exit) ends the helper as without --recycle:
 * a failed guest is never reused.
 *
 * How the guest is reset (vm.h, mxu_vm_reset_kind): --reset, else
 * copy-on-write; a name that is neither is refused. Only the executor
 * chooses, by argument: the helper's environment is the function's (its
 * manifest's env), and VMM internals are not the function's to pick.
 *
 * Exit status: the guest's own (0 after BYE or EOF), 70 when the guest
 * faulted or broke the ABI (the reason on stderr, and as a FATAL frame when
 * the guest's output stood between frames, so the caller sees it), 71 when
 * the VM could not be built.
 */
#include "exec/vm/vm.h"
#include "unit/frame.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define EXIT_GUEST_FAULT 70
#define EXIT_VM_SETUP    71

/* `id`: the invocation the guest was running (the last INVOKE it was
 * given), so the node blames it; 0 before any, when the start failed. */
static void fatal_frame(int fd, uint64_t id, const char *msg)
{
    uint8_t buf[16 + 1024];
    mxu_slice text = {msg, (uint32_t)strnlen(msg, sizeof(buf) - 64)};
    size_t n = mxu_log_encode(buf + 16, sizeof(buf) - 16, 3, text);
    mxu_frame_hdr h = {.len = (uint32_t)n, .type = MXU_FRAME_FATAL, .id = id};
    mxu_frame_hdr_encode(&h, buf);
    mxu_write_all(fd, buf, 16 + n);
}

#define CTL_FD 5

/* Tell the executor the guest is pristine again, and wait for the next
 * instance's descriptors; put them on 3 (in), 4 (out) and 2 (stderr).
 * Returns 0, or -1 when the executor closed the socket or sent something
 * else (the helper then ends). */
static int await_next_instance(void)
{
    char r = 'R';
    if (send(CTL_FD, &r, 1, MSG_NOSIGNAL) != 1)
        return -1;
    char g = 0;
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {&g, 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    ssize_t n;
    do {
        n = recvmsg(CTL_FD, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    struct cmsghdr *c = n == 1 ? CMSG_FIRSTHDR(&msg) : NULL;
    if (c == NULL || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
        c->cmsg_len != CMSG_LEN(3 * sizeof(int)) || g != 'G' || (msg.msg_flags & MSG_CTRUNC))
        return -1;
    int fds[3];
    memcpy(fds, CMSG_DATA(c), sizeof(fds));
    static const int to[3] = {3, 4, 2};
    int rc = 0;
    for (int k = 0; k < 3; k++) {
        if (dup2(fds[k], to[k]) < 0)
            rc = -1;
        close(fds[k]);
    }
    return rc;
}

int main(int argc, char **argv)
{
    uint64_t timeout_ms = 0, mem = 0;
    bool recycle = false;
    const char *reset_name = NULL;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) {
            if (mxu_parse_u64(argv[++i], &timeout_ms) < 0)
                timeout_ms = 0;
        } else if (strcmp(argv[i], "--recycle") == 0) {
            recycle = true;
        } else if (strcmp(argv[i], "--reset") == 0 && i + 1 < argc) {
            reset_name = argv[++i];
        } else {
            break;
        }
    }
    if (argc - i != 2 || mxu_parse_u64(argv[i], &mem) < 0) {
        fprintf(stderr, "usage: mxu-vmm [--timeout-ms N] [--recycle] [--reset cow|dirtylog] "
                        "MEMORY_BYTES IMAGE\n");
        return 2;
    }
    mxu_err err = {0};
    mxu_vm_reset_kind reset_kind;
    if (mxu_vm_reset_kind_parse(reset_name, &reset_kind, &err) < 0) {
        fprintf(stderr, "mxu-vmm: %s\n", err.msg);
        return 2;
    }
    const char *path = argv[i + 1];
    /* A node that goes away closes the pipe: writes must fail, not kill. */
    signal(SIGPIPE, SIG_IGN);

    mxu_buf image = {0};
    if (mxu_read_file(path, (size_t)MXU_MIN(mem, (uint64_t)MXU_VM_MEM_MAX), &image, &err) < 0) {
        fprintf(stderr, "mxu-vmm: %s\n", err.msg);
        return EXIT_VM_SETUP;
    }
    mxu_vm *vm;
    if (mxu_vm_create(image.data, image.len, mem, &vm, &err) < 0) {
        fprintf(stderr, "mxu-vmm: %s\n", err.msg);
        fatal_frame(4, 0, err.msg);
        return EXIT_VM_SETUP;
    }
    mxu_buf_free(&image);
    /* The image was copied into guest memory: give its heap pages back, so
     * an idle helper holds only what it uses (docs/vm.md, memory). */
    malloc_trim(0);

    mxu_vm_serve_state st = {0};
    mxu_buf hello = {0};
    int rc = 0;
    bool ended = false; /* the guest exited or failed while booting */
    if (recycle) {
        /* Boot to the first READ and keep that as the pristine image. */
        rc = mxu_vm_serve_boot(vm, 4, 2, timeout_ms, &st, &hello, &err);
        ended = rc < 0 || !st.pending_read;
        if (!ended && mxu_vm_snapshot(vm, reset_kind, &err) < 0) {
            fprintf(stderr, "mxu-vmm: no pristine image, not recycling: %s\n", err.msg);
            recycle = false;
        }
    }
    while (!ended) {
        rc = mxu_vm_serve(vm, 3, 4, 2, timeout_ms, &st, &err);
        if (rc < 0 || !recycle || st.exit_code != 0)
            break;
        /* A clean end: reset, and serve the unit's next instance. */
        if (mxu_vm_reset(vm, &err) < 0) {
            fprintf(stderr, "mxu-vmm: cannot reset the guest: %s\n", err.msg);
            break;
        }
        if (await_next_instance() < 0)
            break; /* the executor wants no more: a clean end */
        st = (mxu_vm_serve_state){.pending_read = true};
        if (mxu_write_all(4, hello.data, hello.len) < 0)
            break;
    }
    mxu_buf_free(&hello);
    mxu_vm_destroy(vm);
    if (rc < 0) {
        fprintf(stderr, "%s\n", err.msg);
        if (mxu_vm_serve_between_frames(&st))
            fatal_frame(4, st.last_invoke, err.msg);
        return EXIT_GUEST_FAULT;
    }
    return st.exit_code;
}
