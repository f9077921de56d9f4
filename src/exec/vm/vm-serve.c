/*
 * Serving a guest's hypercalls: the bridge between the channel pipes the
 * node gave the helper process and the guest's buffers (vm-abi.h).
 *
 * The vCPU is stopped while a hypercall is served, so there is no ring and
 * no concurrency: the guest fills the out buffer and rings, the host copies
 * the bytes out and writes them to the node; the guest asks to READ, the host
 * blocks on the node's pipe and copies what came into the in buffer. The
 * node's pipes carry exactly the stream a process instance would write, so
 * the node needs no change for vm instances, and the frames are validated
 * there as for any instance. What is checked here is what only the VMM can
 * check: the guest's lengths against its own buffers, read once.
 */
#include "exec/vm/vm.h"
#include "unit/frame.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/random.h>

/* Write everything, waiting for room: the node's side never stops reading
 * for long (one libuv loop), so a blocking wait is fine here. Returns 0, or
 * -1 with errno (EPIPE: the node closed the channel). */
static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            poll(&pfd, 1, -1);
            continue;
        }
        if (k < 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Follow the frame grammar over a byte stream, only to know where frames
 * end (the node decodes and validates them); `on_hdr` sees each header. */
typedef struct frame_track {
    uint8_t *hdr;
    uint32_t *hdr_have;
    uint64_t *payload_left;
} frame_track;

static void track_frames(frame_track t, const uint8_t *p, size_t n, uint64_t *last_invoke)
{
    while (n > 0) {
        if (*t.payload_left) {
            size_t k = (size_t)MXU_MIN((uint64_t)n, *t.payload_left);
            *t.payload_left -= k;
            p += k;
            n -= k;
            continue;
        }
        size_t k = MXU_MIN(n, 16u - *t.hdr_have);
        memcpy(t.hdr + *t.hdr_have, p, k);
        *t.hdr_have += (uint32_t)k;
        p += k;
        n -= k;
        if (*t.hdr_have == 16) {
            uint32_t len;
            memcpy(&len, t.hdr, 4); /* little-endian, like the wire */
            *t.payload_left = len;
            *t.hdr_have = 0;
            if (last_invoke && t.hdr[4] == MXU_FRAME_INVOKE)
                memcpy(last_invoke, t.hdr + 8, 8);
        }
    }
}

void mxu_vm_track_out(mxu_vm_serve_state *st, const uint8_t *p, size_t n)
{
    track_frames((frame_track){st->hdr, &st->hdr_have, &st->payload_left}, p, n, NULL);
}

void mxu_vm_track_in(mxu_vm_serve_state *st, const uint8_t *p, size_t n)
{
    track_frames((frame_track){st->in_hdr, &st->in_hdr_have, &st->in_payload_left}, p, n,
                 &st->last_invoke);
}

bool mxu_vm_serve_between_frames(const mxu_vm_serve_state *st)
{
    return st->hdr_have == 0 && st->payload_left == 0;
}

int mxu_vm_hcall_decode(uint8_t *mem, uint64_t mem_bytes, uint32_t nr, mxu_vm_hcall_args *hc,
                        mxu_err *err)
{
    memset(hc, 0, sizeof(*hc));
    hc->nr = nr;
    if (mem_bytes < MXU_VM_OUT_ADDR + MXU_VM_OUT_CAP)
        return mxu_err_set(err, EINVAL, "vm: guest memory too small for the channel buffers");
    volatile mxu_vm_ctl *ctl = (volatile mxu_vm_ctl *)(mem + MXU_VM_CTL_ADDR);
    switch (nr) {
    case MXU_VM_HC_WRITE:
    case MXU_VM_HC_READ:
    case MXU_VM_HC_STDERR: {
        /* Read once, so the guest cannot change it between the check and
         * the copy (it is stopped anyway, but a second vCPU one day must
         * not reopen this). */
        uint32_t len = ctl->out_len;
        if (len > MXU_VM_OUT_CAP)
            return mxu_err_set(
                err, EFAULT, "vm: guest fault: hypercall with out_len %u, over the %u-byte buffer",
                len, MXU_VM_OUT_CAP);
        hc->out = mem + MXU_VM_OUT_ADDR;
        hc->out_len = len;
        ctl->out_len = 0;
        return 0;
    }
    case MXU_VM_HC_EXIT:
        hc->exit_code = (int)(ctl->exit_code & 0xff);
        return 0;
    case MXU_VM_HC_RANDOM: {
        uint32_t len = ctl->rand_len; /* read once, as out_len */
        if (len > MXU_VM_RAND_CAP)
            return mxu_err_set(err, EFAULT,
                               "vm: guest fault: RANDOM with rand_len %u, over the %u-byte buffer",
                               len, MXU_VM_RAND_CAP);
        hc->rand = mem + MXU_VM_CTL_ADDR + offsetof(mxu_vm_ctl, rand);
        hc->rand_len = len;
        ctl->rand_len = 0;
        return 0;
    }
    default:
        return mxu_err_set(err, EFAULT, "vm: guest fault: unknown hypercall %u", nr);
    }
}

/* The second half of a READ: wait for the node's bytes and give them to
 * the guest (in_len = 0: the node closed the channel). */
static int serve_input(mxu_vm *vm, int in_fd, mxu_vm_serve_state *st, mxu_err *err)
{
    volatile mxu_vm_ctl *ctl = mxu_vm_ctl_block(vm);
    ctl->in_len = 0;
    for (;;) {
        ssize_t k = read(in_fd, mxu_vm_guest_ptr(vm, MXU_VM_IN_ADDR, MXU_VM_IN_CAP), MXU_VM_IN_CAP);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = in_fd, .events = POLLIN};
            poll(&pfd, 1, -1);
            continue;
        }
        if (k < 0)
            return mxu_err_sys(err, errno, "vm: reading from the node");
        ctl->in_len = (uint32_t)k; /* 0: EOF, the guest exits */
        mxu_vm_track_in(st, mxu_vm_guest_ptr(vm, MXU_VM_IN_ADDR, (uint64_t)k), (size_t)k);
        break;
    }
    ctl->now_ms = mxu_now_ns() / 1000000u;
    ctl->wall_ms = mxu_wall_ms();
    return 0;
}

/* RANDOM: `n` (at most MXU_VM_RAND_CAP) bytes from the kernel's CSPRNG. */
static int fill_random(uint8_t *p, uint32_t n, mxu_err *err)
{
    while (n > 0) {
        ssize_t k = getrandom(p, n, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return mxu_err_sys(err, errno, "vm: getrandom for the guest");
        p += k;
        n -= (uint32_t)k;
    }
    return 0;
}

/* Serve until the guest READs (stop_at_read: it is left stopped in that
 * READ, its output handed over, st->pending_read set) or exits or fails.
 * `sent`, if not NULL, collects the channel bytes handed over. */
static int serve_loop(mxu_vm *vm, int in_fd, int out_fd, int log_fd, uint64_t timeout_ms,
                      mxu_vm_serve_state *st, bool stop_at_read, mxu_buf *sent, mxu_err *err)
{
    bool host_gone = false;
    if (st->pending_read) {
        st->pending_read = false;
        if (serve_input(vm, in_fd, st, err) < 0)
            return -1;
    }
    for (;;) {
        mxu_vm_exit ex;
        if (mxu_vm_run(vm, timeout_ms, &ex, err) < 0)
            return -1;
        if (ex.kind != MXU_VM_EXIT_HCALL)
            return -1;
        mxu_vm_hcall_args hc;
        if (mxu_vm_hcall_decode(mxu_vm_guest_ptr(vm, 0, mxu_vm_mem_bytes(vm)), mxu_vm_mem_bytes(vm),
                                ex.nr, &hc, err) < 0)
            return -1;
        const uint8_t *p = hc.out;
        uint32_t n = hc.out_len;
        switch (ex.nr) {
        case MXU_VM_HC_WRITE:
        case MXU_VM_HC_READ:
            if (n && !host_gone) {
                mxu_vm_track_out(st, p, n);
                if (sent)
                    mxu_buf_append(sent, p, n);
                if (write_all(out_fd, p, n) < 0) {
                    if (errno != EPIPE)
                        return mxu_err_sys(err, errno, "vm: writing to the node");
                    host_gone = true;
                }
            }
            if (ex.nr == MXU_VM_HC_WRITE)
                break;
            if (host_gone) {
                st->exit_code = 0; /* nobody left to answer */
                return 0;
            }
            if (stop_at_read) {
                st->pending_read = true;
                return 0;
            }
            if (serve_input(vm, in_fd, st, err) < 0)
                return -1;
            break;
        case MXU_VM_HC_RANDOM:
            /* The host's entropy, never a seed kept in the image: guests
             * reset to one pristine image must not share a stream. */
            if (fill_random(hc.rand, hc.rand_len, err) < 0)
                return -1;
            break;
        case MXU_VM_HC_STDERR:
            if (n && log_fd >= 0 && write_all(log_fd, p, n) < 0 && errno != EPIPE)
                return mxu_err_sys(err, errno, "vm: writing the guest's stderr");
            break;
        default: /* EXIT: the decoder refused every other number */
            st->exit_code = hc.exit_code;
            return 0;
        }
    }
}

int mxu_vm_serve(mxu_vm *vm, int in_fd, int out_fd, int log_fd, uint64_t timeout_ms,
                 mxu_vm_serve_state *st, mxu_err *err)
{
    return serve_loop(vm, in_fd, out_fd, log_fd, timeout_ms, st, false, NULL, err);
}

int mxu_vm_serve_boot(mxu_vm *vm, int out_fd, int log_fd, uint64_t timeout_ms,
                      mxu_vm_serve_state *st, mxu_buf *sent, mxu_err *err)
{
    return serve_loop(vm, -1, out_fd, log_fd, timeout_ms, st, true, sent, err);
}
