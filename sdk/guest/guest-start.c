/*
 * The guest's entry and its channel to the host. The host starts the guest
 * at _start with rdi = the control block and rsp = the top of the stack
 * (vm-abi.h); there is nothing to set up but the heap, so _start aligns the
 * stack and calls guest_start(), which runs main() like a C runtime does.
 */
#include "mxu-guest.h"

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
    mxu_guest_heap_init(ctl->heap_start, ctl->heap_end);
    mxu_guest_exit(main());
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
