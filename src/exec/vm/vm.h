/*
 * vm — mxu's own small VMM: one KVM virtual machine with one vCPU that runs a
 * guest image at CPL3 with no guest kernel (the ABI is in vm-abi.h, the
 * design in docs/vm.md). This layer knows nothing of channels or instances:
 * it boots an image, runs the vCPU until the guest makes a hypercall or
 * fails, and lets its caller reach the guest's control block. The executor's
 * helper process (vmm-main.c) builds the instance's channel on top.
 *
 * Threading: an mxu_vm is used by one thread. mxu_vm_run() blocks in KVM_RUN
 * on that thread; a timeout kicks it out with a signal to the thread and
 * kvm_run->immediate_exit (no race: a kick that lands before KVM_RUN makes
 * KVM_RUN return at once).
 */
#ifndef MXU_VM_H
#define MXU_VM_H

#include "core/core.h"
#include "exec/vm/vm-abi.h"

typedef struct mxu_vm mxu_vm;

/* Why /dev/kvm cannot run guests here, or NULL if it can: opens it, checks
 * the API version and the capabilities the VMM uses, creates and drops one
 * VM. The answer is computed once and cached (thread-safe). */
const char *mxu_vm_probe(void);

/* Boot an image: `image` is a static x86-64 ELF executable (ET_EXEC) as
 * sdk/guest builds it, `mem_bytes` the guest's memory (rounded down to a
 * multiple of 2 MiB, within MXU_VM_MEM_MIN..MAX). Every segment is checked
 * against the layout in vm-abi.h before anything is copied. The vCPU is
 * ready to run at the entry point. */
int mxu_vm_create(const void *image, size_t image_len, uint64_t mem_bytes, mxu_vm **out,
                  mxu_err *err);
void mxu_vm_destroy(mxu_vm *vm);

typedef enum mxu_vm_exit_kind {
    MXU_VM_EXIT_HCALL,   /* a doorbell store: nr holds the hypercall number */
    MXU_VM_EXIT_FAULT,   /* the guest failed: err says how ("vm: guest fault: ...") */
    MXU_VM_EXIT_TIMEOUT, /* the timeout passed and the vCPU was kicked out */
} mxu_vm_exit_kind;

typedef struct mxu_vm_exit {
    mxu_vm_exit_kind kind;
    uint32_t nr;
} mxu_vm_exit;

/* Run the vCPU until the next hypercall, a fault or `timeout_ms` (0: none).
 * After a HCALL the caller serves it and calls mxu_vm_run() again to resume
 * the guest after its store. After a FAULT the VM is unusable: destroy it.
 * Returns 0 with *ex filled; -1 only when KVM itself fails. */
int mxu_vm_run(mxu_vm *vm, uint64_t timeout_ms, mxu_vm_exit *ex, mxu_err *err);

/* An MMIO exit, classified: a 4-byte store to MXU_VM_DOORBELL is a
 * hypercall (*value = its number), one to MXU_VM_FAULT_DOORBELL a fault
 * stub's report (*value = the vector); anything else — another address,
 * width or a read — is a bad access, the guest's fault. */
typedef enum mxu_vm_mmio_kind {
    MXU_VM_MMIO_HCALL,
    MXU_VM_MMIO_FAULT,
    MXU_VM_MMIO_BAD,
} mxu_vm_mmio_kind;
mxu_vm_mmio_kind mxu_vm_mmio_decode(uint64_t addr, uint32_t len, bool is_write,
                                    const uint8_t data[8], uint32_t *value);

/* The control block, in guest memory: the guest may change any field at any
 * time it runs; read each field once per hypercall (see vm-abi.h). */
volatile mxu_vm_ctl *mxu_vm_ctl_block(mxu_vm *vm);
/* A pointer to [gpa, gpa + len) in guest memory, or NULL if that range is
 * not wholly inside it. Write only the control block and the in buffer
 * through it: under a dirtylog pristine image, the rest is read-only. */
void *mxu_vm_guest_ptr(mxu_vm *vm, uint64_t gpa, uint64_t len);
uint64_t mxu_vm_mem_bytes(const mxu_vm *vm);

/* ---- the pristine image (vm-kvm.c) ----
 * Two ways to put a used guest back into its pristine image (docs/vm.md,
 * "Pristine images", has the measured comparison):
 *   MXU_VM_RESET_COW       guest memory becomes a private copy-on-write
 *                          view of a sealed memfd holding the image; a reset
 *                          maps a fresh view over it (the kernel drops every
 *                          written page, whoever wrote it) and maps again
 *                          the pages the last instance touched.
 *   MXU_VM_RESET_DIRTYLOG  guest memory keeps its pages, KVM logs the
 *                          guest's writes (KVM_MEM_LOG_DIRTY_PAGES); a reset
 *                          copies back from the sealed image the pages KVM
 *                          logged and the pages the host may have written
 *                          (which KVM does not log): the control block's
 *                          page and the in buffer, the only ones the host's
 *                          view of guest memory lets it write. */
typedef enum mxu_vm_reset_kind {
    MXU_VM_RESET_COW,
    MXU_VM_RESET_DIRTYLOG,
} mxu_vm_reset_kind;

/* "cow" or "dirtylog" (NULL or "": the default, cow). -1 with a message
 * naming the accepted values otherwise. */
int mxu_vm_reset_kind_parse(const char *s, mxu_vm_reset_kind *out, mxu_err *err);
const char *mxu_vm_reset_kind_name(mxu_vm_reset_kind k);

/* Keep the guest's state now — memory and vCPU — as its pristine image, to
 * be reset to the `kind` way: call it when the guest is stopped in a
 * hypercall (typically its first READ, booted and waiting for work). */
int mxu_vm_snapshot(mxu_vm *vm, mxu_vm_reset_kind kind, mxu_err *err);
/* Put the guest back into its pristine image: every byte of guest memory
 * and the vCPU's registers as they were at mxu_vm_snapshot(); the guest
 * resumes as if the hypercall it was snapshotted in had just returned. A
 * failed (faulted, timed out) VM is refused: it is discarded, never reused.
 * Under MXU_VM_RESET_DIRTYLOG, mxu_vm_guest_ptr() and mxu_vm_ctl_block()
 * point into a view that is writable only in the control block's page and
 * the in buffer (vm-abi.h): a host write anywhere else is a SIGSEGV. */
int mxu_vm_reset(mxu_vm *vm, mxu_err *err);

/* ---- serving a guest's channel (vm-serve.c) ----
 * The host side of the hypercalls in vm-abi.h: the guest's channel bytes go
 * to `out_fd`, bytes from `in_fd` come to the guest, its diagnostic text to
 * `log_fd`. Every length the guest hands over is checked against the buffer
 * it names; a bad one is the guest's fault, like a bad memory access. */
typedef struct mxu_vm_serve_state {
    /* Where the guest's byte stream stands in the frame grammar: a FATAL
     * frame can be appended only between frames. */
    uint8_t hdr[16];
    uint32_t hdr_have;
    uint64_t payload_left;
    /* The same for the node's bytes to the guest, to know the last INVOKE
     * it was given: a FATAL frame names it, so the node blames that
     * invocation rather than the instance's start. */
    uint8_t in_hdr[16];
    uint32_t in_hdr_have;
    uint64_t in_payload_left;
    uint64_t last_invoke;
    int exit_code;     /* after a clean EXIT */
    bool pending_read; /* the guest is stopped in a READ that serve must finish first */
} mxu_vm_serve_state;

/* Run the guest until it exits (returns 0, st->exit_code set) or fails
 * (returns -1 with "vm: guest fault: ..." or a host error in err; the VM is
 * not usable afterwards). `timeout_ms` bounds each stretch the guest runs
 * without a hypercall (0: none). A host that closed `out_fd` ends the guest
 * with exit code 0, as a process instance gets EPIPE and exits. */
int mxu_vm_serve(mxu_vm *vm, int in_fd, int out_fd, int log_fd, uint64_t timeout_ms,
                 mxu_vm_serve_state *st, mxu_err *err);
/* One hypercall, decoded: what the host is to do. */
typedef struct mxu_vm_hcall_args {
    uint32_t nr;
    const uint8_t *out; /* WRITE, READ, STDERR: out_len bytes, inside the out buffer */
    uint32_t out_len;
    int exit_code; /* EXIT */
    uint8_t *rand; /* RANDOM: rand_len bytes to fill, the control block's rand[] */
    uint32_t rand_len;
} mxu_vm_hcall_args;

/* Decode hypercall `nr` against the control block of guest memory `mem`
 * (`mem_bytes` long): the one place that reads what the guest hands over.
 * out_len is read once, checked against the out buffer and cleared;
 * RANDOM's rand_len likewise against rand[]; an unknown number or a bad
 * length is "vm: guest fault: ..." (-1). No KVM
 * needed: the fuzz target (fuzz/fuzz-vm-hcall.c) drives it directly. */
int mxu_vm_hcall_decode(uint8_t *mem, uint64_t mem_bytes, uint32_t nr, mxu_vm_hcall_args *hc,
                        mxu_err *err);
/* Follow the frame grammar over the guest's bytes to the node (out) and the
 * node's to the guest (in, noting the last INVOKE's id). */
void mxu_vm_track_out(mxu_vm_serve_state *st, const uint8_t *p, size_t n);
void mxu_vm_track_in(mxu_vm_serve_state *st, const uint8_t *p, size_t n);
/* Boot: serve the guest until its first READ, collect the channel bytes it
 * sent before it (its HELLO) in `sent` as well as writing them to `out_fd`,
 * and leave it stopped in that READ (st->pending_read), ready for
 * mxu_vm_snapshot() and then mxu_vm_serve(), which finishes the READ
 * first. Returns as mxu_vm_serve does when the guest exits or fails
 * before its first READ (pending_read is then false). */
int mxu_vm_serve_boot(mxu_vm *vm, int out_fd, int log_fd, uint64_t timeout_ms,
                      mxu_vm_serve_state *st, mxu_buf *sent, mxu_err *err);
/* True when the guest's output so far ends on a frame boundary. */
bool mxu_vm_serve_between_frames(const mxu_vm_serve_state *st);

#endif
