/*
 * The VMM proper: KVM ioctls, straight from <linux/kvm.h> (no qemu, no
 * library: the whole machine is one vCPU, one memory slot and a few tables).
 *
 * Divisions:
 *   probe       is /dev/kvm usable, and why not
 *   create      one linear sequence: memory, image, page tables, GDT, IDT,
 *               TSS, vCPU, CPUID, special and general registers
 *   run         KVM_RUN until a hypercall or a fault; timeouts kick
 *   pristine    snapshot a booted guest, and reset a used one to it
 *   faults      turning an exit into a message for people
 *
 * Why no guest kernel: under PVM (the hypervisor of this project's machines)
 * guest code at CPL0 is emulated instruction by instruction, about 3,000x
 * slower, while CPL3 code runs natively. So the host builds every privileged
 * structure once, the guest starts at CPL3 and never leaves it, and the only
 * CPL0 code is the fault stubs, which run once, when the guest is already
 * lost. The same setup is an ordinary long-mode machine on hardware VMX.
 */
#include "exec/vm/vm-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

/* The system page (guest-physical 0 .. 2 MiB), supervisor-only. */
#define SYS_GDT         0x1000ull
#define SYS_IDT         0x2000ull
#define SYS_TSS         0x3000ull
#define SYS_STUBS       0x4000ull /* one 32-byte stub per exception vector */
#define SYS_FAULT_STACK 0x8000ull /* top of the stack the stubs run on (IST1) */
#define SYS_PML4        0x8000ull
#define SYS_PDPT        0x9000ull
#define SYS_PD          0xa000ull /* four page directories: 0 .. 4 GiB */

#define SEL_KCODE 0x08
#define SEL_UDATA (0x18 | 3)
#define SEL_UCODE (0x20 | 3)
#define SEL_TSS   0x28
#define GDT_BYTES (7 * 8)
#define NVECTORS  32

#define PTE_P  (1ull << 0)
#define PTE_RW (1ull << 1)
#define PTE_US (1ull << 2)
#define PTE_PS (1ull << 7)
#define PTE_NX (1ull << 63)

#define CR0_PE         (1ull << 0)
#define CR0_MP         (1ull << 1)
#define CR0_ET         (1ull << 4)
#define CR0_NE         (1ull << 5)
#define CR0_WP         (1ull << 16)
#define CR0_PG         (1ull << 31)
#define CR4_PAE        (1ull << 5)
#define CR4_OSFXSR     (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)
#define EFER_LME       (1ull << 8)
#define EFER_LMA       (1ull << 10)
#define EFER_NXE       (1ull << 11)

#define KVM_API_VERSION_NEEDED 12

struct mxu_vm {
    int kvm_fd, vm_fd, vcpu_fd;
    struct kvm_run *run;
    size_t run_size;
    uint8_t *mem;      /* guest memory as KVM's slot maps it */
    uint8_t *host_mem; /* guest memory as the host's code reaches it (below) */
    uint64_t mem_bytes;
    timer_t timer;
    bool has_timer;
    bool dead; /* a fault was reported: never resume */
    /* The pristine image (mxu_vm_snapshot): guest memory in a sealed memfd
     * (under cow, guest memory is a private mapping of it; under dirtylog,
     * the source the pages are copied back from), and the vCPU's state. */
    int pristine_fd;
    mxu_vm_reset_kind reset_kind;
    int pagemap_fd; /* cow: /proc/self/pagemap, for the pages a reset repopulates */
    /* dirtylog: guest memory in a memfd of its own (`guest_fd`), so that
     * the host's view of it can be read-only but for the pages the host
     * writes; KVM's dirty bitmap (one bit per host page); whether KVM
     * offered manual protection (KVM_CLEAR_DIRTY_LOG), and with it the
     * pages to protect again at a reset (`cool`), a read-only view of the
     * image to compare with, which of its pages it has (`image_has`; the
     * others are zero) and a zero page. */
    int guest_fd;
    uint64_t *dirty;
    bool manual_protect;
    uint64_t *cool, *image_has;
    const uint8_t *image_view;
    uint8_t *zero_page;
    size_t last_reset_pages; /* pages the last reset copied back or repopulated */
    struct kvm_regs snap_regs;
    struct kvm_sregs snap_sregs;
    struct kvm_fpu snap_fpu;
};

/* ---- probe ------------------------------------------------------------------------------- */

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static char probe_msg[256];
static bool probe_failed;

static void probe_run(void)
{
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        snprintf(probe_msg, sizeof(probe_msg), "cannot open /dev/kvm: %s%s", strerror(errno),
                 errno == ENOENT ? " (no KVM on this machine)" : "");
        probe_failed = true;
        return;
    }
    int v = ioctl(kvm, KVM_GET_API_VERSION, 0);
    static const struct {
        int cap;
        const char *name;
    } caps[] = {
        {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
        {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
        {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    };
    if (v != KVM_API_VERSION_NEEDED) {
        snprintf(probe_msg, sizeof(probe_msg), "/dev/kvm speaks API version %d, not %d", v,
                 KVM_API_VERSION_NEEDED);
        probe_failed = true;
        goto out;
    }
    for (size_t i = 0; i < MXU_ARRAY_LEN(caps); i++) {
        if (ioctl(kvm, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
            snprintf(probe_msg, sizeof(probe_msg), "/dev/kvm lacks %s", caps[i].name);
            probe_failed = true;
            goto out;
        }
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        snprintf(probe_msg, sizeof(probe_msg), "/dev/kvm cannot create a VM: %s", strerror(errno));
        probe_failed = true;
        goto out;
    }
    close(vm);
out:
    close(kvm);
}

const char *mxu_vm_probe(void)
{
    pthread_once(&probe_once, probe_run);
    return probe_failed ? probe_msg : NULL;
}

/* ---- create ------------------------------------------------------------------------------ */

static void put64(uint8_t *mem, uint64_t gpa, uint64_t v)
{
    memcpy(mem + gpa, &v, sizeof(v));
}

/* The page directory entry for the 2 MiB page at `gpa`. */
static void map_page(mxu_vm *vm, uint64_t gpa, uint64_t flags)
{
    uint64_t pd = SYS_PD + (gpa >> 30) * 0x1000;
    put64(vm->mem, pd + ((gpa >> 21) & 511) * 8, gpa | PTE_P | PTE_PS | flags);
}

/* Flags of one image page: the union of its segments' rights (W^X was
 * checked by vm_image_parse). */
static uint64_t image_page_flags(const vm_image *im, uint64_t gpa)
{
    bool w = false, x = false;
    for (size_t i = 0; i < im->nseg; i++) {
        const vm_segment *s = &im->seg[i];
        if (gpa < s->vaddr + s->memsz && s->vaddr < gpa + MXU_VM_PAGE) {
            w |= s->write;
            x |= s->exec;
        }
    }
    return PTE_US | (w ? PTE_RW : 0) | (x ? 0 : PTE_NX);
}

static void build_page_tables(mxu_vm *vm, const vm_image *im)
{
    put64(vm->mem, SYS_PML4, SYS_PDPT | PTE_P | PTE_RW | PTE_US);
    for (uint64_t i = 0; i < 4; i++)
        put64(vm->mem, SYS_PDPT + i * 8, (SYS_PD + i * 0x1000) | PTE_P | PTE_RW | PTE_US);
    uint64_t stack = vm->mem_bytes - (uint64_t)VM_STACK_PAGES * MXU_VM_PAGE;
    uint64_t guard = stack - (uint64_t)VM_GUARD_PAGES * MXU_VM_PAGE;
    /* System page: supervisor only, so CPL3 can neither read nor write the
     * tables (and a NULL pointer faults); executable for the fault stubs. */
    map_page(vm, 0, PTE_RW);
    map_page(vm, MXU_VM_CTL_ADDR, PTE_RW | PTE_US | PTE_NX);
    for (uint64_t a = MXU_VM_IMAGE_BASE; a < im->end; a += MXU_VM_PAGE)
        map_page(vm, a, image_page_flags(im, a));
    for (uint64_t a = im->end; a < guard; a += MXU_VM_PAGE)
        map_page(vm, a, PTE_RW | PTE_US | PTE_NX); /* heap */
    for (uint64_t a = stack; a < vm->mem_bytes; a += MXU_VM_PAGE)
        map_page(vm, a, PTE_RW | PTE_US | PTE_NX);
    /* Present in the tables, absent from the memory slot: a store exits. */
    map_page(vm, MXU_VM_DOORBELL, PTE_RW | PTE_US | PTE_NX);
}

static void build_gdt_idt_tss(mxu_vm *vm)
{
    uint8_t *m = vm->mem;
    put64(m, SYS_GDT + 0x00, 0);
    put64(m, SYS_GDT + 0x08, 0x00af9a000000ffffull); /* kernel code, 64-bit */
    put64(m, SYS_GDT + 0x10, 0x00cf92000000ffffull); /* kernel data */
    put64(m, SYS_GDT + 0x18, 0x00cff2000000ffffull); /* user data, DPL 3 */
    put64(m, SYS_GDT + 0x20, 0x00affa000000ffffull); /* user code, 64-bit, DPL 3 */
    /* 64-bit TSS (busy, as it is once loaded), 16 bytes. */
    uint64_t base = SYS_TSS, limit = 0x67;
    put64(m, SYS_GDT + 0x28,
          (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x8bull << 40) |
              (((base >> 24) & 0xff) << 56));
    put64(m, SYS_GDT + 0x30, base >> 32);

    /* TSS: every entry into CPL0 (only exceptions: interrupts are off and
     * the gates are DPL 0, so `int n` is a #GP) lands on the fault stack.
     * The I/O bitmap offset points past the limit: no port is allowed. */
    put64(m, SYS_TSS + 4, SYS_FAULT_STACK);  /* rsp0 */
    put64(m, SYS_TSS + 36, SYS_FAULT_STACK); /* ist1 */
    uint16_t iomap = 104;
    memcpy(m + SYS_TSS + 102, &iomap, 2);

    /* One stub per vector: mov eax, vector; movabs [FAULT_DOORBELL], eax;
     * hlt; jmp .-1. The store exits to the host, which reads the exception
     * frame from the fault stack and discards the VM. */
    for (uint32_t v = 0; v < NVECTORS; v++) {
        uint64_t stub = SYS_STUBS + v * 32;
        uint8_t *s = m + stub;
        uint64_t db = MXU_VM_FAULT_DOORBELL;
        s[0] = 0xb8;
        memcpy(s + 1, &v, 4);
        s[5] = 0xa3;
        memcpy(s + 6, &db, 8);
        s[14] = 0xf4;
        s[15] = 0xeb;
        s[16] = 0xfd;
        /* Interrupt gate, present, DPL 0, IST 1. */
        uint64_t lo = (stub & 0xffff) | ((uint64_t)SEL_KCODE << 16) | (1ull << 32) |
                      (0x8eull << 40) | (((stub >> 16) & 0xffff) << 48);
        put64(m, SYS_IDT + v * 16, lo);
        put64(m, SYS_IDT + v * 16 + 8, stub >> 32);
    }
}

static int set_cpuid(mxu_vm *vm, mxu_err *err)
{
    /* The guest's CPUID must say long mode and NX, or KVM refuses the EFER
     * we set; the host's supported set is the honest answer. */
    size_t n = 256;
    struct kvm_cpuid2 *c = mxu_calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
    c->nent = (uint32_t)n;
    int rc = ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c);
    if (rc == 0)
        rc = ioctl(vm->vcpu_fd, KVM_SET_CPUID2, c);
    int e = errno;
    free(c);
    return rc < 0 ? mxu_err_sys(err, e, "vm: cannot set the vCPU's CPUID") : 0;
}

static int set_registers(mxu_vm *vm, uint64_t entry, mxu_err *err)
{
    struct kvm_sregs sr;
    if (ioctl(vm->vcpu_fd, KVM_GET_SREGS, &sr) < 0)
        return mxu_err_sys(err, errno, "vm: KVM_GET_SREGS");
    struct kvm_segment code = {.base = 0,
                               .limit = 0xffffffff,
                               .selector = SEL_UCODE,
                               .type = 11,
                               .present = 1,
                               .dpl = 3,
                               .s = 1,
                               .l = 1,
                               .g = 1};
    struct kvm_segment data = {.base = 0,
                               .limit = 0xffffffff,
                               .selector = SEL_UDATA,
                               .type = 3,
                               .present = 1,
                               .dpl = 3,
                               .db = 1,
                               .s = 1,
                               .g = 1};
    sr.cs = code;
    sr.ds = sr.es = sr.fs = sr.gs = sr.ss = data;
    /* The guest's TCB (vm-abi.h): code built with -fstack-protector reads
     * its canary from %fs:0x28, and the guest cannot set a segment base
     * itself (wrfsbase and the MSRs are not for CPL3 here). */
    sr.fs.base = MXU_VM_TCB_ADDR;
    sr.tr = (struct kvm_segment){
        .base = SYS_TSS, .limit = 0x67, .selector = SEL_TSS, .type = 11, .present = 1};
    sr.gdt.base = SYS_GDT;
    sr.gdt.limit = GDT_BYTES - 1;
    sr.idt.base = SYS_IDT;
    sr.idt.limit = NVECTORS * 16 - 1;
    /* Paging with write protection honoured at CPL0 too; SSE usable at
     * CPL3 (the x86-64 ABI assumes it; the compiler emits it). */
    sr.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sr.cr3 = SYS_PML4;
    sr.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sr.efer = EFER_LME | EFER_LMA | EFER_NXE;
    if (ioctl(vm->vcpu_fd, KVM_SET_SREGS, &sr) < 0)
        return mxu_err_sys(err, errno, "vm: KVM_SET_SREGS (long mode at CPL3)");

    struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80};
    if (ioctl(vm->vcpu_fd, KVM_SET_FPU, &fpu) < 0)
        return mxu_err_sys(err, errno, "vm: KVM_SET_FPU");

    struct kvm_regs r = {
        .rip = entry,
        .rsp = vm->mem_bytes, /* 16-byte aligned; the stack page's top */
        .rdi = MXU_VM_CTL_ADDR,
        .rflags = 0x2, /* interrupts off: nothing may enter CPL0 but a fault */
    };
    if (ioctl(vm->vcpu_fd, KVM_SET_REGS, &r) < 0)
        return mxu_err_sys(err, errno, "vm: KVM_SET_REGS");
    return 0;
}

int mxu_vm_create(const void *image, size_t image_len, uint64_t mem_bytes, mxu_vm **out,
                  mxu_err *err)
{
    const char *why = mxu_vm_probe();
    if (why)
        return mxu_err_set(err, ENODEV, "vm: KVM is not usable: %s", why);
    mem_bytes &= ~(uint64_t)(MXU_VM_PAGE - 1);
    if (mem_bytes < MXU_VM_MEM_MIN || mem_bytes > MXU_VM_MEM_MAX)
        return mxu_err_set(err, EINVAL, "vm: guest memory must be %llu MiB .. %llu GiB",
                           (unsigned long long)(MXU_VM_MEM_MIN >> 20),
                           (unsigned long long)(MXU_VM_MEM_MAX >> 30));

    /* 1. Check the whole image before touching anything. */
    vm_image im;
    if (vm_image_parse(image, image_len, mem_bytes, &im, err) < 0)
        return -1;

    mxu_vm *vm = mxu_calloc(1, sizeof(*vm));
    vm->kvm_fd = vm->vm_fd = vm->vcpu_fd = vm->pristine_fd = vm->pagemap_fd = vm->guest_fd = -1;
    vm->mem = MAP_FAILED;
    vm->mem_bytes = mem_bytes;

    /* 2. The VM. */
    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0) {
        mxu_err_sys(err, errno, "vm: open /dev/kvm");
        goto fail;
    }
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0) {
        mxu_err_sys(err, errno, "vm: KVM_CREATE_VM");
        goto fail;
    }

    /* 3. Guest memory: exactly mem_bytes of private anonymous memory, in
     *    one slot at guest-physical 0. Nothing else is backed: every other
     *    address the page tables map (the doorbell) exits to us. Pages are
     *    allocated by the host kernel only when the guest touches them. */
    vm->mem = mmap(NULL, mem_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (vm->mem == MAP_FAILED) {
        mxu_err_sys(err, errno, "vm: cannot map %llu MiB of guest memory",
                    (unsigned long long)(mem_bytes >> 20));
        goto fail;
    }
    vm->host_mem = vm->mem;
    struct kvm_userspace_memory_region region = {
        .slot = 0,
        .guest_phys_addr = 0,
        .memory_size = mem_bytes,
        .userspace_addr = (uintptr_t)vm->mem,
    };
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        mxu_err_sys(err, errno, "vm: KVM_SET_USER_MEMORY_REGION");
        goto fail;
    }

    /* 4. The image's segments (checked in step 1); bss stays zero. */
    for (size_t i = 0; i < im.nseg; i++)
        memcpy(vm->mem + im.seg[i].vaddr, (const uint8_t *)image + im.seg[i].offset,
               im.seg[i].filesz);

    /* 5. Everything privileged, built once here: page tables, GDT, IDT,
     *    TSS, the fault stubs. The guest cannot reach any of it. */
    build_page_tables(vm, &im);
    build_gdt_idt_tss(vm);

    /* 6. The control block the guest finds in rdi. */
    mxu_vm_ctl ctl = {
        .magic = MXU_VM_CTL_MAGIC,
        .abi = MXU_VM_ABI_VERSION,
        .mem_bytes = mem_bytes,
        .heap_start = im.end,
        .heap_end = mem_bytes - (uint64_t)(VM_STACK_PAGES + VM_GUARD_PAGES) * MXU_VM_PAGE,
        .now_ms = mxu_now_ns() / 1000000u,
        .wall_ms = mxu_wall_ms(),
    };
    memcpy(vm->mem + MXU_VM_CTL_ADDR, &ctl, sizeof(ctl));

    /* 7. The vCPU and its shared kvm_run page. */
    vm->vcpu_fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, 0);
    if (vm->vcpu_fd < 0) {
        mxu_err_sys(err, errno, "vm: KVM_CREATE_VCPU");
        goto fail;
    }
    int run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run)) {
        mxu_err_sys(err, errno, "vm: KVM_GET_VCPU_MMAP_SIZE");
        goto fail;
    }
    vm->run_size = (size_t)run_size;
    vm->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu_fd, 0);
    if (vm->run == MAP_FAILED) {
        vm->run = NULL;
        mxu_err_sys(err, errno, "vm: cannot map kvm_run");
        goto fail;
    }

    /* 8. CPUID, then registers: long mode, CPL3, at the entry point. */
    if (set_cpuid(vm, err) < 0 || set_registers(vm, im.entry, err) < 0)
        goto fail;
    *out = vm;
    return 0;

fail:
    mxu_vm_destroy(vm);
    return -1;
}

void mxu_vm_destroy(mxu_vm *vm)
{
    if (vm == NULL)
        return;
    if (vm->has_timer)
        timer_delete(vm->timer);
    if (vm->run)
        munmap(vm->run, vm->run_size);
    if (vm->vcpu_fd >= 0)
        close(vm->vcpu_fd);
    if (vm->mem != MAP_FAILED)
        munmap(vm->mem, vm->mem_bytes);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    if (vm->pristine_fd >= 0)
        close(vm->pristine_fd);
    if (vm->pagemap_fd >= 0)
        close(vm->pagemap_fd);
    free(vm->dirty);
    free(vm->cool);
    free(vm->image_has);
    free(vm->zero_page);
    if (vm->image_view)
        munmap((void *)vm->image_view, vm->mem_bytes);
    if (vm->host_mem && vm->host_mem != vm->mem)
        munmap(vm->host_mem, vm->mem_bytes);
    if (vm->guest_fd >= 0)
        close(vm->guest_fd);
    free(vm);
}

volatile mxu_vm_ctl *mxu_vm_ctl_block(mxu_vm *vm)
{
    return (volatile mxu_vm_ctl *)(vm->host_mem + MXU_VM_CTL_ADDR);
}

void *mxu_vm_guest_ptr(mxu_vm *vm, uint64_t gpa, uint64_t len)
{
    if (gpa > vm->mem_bytes || len > vm->mem_bytes - gpa)
        return NULL;
    return vm->host_mem + gpa;
}

uint64_t mxu_vm_mem_bytes(const mxu_vm *vm)
{
    return vm->mem_bytes;
}

/* ---- faults ------------------------------------------------------------------------------ */

static const char *const vector_names[NVECTORS] = {
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack fault",
    "general protection fault",
    "page fault",
    "reserved (15)",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization exception",
    "control protection fault",
};

static bool vector_has_error_code(uint32_t v)
{
    return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
}

/* An exception reached a stub: the CPU left its frame on the fault stack. */
static void describe_exception(mxu_vm *vm, uint32_t v, mxu_err *err)
{
    uint64_t frame[6]; /* [error code,] rip, cs, rflags, rsp, ss */
    bool ec = vector_has_error_code(v);
    size_t n = ec ? 6 : 5;
    memcpy(frame, vm->mem + SYS_FAULT_STACK - n * 8, n * 8);
    uint64_t code = ec ? frame[0] : 0, rip = frame[ec ? 1 : 0];
    const char *name = v < NVECTORS && vector_names[v] ? vector_names[v] : "exception";
    if (v == 14) {
        struct kvm_sregs sr;
        uint64_t cr2 = ioctl(vm->vcpu_fd, KVM_GET_SREGS, &sr) == 0 ? sr.cr2 : 0;
        mxu_err_set(err, EFAULT, "vm: guest fault: page fault: %s 0x%llx (%s) at rip 0x%llx",
                    code & 16  ? "instruction fetch at"
                    : code & 2 ? "write to"
                               : "read of",
                    (unsigned long long)cr2,
                    !(code & 1) ? "not mapped"
                    : code & 4  ? "not allowed"
                                : "protection",
                    (unsigned long long)rip);
    } else if (ec) {
        mxu_err_set(err, EFAULT, "vm: guest fault: %s (error code 0x%llx) at rip 0x%llx", name,
                    (unsigned long long)code, (unsigned long long)rip);
    } else {
        mxu_err_set(err, EFAULT, "vm: guest fault: %s at rip 0x%llx", name,
                    (unsigned long long)rip);
    }
}

static uint64_t guest_rip(mxu_vm *vm)
{
    struct kvm_regs r;
    return ioctl(vm->vcpu_fd, KVM_GET_REGS, &r) == 0 ? r.rip : 0;
}

/* ---- run --------------------------------------------------------------------------------- */

/* The kick: the timer's signal interrupts KVM_RUN with EINTR; setting
 * immediate_exit as well covers a signal that arrives just before the
 * thread enters KVM_RUN (it then returns at once instead of running on). */
static __thread struct kvm_run *kick_run;
static __thread volatile sig_atomic_t kicked;

static void on_kick(int sig)
{
    MXU_UNUSED(sig);
    kicked = 1;
    if (kick_run)
        kick_run->immediate_exit = 1;
}

static int kick_signal(void)
{
    return SIGRTMIN + 3;
}

static int arm_timer(mxu_vm *vm, uint64_t timeout_ms, mxu_err *err)
{
    if (!vm->has_timer) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_kick; /* no SA_RESTART: KVM_RUN must return */
        sigemptyset(&sa.sa_mask);
        if (sigaction(kick_signal(), &sa, NULL) < 0)
            return mxu_err_sys(err, errno, "vm: sigaction");
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, kick_signal());
        pthread_sigmask(SIG_UNBLOCK, &s, NULL);
        struct sigevent sev;
        memset(&sev, 0, sizeof(sev));
        sev.sigev_notify = SIGEV_THREAD_ID;
        sev.sigev_signo = kick_signal();
        sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
        if (timer_create(CLOCK_MONOTONIC, &sev, &vm->timer) < 0)
            return mxu_err_sys(err, errno, "vm: timer_create");
        vm->has_timer = true;
    }
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)(timeout_ms / 1000),
                                          .tv_nsec = (long)(timeout_ms % 1000) * 1000000L}};
    if (timer_settime(vm->timer, 0, &its, NULL) < 0)
        return mxu_err_sys(err, errno, "vm: timer_settime");
    return 0;
}

static void disarm_timer(mxu_vm *vm)
{
    struct itimerspec its = {0};
    timer_settime(vm->timer, 0, &its, NULL);
}

mxu_vm_mmio_kind mxu_vm_mmio_decode(uint64_t addr, uint32_t len, bool is_write,
                                    const uint8_t data[8], uint32_t *value)
{
    *value = 0;
    if (!is_write || len != 4)
        return MXU_VM_MMIO_BAD;
    memcpy(value, data, 4);
    if (addr == MXU_VM_DOORBELL)
        return MXU_VM_MMIO_HCALL;
    if (addr == MXU_VM_FAULT_DOORBELL)
        return MXU_VM_MMIO_FAULT;
    return MXU_VM_MMIO_BAD;
}

int mxu_vm_run(mxu_vm *vm, uint64_t timeout_ms, mxu_vm_exit *ex, mxu_err *err)
{
    memset(ex, 0, sizeof(*ex));
    if (vm->dead) {
        ex->kind = MXU_VM_EXIT_FAULT;
        return mxu_err_set(err, EFAULT, "vm: the guest has already failed");
    }
    kicked = 0;
    kick_run = vm->run;
    if (timeout_ms && arm_timer(vm, timeout_ms, err) < 0)
        return -1;
    struct kvm_run *run = vm->run;
    int rc;
    for (;;) {
        rc = ioctl(vm->vcpu_fd, KVM_RUN, 0);
        if (rc < 0 && (errno == EINTR || errno == EAGAIN)) {
            if (kicked)
                break;
            run->immediate_exit = 0; /* another signal: carry on */
            continue;
        }
        break;
    }
    int e = errno;
    if (timeout_ms)
        disarm_timer(vm);
    kick_run = NULL;
    run->immediate_exit = 0;
    mxu_vm_ctl_block(vm)->now_ms = mxu_now_ns() / 1000000u;
    mxu_vm_ctl_block(vm)->wall_ms = mxu_wall_ms();
    if (rc < 0 && kicked) {
        ex->kind = MXU_VM_EXIT_TIMEOUT;
        vm->dead = true; /* the guest is mid-instruction stream; it is not resumed */
        mxu_err_set(err, ETIMEDOUT, "vm: guest ran past its %llu ms timeout and was stopped",
                    (unsigned long long)timeout_ms);
        return 0;
    }
    if (rc < 0)
        return mxu_err_sys(err, e, "vm: KVM_RUN");

    ex->kind = MXU_VM_EXIT_FAULT;
    switch (run->exit_reason) {
    case KVM_EXIT_MMIO: {
        uint64_t a = run->mmio.phys_addr;
        uint32_t v = 0;
        mxu_vm_mmio_kind k =
            mxu_vm_mmio_decode(a, run->mmio.len, run->mmio.is_write != 0, run->mmio.data, &v);
        if (k == MXU_VM_MMIO_HCALL) {
            ex->kind = MXU_VM_EXIT_HCALL;
            ex->nr = v;
            return 0;
        }
        if (k == MXU_VM_MMIO_FAULT) {
            /* The guest can store here too, and so forge its own fault
             * report: harmless, it ends the guest all the same. */
            describe_exception(vm, v, err);
            break;
        }
        mxu_err_set(err, EFAULT,
                    "vm: guest fault: %u-byte %s at guest-physical 0x%llx, outside guest memory "
                    "(rip 0x%llx)",
                    run->mmio.len, run->mmio.is_write ? "write" : "read", (unsigned long long)a,
                    (unsigned long long)guest_rip(vm));
        break;
    }
    case KVM_EXIT_SHUTDOWN:
        mxu_err_set(err, EFAULT, "vm: guest fault: triple fault (shutdown) at rip 0x%llx",
                    (unsigned long long)guest_rip(vm));
        break;
    case KVM_EXIT_IO:
        mxu_err_set(err, EFAULT, "vm: guest fault: port I/O (port 0x%x) at rip 0x%llx",
                    run->io.port, (unsigned long long)guest_rip(vm));
        break;
    case KVM_EXIT_HLT:
        mxu_err_set(err, EFAULT, "vm: guest fault: halted at rip 0x%llx",
                    (unsigned long long)guest_rip(vm));
        break;
    case KVM_EXIT_INTERNAL_ERROR:
        mxu_err_set(err, EFAULT, "vm: guest fault: KVM internal error (suberror %u)",
                    run->internal.suberror);
        break;
    case KVM_EXIT_FAIL_ENTRY:
        mxu_err_set(err, EFAULT, "vm: guest fault: vCPU entry failed (reason 0x%llx)",
                    (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        break;
    default:
        mxu_err_set(err, EFAULT, "vm: guest fault: unexpected exit %u at rip 0x%llx",
                    run->exit_reason, (unsigned long long)guest_rip(vm));
        break;
    }
    vm->dead = true;
    return 0;
}

/* ---- pristine ----------------------------------------------------------------------------
 * A booted guest waiting in its first READ is the same for every instance
 * of a unit; mxu_vm_snapshot() keeps it, and mxu_vm_reset() puts a used
 * guest back into exactly that state without building a new VM. Both ways
 * keep the image in a memfd: the snapshot copies the pages the guest has
 * (mincore: only resident ones; the rest are zero) into it and seals it, so
 * not even this process can change the image afterwards.
 *
 * Copy-on-write (MXU_VM_RESET_COW): guest memory becomes a MAP_PRIVATE view
 * of the memfd. A reset is one mmap(MAP_FIXED) of a fresh private view over
 * the old one: the kernel drops every page the guest (or the host, on its
 * behalf) wrote, and KVM, told through its MMU notifier, drops its mappings
 * of them, so the next access sees the pristine byte. Nothing has to know
 * who wrote what. The price: KVM must map again every page the next guest
 * touches (repopulation, below, saves the host faults but not KVM's).
 *
 * Dirty log (MXU_VM_RESET_DIRTYLOG): guest memory keeps its pages, and its
 * memory slot logs writes (KVM_MEM_LOG_DIRTY_PAGES). A reset reads KVM's
 * dirty bitmap and puts the logged pages back from the memfd (a hole is a
 * page of zeros, so a page the image never had comes back as zeros); with
 * manual protection it leaves the pages the last guest wrote writable for
 * the next (restore_compare says why that stays exact). KVM's mappings
 * survive a reset, so the next guest takes no fault for pages it only
 * reads, and none for the pages it writes again. The hazard is that KVM
 * logs only writes made through the guest's mappings (the guest's own, and
 * KVM's emulator's); the helper writes guest memory through its own
 * mapping, which nothing logs. So the host gets a view of guest memory it
 * can write only in the control block's page and the in buffer
 * (share_guest_memory), and a reset looks at every page of those that
 * exists, log or no log (mark_host_writable).
 *
 * The vCPU's registers come back with KVM_SET_REGS/SREGS/FPU. The snapshot
 * is taken after completing the pending MMIO exit (KVM_RUN with
 * immediate_exit: "guest state is consistent only after userspace has
 * re-entered the kernel"), so rip is past the doorbell store, and a reset
 * guest resumes as if the hypercall it was stopped in had just returned.
 */

bool mxu_vm_dirtylog_manual = true;

int mxu_vm_reset_kind_parse(const char *s, mxu_vm_reset_kind *out, mxu_err *err)
{
    if (s == NULL || *s == '\0' || strcmp(s, "cow") == 0)
        *out = MXU_VM_RESET_COW;
    else if (strcmp(s, "dirtylog") == 0)
        *out = MXU_VM_RESET_DIRTYLOG;
    else
        return mxu_err_set(err, EINVAL, "vm: unknown reset \"%s\" (cow or dirtylog)", s);
    return 0;
}

const char *mxu_vm_reset_kind_name(mxu_vm_reset_kind k)
{
    return k == MXU_VM_RESET_DIRTYLOG ? "dirtylog" : "cow";
}

/* Complete the MMIO exit the vCPU stopped on, without running the guest. */
static int complete_exit(mxu_vm *vm, mxu_err *err)
{
    vm->run->immediate_exit = 1;
    int rc = ioctl(vm->vcpu_fd, KVM_RUN, 0);
    int e = errno;
    vm->run->immediate_exit = 0;
    if (rc < 0 && e != EINTR && e != EAGAIN)
        return mxu_err_sys(err, e, "vm: completing the last exit");
    return 0;
}

static int map_pristine(mxu_vm *vm, mxu_err *err)
{
    void *m = mmap(vm->mem, vm->mem_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, vm->pristine_fd, 0);
    if (m == MAP_FAILED) {
        /* The old mapping may be gone: the VM must never run again. */
        vm->dead = true;
        return mxu_err_sys(err, errno, "vm: cannot map the pristine image");
    }
    return 0;
}

/* The pages the host writes in guest memory (vm-abi.h): the control block's
 * page and the in buffer right after it. */
#define HOST_WRITABLE_BYTES (MXU_VM_IN_ADDR + MXU_VM_IN_CAP - MXU_VM_CTL_ADDR)

static size_t host_page(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static bool bit_get(const uint64_t *bits, size_t i)
{
    return (bits[i / 64] >> (i % 64)) & 1;
}

/* Set the bits of the host pages that [gpa, gpa + len) touches. */
static void bits_set_range(uint64_t *bits, uint64_t gpa, uint64_t len)
{
    if (len == 0)
        return;
    size_t pg = host_page();
    for (size_t i = gpa / pg; i <= (gpa + len - 1) / pg; i++)
        bits[i / 64] |= 1ull << (i % 64);
}

/* The runs of set bits among `npages`: calls fn(vm, first, count) on each
 * and stops at the first that fails; returns the pages visited, or -1. */
static ssize_t for_runs(mxu_vm *vm, const uint64_t *bits, size_t npages,
                        int (*fn)(mxu_vm *vm, size_t first, size_t count, void *arg), void *arg)
{
    size_t total = 0;
    for (size_t i = 0; i < npages;) {
        if (!bit_get(bits, i)) {
            i = bits[i / 64] >> (i % 64) ? i + 1 : (i / 64 + 1) * 64;
            continue;
        }
        size_t j = i;
        while (j < npages && bit_get(bits, j))
            j++;
        if (fn(vm, i, j - i, arg) < 0)
            return -1;
        total += j - i;
        i = j;
    }
    return (ssize_t)total;
}

/* Copy guest memory's resident pages into `fd` (everything else reads as
 * zero in both), noting them in `has` (one bit per host page) if not NULL.
 * Returns 0, or -1 with errno. */
static int copy_resident(mxu_vm *vm, int fd, uint64_t *has)
{
    size_t pg = host_page();
    size_t npages = vm->mem_bytes / pg;
    unsigned char *vec = mxu_malloc(npages);
    int rc = mincore(vm->mem, vm->mem_bytes, vec);
    for (size_t i = 0; rc == 0 && i < npages;) {
        if (!(vec[i] & 1)) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < npages && (vec[j] & 1))
            j++;
        if (has)
            bits_set_range(has, i * pg, (j - i) * pg);
        size_t off = i * pg, len = (j - i) * pg;
        while (len > 0) {
            ssize_t k = pwrite(fd, vm->mem + off, len, (off_t)off);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                rc = -1;
                break;
            }
            off += (size_t)k;
            len -= (size_t)k;
        }
        i = j;
    }
    int e = errno;
    free(vec);
    errno = e;
    return rc;
}

/* A memfd of guest memory's size holding its resident pages, sealed with
 * `seals`. Returns the fd, or -1 with a message saying `what` it is. */
static int memfd_of_guest(mxu_vm *vm, const char *name, unsigned seals, uint64_t *has,
                          const char *what, mxu_err *err)
{
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return mxu_err_sys(err, errno, "vm: memfd_create for %s", what);
    if (ftruncate(fd, (off_t)vm->mem_bytes) < 0 || copy_resident(vm, fd, has) < 0 ||
        fcntl(fd, F_ADD_SEALS, seals) < 0) {
        int e = errno;
        close(fd);
        return mxu_err_sys(err, e, "vm: writing %s", what);
    }
    return fd;
}

/* The host's view of guest memory under dirtylog. KVM does not log what
 * the host writes, so the host may write only where a reset looks without
 * the log: the control block's page and the in buffer (reset_dirtylog).
 * That is enforced, not just agreed: guest memory becomes a shared mapping
 * of its own memfd (for KVM's slot, at the same address), and everything
 * outside the helper's VMM reaches it through a second mapping of that
 * memfd which is read-only but for those pages. A host write anywhere else
 * is a SIGSEGV of the helper — one failed instance — never a byte that
 * outlives a reset. */
static int share_guest_memory(mxu_vm *vm, mxu_err *err)
{
    vm->guest_fd = memfd_of_guest(vm, "mxu-vm-guest", F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL,
                                  NULL, "guest memory", err);
    if (vm->guest_fd < 0)
        return -1;
    void *h = mmap(NULL, vm->mem_bytes, PROT_READ, MAP_SHARED, vm->guest_fd, 0);
    if (h == MAP_FAILED)
        return mxu_err_sys(err, errno, "vm: cannot map the host's view of guest memory");
    if (mprotect((uint8_t *)h + MXU_VM_CTL_ADDR, HOST_WRITABLE_BYTES, PROT_READ | PROT_WRITE) < 0) {
        int e = errno;
        munmap(h, vm->mem_bytes);
        return mxu_err_sys(err, e, "vm: cannot open the host's view for its writes");
    }
    /* Same address, so KVM's slot needs no change; its MMU notifier drops
     * its mappings of the anonymous pages this replaces. */
    void *m = mmap(vm->mem, vm->mem_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                   vm->guest_fd, 0);
    if (m == MAP_FAILED) {
        int e = errno;
        munmap(h, vm->mem_bytes);
        vm->dead = true; /* the old mapping may be gone */
        return mxu_err_sys(err, e, "vm: cannot map guest memory from its memfd");
    }
    vm->host_mem = h;
    return 0;
}

/* Turn on KVM's dirty log for the guest's memory slot. KVM write-protects
 * every page of it and starts with an empty log: from here on, every
 * page the guest writes is logged. Manual protection (KVM_CLEAR_DIRTY_LOG)
 * is used when offered — it lets a reset leave the pages the last guest
 * wrote writable (reset_dirtylog) — but never KVM_DIRTY_LOG_INITIALLY_SET:
 * that starts the log all set, and the first reset would compare all of
 * guest memory. */
static int start_dirty_log(mxu_vm *vm, mxu_err *err)
{
    size_t pg = host_page(), words = (vm->mem_bytes / pg + 63) / 64;
    vm->dirty = mxu_calloc(words, sizeof(uint64_t));
    int caps = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
    if (mxu_vm_dirtylog_manual && caps > 0 && (caps & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) {
        struct kvm_enable_cap cap = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
                                     .args = {KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE}};
        vm->manual_protect = ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) == 0;
    }
    if (vm->manual_protect) {
        /* Read-only and shared, as the seals allow; only pages the image
         * has are ever read through it (a hole read through a shared
         * mapping would allocate a page of the memfd). */
        void *v = mmap(NULL, vm->mem_bytes, PROT_READ, MAP_SHARED, vm->pristine_fd, 0);
        if (v == MAP_FAILED)
            return mxu_err_sys(err, errno, "vm: cannot map the pristine image to compare with");
        vm->image_view = v;
        vm->cool = mxu_calloc(words, sizeof(uint64_t));
        vm->zero_page = mxu_calloc(1, pg);
    }
    struct kvm_userspace_memory_region region = {
        .slot = 0,
        .flags = KVM_MEM_LOG_DIRTY_PAGES,
        .guest_phys_addr = 0,
        .memory_size = vm->mem_bytes,
        .userspace_addr = (uintptr_t)vm->mem,
    };
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        return mxu_err_sys(err, errno, "vm: cannot turn on KVM's dirty log for guest memory");
    return 0;
}

int mxu_vm_snapshot(mxu_vm *vm, mxu_vm_reset_kind kind, mxu_err *err)
{
    if (vm->dead || vm->pristine_fd >= 0)
        return mxu_err_set(err, EINVAL, "vm: %s",
                           vm->dead ? "a failed guest cannot be a pristine image"
                                    : "the VM already has a pristine image");
    if (complete_exit(vm, err) < 0)
        return -1;
    if (ioctl(vm->vcpu_fd, KVM_GET_REGS, &vm->snap_regs) < 0 ||
        ioctl(vm->vcpu_fd, KVM_GET_SREGS, &vm->snap_sregs) < 0 ||
        ioctl(vm->vcpu_fd, KVM_GET_FPU, &vm->snap_fpu) < 0)
        return mxu_err_sys(err, errno, "vm: reading the vCPU's state");
    /* Sealed: nothing, not even this process, can change the image now. */
    uint64_t *has = mxu_calloc((vm->mem_bytes / host_page() + 63) / 64, sizeof(uint64_t));
    int fd = memfd_of_guest(vm, "mxu-vm-pristine",
                            F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL, has,
                            "the pristine image", err);
    if (fd < 0) {
        free(has);
        return -1;
    }
    vm->pristine_fd = fd;
    vm->reset_kind = kind;
    if (kind == MXU_VM_RESET_DIRTYLOG) {
        vm->image_has = has;
        if (share_guest_memory(vm, err) < 0 || start_dirty_log(vm, err) < 0) {
            /* Whatever was set up stays until mxu_vm_destroy; the VM has
             * no image, and the guest is as it was. */
            close(vm->pristine_fd);
            vm->pristine_fd = -1;
            return -1;
        }
        return 0;
    }
    free(has);
    /* For the resets' repopulation (best effort: without it, none). */
    vm->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    /* From now on guest memory is a private view of the image: the copy the
     * guest booted in is dropped, its pages are shared with the image. */
    return map_pristine(vm, err);
}

/* /proc/self/pagemap: one 64-bit entry per host page; bit 63 says the page
 * is mapped, bit 61 that it is a file page (here: still the pristine
 * image's, shared with the memfd's page cache) rather than a private copy. */
#define PM_PRESENT (1ull << 63)
#define PM_FILE    (1ull << 61)

/* Which pages of guest memory the last instance touched, as two bitmaps
 * (one bit per host page): `wrote`, private copies (written by the guest
 * or by the host for it); `read`, pristine pages mapped but never written.
 * Why pagemap and not mincore: on a private view of the memfd, mincore
 * reports every page of the image that is in its page cache — all of the
 * pristine image — not what this instance touched. Returns false when
 * pagemap cannot be read (the reset then repopulates nothing). */
static bool touched_pages(mxu_vm *vm, size_t npages, uint64_t *wrote, uint64_t *read)
{
    if (vm->pagemap_fd < 0)
        return false;
    size_t pg = host_page();
    uint64_t ent[512];
    uintptr_t first = (uintptr_t)vm->mem / pg;
    for (size_t i = 0; i < npages;) {
        size_t want = MXU_MIN(npages - i, MXU_ARRAY_LEN(ent));
        ssize_t k = pread(vm->pagemap_fd, ent, want * sizeof(ent[0]),
                          (off_t)((first + i) * sizeof(ent[0])));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < (ssize_t)sizeof(ent[0]))
            return false;
        size_t got = (size_t)k / sizeof(ent[0]);
        for (size_t j = 0; j < got; j++, i++) {
            if (!(ent[j] & PM_PRESENT))
                continue;
            uint64_t *set = ent[j] & PM_FILE ? read : wrote;
            set[i / 64] |= 1ull << (i % 64);
        }
    }
    return true;
}

/* madvise(advice) over a run of pages (best effort: a failure costs only
 * faults later). */
static int populate_run(mxu_vm *vm, size_t first, size_t count, void *arg)
{
    size_t pg = host_page();
    madvise(vm->mem + first * pg, count * pg, *(const int *)arg);
    return 0;
}

static int reset_cow(mxu_vm *vm, mxu_err *err)
{
    /* The pages this instance touched are the ones the next will touch
     * too: note them (pagemap), and after the remap map them again, off
     * the next request's path, so the guest's first accesses after a reset
     * cost KVM a mapping, not a host page fault (and a copy) each: the
     * pages it wrote get private copies of the pristine bytes
     * (MADV_POPULATE_WRITE), the pages it only read the image's own page
     * (MADV_POPULATE_READ, no copy). Pages it never touched stay unmapped,
     * so a recycled spare holds no copy of them. Best effort. */
    size_t npages = vm->mem_bytes / host_page(), words = (npages + 63) / 64;
    uint64_t *wrote = mxu_calloc(2 * words, sizeof(uint64_t)), *read = wrote + words;
    bool have = touched_pages(vm, npages, wrote, read);
    if (map_pristine(vm, err) < 0) {
        free(wrote);
        return -1;
    }
    vm->last_reset_pages = 0;
    if (have) {
        int w = MADV_POPULATE_WRITE, r = MADV_POPULATE_READ;
        ssize_t n = for_runs(vm, wrote, npages, populate_run, &w);
        for_runs(vm, read, npages, populate_run, &r);
        vm->last_reset_pages = n > 0 ? (size_t)n : 0;
    }
    free(wrote);
    return 0;
}

/* Copy a run of pages back from the pristine image. */
static int restore_run(mxu_vm *vm, size_t first, size_t count, void *arg)
{
    MXU_UNUSED(arg);
    size_t pg = host_page(), off = first * pg, len = count * pg;
    while (len > 0) {
        ssize_t k = pread(vm->pristine_fd, vm->mem + off, len, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        off += (size_t)k;
        len -= (size_t)k;
    }
    return 0;
}

/* The most pages a dirtylog reset leaves writable (hot) for the next guest:
 * each costs a compare at every reset, off the request's path; past this,
 * a unit's rare big writer would make every later reset compare it all. */
#define DIRTYLOG_HOT_MAX 4096

/* With manual protection: restore the pages in vm->dirty that differ from
 * the image, and leave them writable (hot). The next guest likely writes
 * them again (the unit's code is the same): it then takes no fault for
 * the log, as the cow reset's next guest takes none for the host but one
 * per page for KVM. Safe because a page KVM has not protected again keeps
 * its bit in the log — with manual protection only KVM_CLEAR_DIRTY_LOG
 * clears it — so every writable page is compared at every reset. A logged
 * page that equals the image was not written this round (or written back
 * to its pristine bytes): it is protected again (`cool`), and the hot set
 * follows what the guests write. Returns the pages copied, or -1. */
static ssize_t restore_compare(mxu_vm *vm, size_t npages)
{
    size_t pg = host_page(), words = (npages + 63) / 64, copied = 0;
    memset(vm->cool, 0, words * sizeof(uint64_t));
    for (size_t i = 0; i < npages; i++) {
        if (!bit_get(vm->dirty, i)) {
            if (vm->dirty[i / 64] >> (i % 64) == 0)
                i = (i / 64 + 1) * 64 - 1;
            continue;
        }
        uint8_t *p = vm->mem + i * pg;
        const uint8_t *src = bit_get(vm->image_has, i) ? vm->image_view + i * pg : vm->zero_page;
        if (memcmp(p, src, pg) == 0) {
            vm->cool[i / 64] |= 1ull << (i % 64);
            continue;
        }
        memcpy(p, src, pg);
        copied++;
    }
    if (copied > DIRTYLOG_HOT_MAX)
        memcpy(vm->cool, vm->dirty, words * sizeof(uint64_t));
    struct kvm_clear_dirty_log clr = {
        .slot = 0, .first_page = 0, .num_pages = (uint32_t)npages, .dirty_bitmap = vm->cool};
    if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0)
        return -1;
    return (ssize_t)copied;
}

/* What the host may have written, which is not in the log: every page of
 * the control block and the in buffer that exists in guest memory's memfd
 * (a page never touched is a hole, and reads as zero as its image page
 * does — the image has none there but the control block). Not "as far as
 * in_len said": the host's view lets it write the whole in buffer. "Exists"
 * is SEEK_DATA's answer, not mincore's: a page in swap (a warm instance's
 * last payload, idle on a node that swaps) is not in memory, but it is
 * still the memfd's, and the next guest would read it back. */
static int mark_host_writable(mxu_vm *vm)
{
    size_t pg = host_page();
    off_t pos = MXU_VM_CTL_ADDR, end = MXU_VM_CTL_ADDR + HOST_WRITABLE_BYTES;
    for (off_t a = pos; a < end; a += (off_t)pg)
        if (bit_get(vm->image_has, (size_t)a / pg))
            bits_set_range(vm->dirty, (uint64_t)a, pg);
    while (pos < end) {
        off_t data = lseek(vm->guest_fd, pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break; /* holes to the end of the memfd */
        if (data < 0)
            return -1;
        if (data >= end)
            break;
        off_t hole = lseek(vm->guest_fd, data, SEEK_HOLE);
        if (hole < 0)
            return -1;
        hole = MXU_MIN(hole, end);
        bits_set_range(vm->dirty, (uint64_t)data, (uint64_t)(hole - data));
        pos = hole;
    }
    return 0;
}

static int reset_dirtylog(mxu_vm *vm, mxu_err *err)
{
    size_t npages = vm->mem_bytes / host_page();
    /* Without manual protection, KVM_GET_DIRTY_LOG hands over the log,
     * empties it and write-protects the logged pages in one call; with it,
     * it only hands it over (restore_compare protects what it chooses). */
    struct kvm_dirty_log log = {.slot = 0, .dirty_bitmap = vm->dirty};
    if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
        return mxu_err_sys(err, errno, "vm: KVM_GET_DIRTY_LOG");
    if (mark_host_writable(vm) < 0)
        return mxu_err_sys(err, errno, "vm: finding the host's pages in guest memory");
    ssize_t n = vm->manual_protect ? restore_compare(vm, npages)
                                   : for_runs(vm, vm->dirty, npages, restore_run, NULL);
    if (n < 0)
        return mxu_err_sys(err, errno, "vm: copying back from the pristine image");
    vm->last_reset_pages = (size_t)n;
    return 0;
}

int mxu_vm_reset(mxu_vm *vm, mxu_err *err)
{
    if (vm->pristine_fd < 0)
        return mxu_err_set(err, EINVAL, "vm: no pristine image to reset to");
    if (vm->dead)
        return mxu_err_set(err, EINVAL, "vm: a failed guest is discarded, not reset");
    if (complete_exit(vm, err) < 0)
        return -1;
    int rc = vm->reset_kind == MXU_VM_RESET_DIRTYLOG ? reset_dirtylog(vm, err) : reset_cow(vm, err);
    if (rc < 0) {
        /* Guest memory may be half restored: never run it again. */
        vm->dead = true;
        return -1;
    }
    if (ioctl(vm->vcpu_fd, KVM_SET_SREGS, &vm->snap_sregs) < 0 ||
        ioctl(vm->vcpu_fd, KVM_SET_FPU, &vm->snap_fpu) < 0 ||
        ioctl(vm->vcpu_fd, KVM_SET_REGS, &vm->snap_regs) < 0) {
        vm->dead = true;
        return mxu_err_sys(err, errno, "vm: restoring the vCPU's state");
    }
    return 0;
}

size_t mxu_vm_last_reset_pages(const mxu_vm *vm)
{
    return vm->last_reset_pages;
}

uint64_t mxu_vm_memory_held(mxu_vm *vm)
{
    struct stat st;
    if (vm->guest_fd >= 0) /* dirtylog: guest memory is its memfd's pages */
        return fstat(vm->guest_fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t pg = host_page(), n = vm->mem_bytes / pg, held = 0;
    uint64_t ent[512];
    for (size_t i = 0; i < n;) {
        size_t want = MXU_MIN(n - i, MXU_ARRAY_LEN(ent));
        ssize_t k = pread(fd, ent, want * sizeof(ent[0]),
                          (off_t)(((uintptr_t)vm->mem / pg + i) * sizeof(ent[0])));
        if (k < (ssize_t)sizeof(ent[0]))
            break;
        for (size_t j = 0; j < (size_t)k / sizeof(ent[0]); j++, i++)
            held += (ent[j] & PM_PRESENT) != 0;
    }
    close(fd);
    return held * pg;
}

int mxu_vm_vcpu_regs(mxu_vm *vm, struct kvm_regs *r)
{
    return ioctl(vm->vcpu_fd, KVM_GET_REGS, r);
}
