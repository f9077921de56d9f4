/*
 * vm-abi — the contract between mxu's VMM (src/exec/vm/) and a guest image
 * (sdk/guest/), version 1. Both sides include this header; docs/vm.md says
 * the same in prose.
 *
 * A guest has no kernel. The host prepares everything privileged (page
 * tables, GDT, IDT, TSS, control registers) before the first instruction,
 * and the guest starts at CPL3 at its ELF entry point with:
 *
 *   rdi = MXU_VM_CTL_ADDR (the control block below), rsp = the top of its
 *   stack (16-byte aligned), rflags = 0x2 (interrupts off), SSE enabled,
 *   the fs base at MXU_VM_TCB_ADDR (the guest's thread control block: the
 *   stack protector's canary is read from %fs:0x28).
 *
 * Guest-physical and guest-virtual addresses are the same (identity map,
 * 2 MiB pages: 1 GiB pages triple-fault under PVM):
 *
 *   0 .. 2 MiB          system: page tables, GDT, IDT, TSS, fault stubs;
 *                       supervisor-only, so the guest can neither read nor
 *                       rewrite them (and a NULL dereference faults)
 *   2 .. 4 MiB          the channel: the control block, then the in and out
 *                       buffers; user read-write, not executable
 *   4 MiB ..            the image's PT_LOAD segments (text read-execute,
 *                       data read-write; sdk/guest/guest.ld puts them in
 *                       separate 2 MiB pages), then the heap, then the stack
 *                       at the top of guest memory
 *   MXU_VM_DOORBELL     one 2 MiB page with no memory behind it: a store
 *                       there exits to the host (KVM_EXIT_MMIO)
 *
 * A hypercall is a 32-bit store of its number to MXU_VM_DOORBELL. Its
 * arguments and results are fields of the control block. The host reads
 * each field once, checks it against the buffer it describes, and never
 * trusts anything else in guest memory.
 */
#ifndef MXU_VM_ABI_H
#define MXU_VM_ABI_H

#include <stdint.h>

#define MXU_VM_ABI_VERSION 1u
#define MXU_VM_CTL_MAGIC   0x56555850u /* "PXUV" little-endian: written by the host */

#define MXU_VM_PAGE       (2u << 20) /* the only page size the guest is mapped with */
#define MXU_VM_CTL_ADDR   0x200000ull
#define MXU_VM_IN_ADDR    0x201000ull /* host -> guest bytes */
#define MXU_VM_IN_CAP     0xff000u    /* ~1 MiB */
#define MXU_VM_OUT_ADDR   0x300000ull /* guest -> host bytes */
#define MXU_VM_OUT_CAP    0x100000u   /* 1 MiB */
#define MXU_VM_IMAGE_BASE 0x400000ull /* the lowest address a PT_LOAD segment may use */
#define MXU_VM_DOORBELL   0xf0000000ull
/* The fs base: guest-owned bytes in the control block's page, which the
 * host neither reads nor writes. The guest SDK puts a thread control block
 * there (a self pointer at 0, the stack protector's canary at 0x28, as
 * x86-64 code compiled for glibc expects), so that library code built with
 * -fstack-protector runs in a guest. */
#define MXU_VM_TCB_ADDR  (MXU_VM_CTL_ADDR + 0x800)
#define MXU_VM_TCB_BYTES 0x800u
/* The most random bytes one RANDOM hypercall gives. */
#define MXU_VM_RAND_CAP 256u
/* The fault stubs (CPL0) store the exception vector here. */
#define MXU_VM_FAULT_DOORBELL (MXU_VM_DOORBELL + 8)

/* Guest memory: a multiple of MXU_VM_PAGE between these, below the doorbell. */
#define MXU_VM_MEM_MIN (8ull << 20)
#define MXU_VM_MEM_MAX (3ull << 30)

/* Hypercalls: the value stored to the doorbell. */
enum mxu_vm_hcall {
    /* Take out_len bytes of the out buffer (channel frames, a byte stream
     * exactly as the process executor's pipe carries it); out_len = 0 after. */
    MXU_VM_HC_WRITE = 1,
    /* WRITE, then wait until the host has bytes for the guest: in_len bytes
     * at the start of the in buffer (0 = the host closed the channel). */
    MXU_VM_HC_READ = 2,
    /* Diagnostic text (the guest's stderr): out_len bytes of the out buffer,
     * which must not hold channel bytes at the same time. */
    MXU_VM_HC_STDERR = 3,
    /* The guest is done: exit_code says how. Never returns. */
    MXU_VM_HC_EXIT = 4,
    /* rand_len (at most MXU_VM_RAND_CAP) bytes from the host's getrandom()
     * into rand[]: a guest's only entropy. Fresh at every call, so guests
     * reset to the same pristine image still draw different bytes. Added
     * to version 1 (an older guest never rings it). */
    MXU_VM_HC_RANDOM = 5,
};

/* At MXU_VM_CTL_ADDR. Fields marked "host" are written by the host before
 * the guest starts or before a hypercall returns; the guest must not rely on
 * anything else. */
typedef struct mxu_vm_ctl {
    uint32_t magic;      /* host: MXU_VM_CTL_MAGIC */
    uint32_t abi;        /* host: MXU_VM_ABI_VERSION */
    uint64_t mem_bytes;  /* host: size of guest memory */
    uint64_t heap_start; /* host: first byte after the image, 2 MiB aligned */
    uint64_t heap_end;   /* host: where the stack's region begins */
    uint64_t now_ms;     /* host: monotonic milliseconds, at start and after each hypercall */
    uint32_t in_len;     /* host: bytes for the guest after READ */
    uint32_t out_len;    /* guest: bytes to take for WRITE / READ / STDERR */
    uint32_t exit_code;  /* guest: for EXIT */
    uint32_t rand_len;   /* guest: bytes wanted by RANDOM */
    uint64_t wall_ms;    /* host: milliseconds since the epoch, when now_ms was taken */
    uint8_t rand[MXU_VM_RAND_CAP]; /* host: RANDOM's bytes */
} mxu_vm_ctl;

_Static_assert(sizeof(mxu_vm_ctl) <= MXU_VM_TCB_ADDR - MXU_VM_CTL_ADDR,
               "the control block must end below the guest's TCB");

#endif
