/*
 * The guest's entry and its channel to the host. The host starts the guest
 * at _start with rdi = the control block and rsp = the top of the stack
 * (vm-abi.h); there is nothing to set up but the heap and the thread
 * control block, so _start aligns the stack and calls guest_start(), which
 * runs main() like a C runtime does.
 */
#include "mxu-guest.h"

#include <stddef.h>
#include <string.h>

int main(void);

__asm__(".section .text.entry,\"ax\"\n"
        ".globl _start\n"
        "_start:\n"
        "    and $-16, %rsp\n"
        "    call mxu_guest_start\n"
        "    ud2\n"
        ".text\n");

void mxu_guest_start(volatile mxu_vm_ctl *ctl) __attribute__((noreturn, used));

void mxu_guest_start(volatile mxu_vm_ctl *ctl)
{
    if (ctl->magic != MXU_VM_CTL_MAGIC || ctl->abi != MXU_VM_ABI_VERSION)
        mxu_guest_exit(126);
    /* The TCB the host pointed fs at: a self pointer (what %fs:0 holds
     * under glibc) and the stack protector's canary at 0x28, for library
     * code built with -fstack-protector (Debian's static archives are).
     * Its low byte is 0, as glibc's, so a string overrun cannot copy it.
     * Drawn before the pristine image is taken: guests reset to one image
     * share it, as processes forked from one parent do. Nothing before
     * this point may be built with the stack protector. */
    uint64_t *tcb = (uint64_t *)(uintptr_t)MXU_VM_TCB_ADDR;
    uint64_t canary;
    mxu_guest_random(&canary, sizeof(canary));
    tcb[0] = (uint64_t)(uintptr_t)tcb;
    tcb[0x28 / 8] = canary & ~(uint64_t)0xff;
    mxu_guest_heap_init(ctl->heap_start, ctl->heap_end);
    mxu_guest_exit(main());
}

void mxu_guest_random(void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        size_t k = n < MXU_VM_RAND_CAP ? n : MXU_VM_RAND_CAP;
        MXU_GUEST_CTL->rand_len = (uint32_t)k;
        mxu_guest_hcall(MXU_VM_HC_RANDOM);
        memcpy(b, (const uint8_t *)(uintptr_t)(MXU_VM_CTL_ADDR + offsetof(mxu_vm_ctl, rand)), k);
        b += k;
        n -= k;
    }
}

/* Channel bytes written and not yet handed over: they wait in the out
 * buffer until it is full or the guest asks to READ (which takes them in
 * the same exit). A warm invocation is then one exit, not two: the RESULT
 * goes out with the READ that waits for the next INVOKE. Under PVM an exit
 * costs about 18 us, the whole of a no-op invocation's guest time. */
static uint32_t out_pend;

/* Hand the pending channel bytes over now (before STDERR, which uses the
 * same buffer, and before EXIT). */
static void flush_pending(void)
{
    if (out_pend == 0)
        return;
    MXU_GUEST_CTL->out_len = out_pend;
    out_pend = 0;
    mxu_guest_hcall(MXU_VM_HC_WRITE);
}

void mxu_guest_send(uint32_t nr, const void *p, size_t n)
{
    const uint8_t *b = p;
    if (nr == MXU_VM_HC_WRITE) {
        while (n > 0) {
            size_t k = MXU_VM_OUT_CAP - out_pend;
            k = n < k ? n : k;
            memcpy((uint8_t *)(uintptr_t)MXU_VM_OUT_ADDR + out_pend, b, k);
            out_pend += (uint32_t)k;
            b += k;
            n -= k;
            if (out_pend == MXU_VM_OUT_CAP)
                flush_pending();
        }
        return;
    }
    flush_pending();
    do {
        size_t k = n < MXU_VM_OUT_CAP ? n : MXU_VM_OUT_CAP;
        memcpy((void *)(uintptr_t)MXU_VM_OUT_ADDR, b, k);
        MXU_GUEST_CTL->out_len = (uint32_t)k;
        mxu_guest_hcall(nr);
        b += k;
        n -= k;
    } while (n > 0);
}

/* What the last READ brought that the caller had no room for. */
static size_t in_pos, in_have;

size_t mxu_guest_recv(void *p, size_t cap)
{
    if (in_pos == in_have) {
        /* READ hands over the pending output first: one exit for both. */
        MXU_GUEST_CTL->out_len = out_pend;
        out_pend = 0;
        mxu_guest_hcall(MXU_VM_HC_READ);
        uint32_t n = MXU_GUEST_CTL->in_len;
        in_pos = 0;
        in_have = n <= MXU_VM_IN_CAP ? n : 0;
        if (in_have == 0)
            return 0;
    }
    size_t k = in_have - in_pos < cap ? in_have - in_pos : cap;
    memcpy(p, (const uint8_t *)(uintptr_t)MXU_VM_IN_ADDR + in_pos, k);
    in_pos += k;
    return k;
}

void mxu_guest_exit(int code)
{
    flush_pending();
    for (;;) {
        MXU_GUEST_CTL->exit_code = (uint32_t)code;
        mxu_guest_hcall(MXU_VM_HC_EXIT);
    }
}
