/*
 * mxu-guest — what the guest runtime's files share (sdk/guest/). A guest is
 * one thread at CPL3 with no kernel; these calls are its whole system
 * interface (vm-abi.h is the contract with the host).
 */
#ifndef MXU_GUEST_H
#define MXU_GUEST_H

#include "exec/vm/vm-abi.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MXU_GUEST_CTL ((volatile mxu_vm_ctl *)MXU_VM_CTL_ADDR)

/* Ring the doorbell: the host serves hypercall `nr` and resumes the guest
 * after the store. The barriers keep the compiler from moving buffer writes
 * across the exit. */
static inline void mxu_guest_hcall(uint32_t nr)
{
    __asm__ volatile("" ::: "memory");
    *(volatile uint32_t *)MXU_VM_DOORBELL = nr;
    __asm__ volatile("" ::: "memory");
}

/* Send `n` bytes to the host through the out buffer with hypercall `nr`.
 * STDERR text goes at once, in pieces of at most MXU_VM_OUT_CAP. Channel
 * bytes (WRITE) are batched: they wait in the out buffer until it is full,
 * the guest READs (the READ hands them over in the same exit), writes
 * STDERR text or exits. */
void mxu_guest_send(uint32_t nr, const void *p, size_t n);
/* Wait for bytes from the host; copy up to `cap` of them to `p`. Returns the
 * count, 0 when the host closed the channel. Bytes beyond `cap` are kept for
 * the next call. */
size_t mxu_guest_recv(void *p, size_t cap);
void mxu_guest_exit(int code) __attribute__((noreturn));

/* Fill `n` bytes with the host's entropy (the RANDOM hypercall: one exit
 * per MXU_VM_RAND_CAP bytes). */
void mxu_guest_random(void *p, size_t n);

/* |v| as printf's %e %f %g (conv, with '#' as alt; prec < 0: 6), without
 * its sign: at most cap - 1 characters and a NUL, returns the full length
 * (guest-stdlib.c; exact, rounded half to even). */
int mxu_guest_fmt_double(char *buf, size_t cap, double v, char conv, int prec, bool alt);

/* Set by the entry code from the control block. */
void mxu_guest_heap_init(uint64_t start, uint64_t end);

#endif
