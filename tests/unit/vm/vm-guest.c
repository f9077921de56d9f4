/*
 * A tiny guest for test-vm (kvmtool's tests/ style): it reads one command
 * byte from the host and then misbehaves, or echoes, as told. Built with the
 * guest C library and guest.ld, like a function under the vm executor, but
 * without the SDK: it talks the raw hypercall ABI.
 */
#include "mxu-guest.h"

#include <stdlib.h>
#include <string.h>

int main(void);

#define EXIT_COST_ROUNDS 2000 /* test-vm.c's test_exit_cost counts on it */

int main(void)
{
    static uint8_t buf[65536];
    uint8_t cmd;
    if (mxu_guest_recv(&cmd, 1) != 1)
        return 1;
    volatile mxu_vm_ctl *ctl = MXU_GUEST_CTL;
    switch (cmd) {
    case 'e': /* echo until EOF */
        for (;;) {
            size_t n = mxu_guest_recv(buf, sizeof(buf));
            if (n == 0)
                return 0;
            mxu_guest_send(MXU_VM_HC_WRITE, buf, n);
        }
    case 'x':
        return 7;
    case 'w': /* past the end of guest memory */
        *(volatile uint32_t *)(uintptr_t)(ctl->mem_bytes + 0x1000) = 1;
        return 0;
    case 'p': /* its own page tables */
        *(volatile uint64_t *)0x8000 = 0;
        return 0;
    case 'c': /* its own code */
        *(volatile uint8_t *)(uintptr_t)main = 0xcc;
        return 0;
    case 'l':
        for (;;)
            __asm__ volatile("");
    case 'o': /* port I/O from CPL3: a triple fault under PVM, #GP on VMX */
        __asm__ volatile("outb %%al, $0x80" ::"a"(0));
        return 0;
    case 'h': /* a hostile length */
        ctl->out_len = 0xffffffffu;
        mxu_guest_hcall(MXU_VM_HC_WRITE);
        return 0;
    case 'H': /* just over the buffer */
        ctl->out_len = MXU_VM_OUT_CAP + 1;
        mxu_guest_hcall(MXU_VM_HC_STDERR);
        return 0;
    case 'u':
        mxu_guest_hcall(99);
        return 0;
    case 'R': /* RANDOM past its buffer */
        ctl->rand_len = MXU_VM_RAND_CAP + 1;
        mxu_guest_hcall(MXU_VM_HC_RANDOM);
        return 0;
    case 'g': { /* 2 x 300 random bytes (two RANDOMs each), and the TCB's canary */
        uint8_t r[600];
        mxu_guest_random(r, 300);
        mxu_guest_random(r + 300, 300);
        uint64_t canary, self;
        __asm__ volatile("mov %%fs:0x28, %0" : "=r"(canary));
        __asm__ volatile("mov %%fs:0, %0" : "=r"(self));
        mxu_guest_send(MXU_VM_HC_WRITE, r, sizeof(r));
        mxu_guest_send(MXU_VM_HC_WRITE, &canary, 8);
        mxu_guest_send(MXU_VM_HC_WRITE, &self, 8);
        return 0;
    }
    case 'd': /* the doorbell with the wrong width */
        *(volatile uint64_t *)MXU_VM_DOORBELL = MXU_VM_HC_WRITE;
        return 0;
    case 'r': /* read the doorbell page */
        return (int)*(volatile uint32_t *)MXU_VM_DOORBELL;
    case 'm': { /* dirty memory wherever it may: bss, heap, stack, out buffer */
        memset(buf, 0xa5, sizeof(buf));
        uint8_t *h = malloc(4u << 20);
        if (h)
            memset(h, 0x5a, 4u << 20);
        volatile uint8_t stack[65536];
        for (size_t i = 0; i < sizeof(stack); i++)
            stack[i] = (uint8_t)i;
        mxu_guest_send(MXU_VM_HC_STDERR, "dirty\n", 6);
        return h && stack[7] == 7 ? 9 : 3;
    }
    case 't': { /* exit cost: TSC stamps around empty WRITEs (test_exit_cost) */
        volatile uint64_t *stamp = (volatile uint64_t *)(uintptr_t)MXU_VM_OUT_ADDR;
        for (int i = 0; i < EXIT_COST_ROUNDS; i++) {
            stamp[1] = __builtin_ia32_rdtsc(); /* back from the last exit */
            stamp[2] = __builtin_ia32_rdtsc(); /* about to exit */
            ctl->out_len = 0;
            mxu_guest_hcall(MXU_VM_HC_WRITE);
        }
        return 0;
    }
    case 's': /* stderr text */
        mxu_guest_send(MXU_VM_HC_STDERR, "guest says hi\n", 14);
        return 0;
    default:
        return 2;
    }
}
