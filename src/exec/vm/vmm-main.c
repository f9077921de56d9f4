/*
 * mxu-vmm — the helper process of one vm instance:
 *
 *   mxu-vmm [--timeout-ms N] MEMORY_BYTES IMAGE
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
 * Exit status: the guest's own (0 after BYE or EOF), 70 when the guest
 * faulted or broke the ABI (the reason on stderr, and as a FATAL frame when
 * the guest's output stood between frames, so the caller sees it), 71 when
 * the VM could not be built.
 */
#include "exec/vm/vm.h"
#include "unit/frame.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
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

int main(int argc, char **argv)
{
    uint64_t timeout_ms = 0, mem = 0;
    int i = 1;
    if (argc > 2 && strcmp(argv[1], "--timeout-ms") == 0) {
        if (mxu_parse_u64(argv[2], &timeout_ms) < 0)
            timeout_ms = 0;
        i = 3;
    }
    if (argc - i != 2 || mxu_parse_u64(argv[i], &mem) < 0) {
        fprintf(stderr, "usage: mxu-vmm [--timeout-ms N] MEMORY_BYTES IMAGE\n");
        return 2;
    }
    const char *path = argv[i + 1];
    /* A node that goes away closes the pipe: writes must fail, not kill. */
    signal(SIGPIPE, SIG_IGN);

    mxu_err err = {0};
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

    mxu_vm_serve_state st = {0};
    int rc = mxu_vm_serve(vm, 3, 4, 2, timeout_ms, &st, &err);
    mxu_vm_destroy(vm);
    if (rc < 0) {
        fprintf(stderr, "%s\n", err.msg);
        if (mxu_vm_serve_between_frames(&st))
            fatal_frame(4, st.last_invoke, err.msg);
        return EXIT_GUEST_FAULT;
    }
    return st.exit_code;
}
