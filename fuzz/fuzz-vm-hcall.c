/*
 * fuzz-vm-hcall — libFuzzer target for the host side of the vm guest ABI
 * (src/exec/vm/vm-abi.h): everything a hostile guest hands the VMM. The
 * input is a script of exits, each one an MMIO access (address, width,
 * direction, data) as KVM reports it, with the control block's fields and
 * the out buffer's bytes as the guest left them, and bytes from the node
 * into the in buffer. Every exit goes through the decoders the helper uses
 * (mxu_vm_mmio_decode, mxu_vm_hcall_decode) and the frame trackers
 * (mxu_vm_track_out, mxu_vm_track_in), and must leave:
 *   - a hypercall only for a 4-byte store to the doorbell;
 *   - on success, the bytes taken wholly inside the out buffer (at most
 *     MXU_VM_OUT_CAP), out_len cleared; EXIT's code in 0..255; RANDOM's
 *     bytes to fill wholly inside the control block's rand[], rand_len
 *     cleared;
 *   - on failure, a "vm: guest fault" message, never anything taken;
 *   - frame trackers that never hold a full header.
 * Guest memory is exactly the 4 MiB the channel needs (calloc'd once), so
 * ASan sees any read or write past it.
 */
#include "exec/vm/vm.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)   \
    do {             \
        if (!(c))    \
            abort(); \
    } while (0)

#define MEM_BYTES (MXU_VM_OUT_ADDR + MXU_VM_OUT_CAP)

static uint8_t *mem;

/* Take `n` bytes of the input, or fewer at its end. */
static size_t take(const uint8_t **data, size_t *size, void *out, size_t n)
{
    n = n < *size ? n : *size;
    memcpy(out, *data, n);
    *data += n;
    *size -= n;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (mem == NULL)
        mem = calloc(1, MEM_BYTES);
    mxu_vm_serve_state st;
    memset(&st, 0, sizeof(st));
    volatile mxu_vm_ctl *ctl = (volatile mxu_vm_ctl *)(mem + MXU_VM_CTL_ADDR);
    while (size > 0) {
        /* One exit: op, address selector, width, data, out_len, exit_code,
         * then a run of bytes for the out (or in) buffer. */
        struct {
            uint8_t op, sel, width;
            uint8_t data[8];
            uint32_t out_len, exit_code;
            uint16_t nbytes;
        } __attribute__((packed)) e;
        memset(&e, 0, sizeof(e));
        take(&data, &size, &e, sizeof(e));
        static const uint64_t addrs[] = {MXU_VM_DOORBELL,
                                         MXU_VM_FAULT_DOORBELL,
                                         MXU_VM_DOORBELL + 4,
                                         MXU_VM_DOORBELL - 4,
                                         0,
                                         ~0ull};
        uint64_t addr = addrs[e.sel % (sizeof(addrs) / sizeof(addrs[0]))];
        if (e.op & 0x80) { /* bytes from the node into the in buffer */
            size_t n = e.nbytes % (MXU_VM_IN_CAP + 1);
            n = take(&data, &size, mem + MXU_VM_IN_ADDR, n);
            mxu_vm_track_in(&st, mem + MXU_VM_IN_ADDR, n);
            REQUIRE(st.in_hdr_have < 16);
            continue;
        }
        size_t n = take(&data, &size, mem + MXU_VM_OUT_ADDR, e.nbytes);
        ctl->out_len = e.out_len;
        ctl->exit_code = e.exit_code;
        ctl->rand_len = e.exit_code; /* RANDOM's length: the same script field */
        uint32_t nr;
        mxu_vm_mmio_kind k = mxu_vm_mmio_decode(addr, e.width % 9, e.op & 1, e.data, &nr);
        if (k != MXU_VM_MMIO_HCALL) {
            REQUIRE(k == MXU_VM_MMIO_BAD || (addr == MXU_VM_FAULT_DOORBELL && e.width % 9 == 4));
            continue;
        }
        REQUIRE(addr == MXU_VM_DOORBELL && e.width % 9 == 4 && (e.op & 1));
        mxu_vm_hcall_args hc;
        mxu_err err = {0};
        if (mxu_vm_hcall_decode(mem, MEM_BYTES, nr, &hc, &err) < 0) {
            REQUIRE(strstr(err.msg, "vm: guest fault") != NULL);
            continue;
        }
        REQUIRE(hc.nr == nr);
        if (nr == MXU_VM_HC_EXIT) {
            REQUIRE(hc.exit_code >= 0 && hc.exit_code <= 255);
            continue;
        }
        if (nr == MXU_VM_HC_RANDOM) {
            REQUIRE(hc.rand == mem + MXU_VM_CTL_ADDR + offsetof(mxu_vm_ctl, rand));
            REQUIRE(hc.rand_len == e.exit_code && hc.rand_len <= MXU_VM_RAND_CAP);
            REQUIRE(ctl->rand_len == 0 && hc.out_len == 0);
            memset(hc.rand, 0xa5, hc.rand_len); /* what the helper fills (ASan) */
            continue;
        }
        REQUIRE(hc.out == mem + MXU_VM_OUT_ADDR && hc.out_len <= MXU_VM_OUT_CAP);
        REQUIRE(hc.out_len == e.out_len && ctl->out_len == 0);
        /* Touch every byte taken (ASan) and track frames through them. */
        uint32_t sum = 0;
        for (uint32_t i = 0; i < hc.out_len; i++)
            sum += hc.out[i];
        (void)sum;
        (void)n;
        if (nr != MXU_VM_HC_STDERR)
            mxu_vm_track_out(&st, hc.out, hc.out_len);
        REQUIRE(st.hdr_have < 16);
        REQUIRE(mxu_vm_serve_between_frames(&st) == (st.hdr_have == 0 && st.payload_left == 0));
    }
    return 0;
}
