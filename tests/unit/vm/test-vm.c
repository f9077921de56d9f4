/*
 * The VMM (src/exec/vm/) against a real KVM: boot a tiny guest
 * (vm-guest.c), hypercall round trips, and every way a guest can fail, each
 * of which must end as a clean "vm: guest fault: ..." error, never a hang or
 * a crash of the host. Cases are SKIPped, not passed, where /dev/kvm cannot
 * run guests. Each case runs in its own process with a timeout (test.h), and
 * every guest that loops is kicked by the VMM's own timeout first.
 */
#include "test.h"

#include "exec/vm/vm-internal.h"
#include "mxu-config.h"

#include <elf.h>
#include <linux/kvm.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#define MEM (32u << 20)

static mxu_buf guest_image(void)
{
    mxu_buf img = {0};
    mxu_err err = {0};
    if (mxu_read_file(VM_GUEST, 16 << 20, &img, &err) < 0)
        MXU_TEST_FAIL_("%s", err.msg);
    return img;
}

static void need_kvm(void)
{
    const char *why = mxu_vm_probe();
    if (why)
        SKIP("KVM cannot run guests here: %s", why);
}

static double now_us(void)
{
    return (double)mxu_now_ns() / 1000.0;
}

/* Boot the guest, give it `cmd`, serve it until it ends. Returns serve's
 * result; *err has the message, *code the exit code. */
static int run_cmd(char cmd, uint64_t timeout_ms, int *code, mxu_err *err, mxu_buf *log)
{
    need_kvm();
    mxu_buf img = guest_image();
    mxu_vm *vm;
    if (mxu_vm_create(img.data, img.len, MEM, &vm, err) < 0)
        MXU_TEST_FAIL_("create: %s", err->msg);
    int in[2], out[2], lg[2];
    CHECK(pipe(in) == 0 && pipe(out) == 0 && pipe(lg) == 0);
    CHECK(write(in[1], &cmd, 1) == 1);
    close(in[1]); /* after the command: EOF */
    mxu_vm_serve_state st = {0};
    int rc = mxu_vm_serve(vm, in[0], out[1], lg[1], timeout_ms, &st, err);
    *code = st.exit_code;
    close(lg[1]);
    if (log) {
        char b[4096];
        ssize_t n = read(lg[0], b, sizeof(b));
        if (n > 0)
            mxu_buf_append(log, b, (size_t)n);
    }
    mxu_vm_destroy(vm);
    close(in[0]);
    close(out[0]);
    close(out[1]);
    close(lg[0]);
    mxu_buf_free(&img);
    return rc;
}

static void expect_fault_t(char cmd, uint64_t timeout_ms, const char *what)
{
    int code = -1;
    mxu_err err = {0};
    int rc = run_cmd(cmd, timeout_ms, &code, &err, NULL);
    CHECK_EQ_INT(rc, -1);
    CHECK_CONTAINS(err.msg, what);
    printf("  '%c': %s\n", cmd, err.msg);
}

static void expect_fault(char cmd, const char *what)
{
    expect_fault_t(cmd, 5000, what);
}

static void test_boot_and_exit(void)
{
    int code = -1;
    mxu_err err = {0};
    mxu_buf log = {0};
    CHECK_EQ_INT(run_cmd('x', 5000, &code, &err, NULL), 0);
    CHECK_EQ_INT(code, 7);
    CHECK_EQ_INT(run_cmd('s', 5000, &code, &err, &log), 0);
    CHECK_EQ_INT(code, 0);
    mxu_buf_puts(&log, "");
    CHECK_STR(log.data, "guest says hi\n");
    mxu_buf_free(&log);
}

static void test_create_and_first_hypercall_time(void)
{
    need_kvm();
    mxu_buf img = guest_image();
    mxu_err err = {0};
    double best = 1e9, sum = 0;
    int rounds = 50;
    for (int i = 0; i < rounds; i++) {
        double t0 = now_us();
        mxu_vm *vm;
        if (mxu_vm_create(img.data, img.len, MEM, &vm, &err) < 0)
            MXU_TEST_FAIL_("%s", err.msg);
        mxu_vm_exit ex;
        do { /* RANDOM first: the SDK's start draws its stack canary */
            CHECK(mxu_vm_run(vm, 5000, &ex, &err) == 0);
            CHECK_EQ_INT(ex.kind, MXU_VM_EXIT_HCALL);
        } while (ex.nr == MXU_VM_HC_RANDOM);
        CHECK_EQ_INT(ex.nr, MXU_VM_HC_READ); /* the guest asks for its command */
        double dt = now_us() - t0;
        best = dt < best ? dt : best;
        sum += dt;
        mxu_vm_destroy(vm);
    }
    printf("  create VM + boot to the first hypercall: mean %.0f us, best %.0f us (%d rounds)\n",
           sum / rounds, best, rounds);
    mxu_buf_free(&img);
}

/* Run a booted guest (stopped in a READ) on command `cmd` until it exits;
 * its WRITE and STDERR output is dropped. Returns its exit code. */
static int run_to_exit(mxu_vm *vm, char cmd)
{
    mxu_err err = {0};
    volatile mxu_vm_ctl *ctl = mxu_vm_ctl_block(vm);
    *(char *)mxu_vm_guest_ptr(vm, MXU_VM_IN_ADDR, 1) = cmd;
    ctl->in_len = 1;
    for (;;) {
        mxu_vm_exit ex;
        if (mxu_vm_run(vm, 5000, &ex, &err) < 0 || ex.kind != MXU_VM_EXIT_HCALL)
            MXU_TEST_FAIL_("guest '%c': %s", cmd, err.msg);
        if (ex.nr == MXU_VM_HC_EXIT)
            return (int)ctl->exit_code;
        ctl->out_len = 0;
        ctl->in_len = 0; /* a READ: EOF */
    }
}

/* Boot to the first READ and keep that as the pristine image, to be reset
 * the `kind` way. */
static mxu_vm *boot_pristine(const mxu_buf *img, mxu_vm_reset_kind kind)
{
    mxu_err err = {0};
    mxu_vm *vm;
    if (mxu_vm_create(img->data, img->len, MEM, &vm, &err) < 0)
        MXU_TEST_FAIL_("create: %s", err.msg);
    mxu_vm_exit ex;
    do { /* the SDK's start draws its stack canary first (RANDOM) */
        CHECK(mxu_vm_run(vm, 5000, &ex, &err) == 0);
        CHECK_EQ_INT(ex.kind, MXU_VM_EXIT_HCALL);
    } while (ex.nr == MXU_VM_HC_RANDOM);
    CHECK_EQ_INT(ex.nr, MXU_VM_HC_READ);
    if (mxu_vm_snapshot(vm, kind, &err) < 0)
        MXU_TEST_FAIL_("snapshot (%s): %s", mxu_vm_reset_kind_name(kind), err.msg);
    return vm;
}

/* All of guest memory now, in a buffer to free. */
static uint8_t *memory_copy(mxu_vm *vm)
{
    uint8_t *p = mxu_malloc(MEM);
    memcpy(p, mxu_vm_guest_ptr(vm, 0, MEM), MEM);
    return p;
}

/* A reset guest is byte for byte the pristine one: all of guest memory and
 * the vCPU's registers, after a guest that dirtied bss, heap, stack and
 * buffers, and after one that echoed; and it then runs like a new one.
 * Under dirtylog, the second 'm' rewrites the pages the first wrote while
 * the reset left them writable (no fault, nothing newly logged); 'e' leaves
 * them alone, so its reset protects them again; the third 'm' must then be
 * logged afresh. */
static void reset_is_pristine(mxu_vm_reset_kind kind)
{
    need_kvm();
    mxu_buf img = guest_image();
    mxu_vm *vm = boot_pristine(&img, kind);
    mxu_err err = {0};
    uint8_t *pristine = memory_copy(vm);
    struct kvm_regs r0, r1;
    CHECK(mxu_vm_vcpu_regs(vm, &r0) == 0);

    const char cmds[] = {'m', 'm', 'e', 'm', 'x'};
    const int codes[] = {9, 9, 0, 9, 7};
    for (size_t i = 0; i < sizeof(cmds); i++) {
        CHECK_EQ_INT(run_to_exit(vm, cmds[i]), codes[i]);
        CHECK(memcmp(pristine, mxu_vm_guest_ptr(vm, 0, MEM), MEM) != 0);
        if (mxu_vm_reset(vm, &err) < 0)
            MXU_TEST_FAIL_("reset: %s", err.msg);
        CHECK(memcmp(pristine, mxu_vm_guest_ptr(vm, 0, MEM), MEM) == 0);
        CHECK(mxu_vm_vcpu_regs(vm, &r1) == 0);
        CHECK(memcmp(&r0, &r1, sizeof(r0)) == 0);
    }
    CHECK_EQ_INT(run_to_exit(vm, 'x'), 7);
    /* A guest that failed is never reset: it is discarded. */
    CHECK(mxu_vm_reset(vm, &err) == 0);
    *(char *)mxu_vm_guest_ptr(vm, MXU_VM_IN_ADDR, 1) = 'p';
    mxu_vm_ctl_block(vm)->in_len = 1;
    mxu_vm_exit ex;
    CHECK(mxu_vm_run(vm, 5000, &ex, &err) == 0);
    CHECK_EQ_INT(ex.kind, MXU_VM_EXIT_FAULT);
    CHECK_EQ_INT(mxu_vm_reset(vm, &err), -1);
    CHECK_CONTAINS(err.msg, "discarded");
    free(pristine);
    mxu_vm_destroy(vm);
    mxu_buf_free(&img);
}

static void test_reset_is_pristine_cow(void)
{
    reset_is_pristine(MXU_VM_RESET_COW);
}

static void test_reset_is_pristine_dirtylog(void)
{
    reset_is_pristine(MXU_VM_RESET_DIRTYLOG);
}

/* What only the host writes must not survive a reset either. KVM's dirty
 * log does not see the helper's writes, and a guest that only reads the
 * in buffer does not dirty it: so a payload of ~1 MiB through the real
 * serve path (one read() into the in buffer; the guest echoes it from
 * there), a reset, and every byte of guest memory compared; then a guest
 * that reads one byte and exits, then the payload again, with other
 * bytes. The first payload alone would not do: KVM logs the in buffer
 * then anyway — the guest's first reads fault, and KVM maps a page whose
 * guest page-table entry is already dirty (the 2 MiB page the control
 * block shares with the buffers) writable, and logs it as written; and
 * the dirtylog reset leaves those pages writable, with their log bits
 * set, until a reset finds them untouched (after the second guest). Only
 * then are they mapped read-only and clean, so that the last payload's
 * pages are read without a fault and logged by nobody. A reset that
 * forgot the host's writes would leave that payload for the next
 * instance. */
static void reset_restores_host_writes(mxu_vm_reset_kind kind)
{
    need_kvm();
    mxu_buf img = guest_image();
    mxu_vm *vm = boot_pristine(&img, kind);
    mxu_err err = {0};
    uint8_t *pristine = memory_copy(vm);
    size_t cap = MXU_VM_IN_CAP;
    uint8_t *payload = mxu_malloc(cap);
    for (int round = 0; round < 3; round++) {
        int in[2], out[2];
        CHECK(pipe(in) == 0 && pipe(out) == 0);
        /* Pipes big enough that the whole payload is one read() into the
         * in buffer, and its echo fits without a reader. */
        CHECK(fcntl(in[1], F_SETPIPE_SZ, 1 << 20) >= (int)MXU_VM_IN_CAP);
        CHECK(fcntl(out[1], F_SETPIPE_SZ, 1 << 20) >= (int)MXU_VM_IN_CAP);
        size_t n = round == 1 ? 1 : cap;
        payload[0] = round == 1 ? 'x' : 'e';
        for (size_t i = 1; i < n; i++)
            payload[i] = (uint8_t)(0x80 | (i * (size_t)(7 + round)));
        CHECK(write(in[1], payload, n) == (ssize_t)n);
        close(in[1]); /* then EOF: the guest exits */
        mxu_vm_serve_state st = {.pending_read = true};
        if (mxu_vm_serve(vm, in[0], out[1], -1, 5000, &st, &err) < 0)
            MXU_TEST_FAIL_("serve: %s", err.msg);
        CHECK_EQ_INT(st.exit_code, round == 1 ? 7 : 0);
        /* It went through the in buffer: its last bytes are there now. */
        CHECK(memcmp(mxu_vm_guest_ptr(vm, MXU_VM_IN_ADDR + n - 1, 1), payload + n - 1, 1) == 0);
        if (mxu_vm_reset(vm, &err) < 0)
            MXU_TEST_FAIL_("reset: %s", err.msg);
        CHECK(memcmp(pristine, mxu_vm_guest_ptr(vm, 0, MEM), MEM) == 0);
        printf("  %s, guest %d: %zu pages copied back after %zu bytes in\n",
               mxu_vm_reset_kind_name(kind), round + 1, mxu_vm_last_reset_pages(vm), n);
        close(in[0]);
        close(out[0]);
        close(out[1]);
    }
    free(payload);
    free(pristine);
    mxu_vm_destroy(vm);
    mxu_buf_free(&img);
}

static void test_reset_restores_host_writes_cow(void)
{
    reset_restores_host_writes(MXU_VM_RESET_COW);
}

static void test_reset_restores_host_writes_dirtylog(void)
{
    reset_restores_host_writes(MXU_VM_RESET_DIRTYLOG);
}

/* The same two with KVM_GET_DIRTY_LOG alone, the way dirtylog resets where
 * KVM offers no manual protection. */
static void test_reset_is_pristine_dirtylog_get(void)
{
    mxu_vm_dirtylog_manual = false;
    reset_is_pristine(MXU_VM_RESET_DIRTYLOG);
}

static void test_reset_restores_host_writes_dirtylog_get(void)
{
    mxu_vm_dirtylog_manual = false;
    reset_restores_host_writes(MXU_VM_RESET_DIRTYLOG);
}

/* A dirtylog reset copies back what was written this round, not what any
 * round ever wrote: after the 4 MiB guest, a guest that exits at once
 * costs a few pages again (KVM write-protected the logged pages anew). */
static void test_dirtylog_copies_only_written_pages(void)
{
    need_kvm();
    mxu_buf img = guest_image();
    mxu_vm *vm = boot_pristine(&img, MXU_VM_RESET_DIRTYLOG);
    mxu_err err = {0};
    size_t pages[3];
    const char cmds[] = {'x', 'm', 'x'};
    for (size_t i = 0; i < 3; i++) {
        run_to_exit(vm, cmds[i]);
        CHECK(mxu_vm_reset(vm, &err) == 0);
        pages[i] = mxu_vm_last_reset_pages(vm);
    }
    printf("  pages copied back: %zu (exit at once), %zu (4 MiB dirtied), %zu (exit at once)\n",
           pages[0], pages[1], pages[2]);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    CHECK(pages[0] > 0 && pages[0] < 64);
    CHECK(pages[1] >= (4u << 20) / pg);
    CHECK_EQ_U64(pages[2], pages[0]);
    mxu_vm_destroy(vm);
    mxu_buf_free(&img);
}

/* Under dirtylog the host can write guest memory only where a reset looks
 * without KVM's log (the control block's page, the in buffer): a host
 * write anywhere else through the host's view is a SIGSEGV, never a byte
 * that survives a reset. Each stray write is tried in a child. */
static void test_dirtylog_host_writes_confined(void)
{
    need_kvm();
    mxu_buf img = guest_image();
    mxu_vm *vm = boot_pristine(&img, MXU_VM_RESET_DIRTYLOG);
    const uint64_t stray[] = {0x8000, MXU_VM_OUT_ADDR, MXU_VM_OUT_ADDR + MXU_VM_OUT_CAP - 1,
                              MXU_VM_IMAGE_BASE, MEM - 8};
    for (size_t i = 0; i < MXU_ARRAY_LEN(stray); i++) {
        volatile uint8_t *p = mxu_vm_guest_ptr(vm, stray[i], 1);
        CHECK(p != NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            /* The kernel's answer, not a sanitizer's: ASan's SIGSEGV handler
             * would report and exit instead of dying by the signal. */
            struct sigaction dfl = {.sa_handler = SIG_DFL};
            sigaction(SIGSEGV, &dfl, NULL);
            *p = 0x42;
            _exit(0);
        }
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSEGV)
            MXU_TEST_FAIL_("a host write to 0x%llx was not refused", (unsigned long long)stray[i]);
    }
    /* Where the host does write, it can. */
    *(volatile uint8_t *)mxu_vm_guest_ptr(vm, MXU_VM_IN_ADDR + MXU_VM_IN_CAP - 1, 1) = 1;
    mxu_vm_ctl_block(vm)->rand[0] = 1;
    mxu_err err = {0};
    CHECK_EQ_INT(run_to_exit(vm, 'x'), 7);
    CHECK(mxu_vm_reset(vm, &err) == 0);
    CHECK_EQ_INT(*(volatile uint8_t *)mxu_vm_guest_ptr(vm, MXU_VM_IN_ADDR + MXU_VM_IN_CAP - 1, 1),
                 0);
    mxu_vm_destroy(vm);
    mxu_buf_free(&img);
}

/* A page the host wrote can be in swap at the reset, not in memory: the
 * in buffer a warm instance was last given, idle until keep_alive ends on
 * a node that swaps. It still holds the payload, and must be put back like
 * a resident one. The payload's pages but the first are written by the
 * host alone (the guest reads one byte and exits), so neither KVM's log nor
 * the guest's mappings know of them; MADV_PAGEOUT then puts them in swap.
 * Skipped without swap (it is then what the test above covers). */
static void test_dirtylog_reset_restores_swapped_host_writes(void)
{
    need_kvm();
    FILE *f = fopen("/proc/swaps", "r");
    char line[256];
    int lines = 0;
    while (f && fgets(line, sizeof(line), f))
        lines++;
    if (f)
        fclose(f);
    if (lines < 2)
        SKIP("no swap: host pages cannot be swapped out here");
    mxu_buf img = guest_image();
    mxu_vm *vm = boot_pristine(&img, MXU_VM_RESET_DIRTYLOG);
    mxu_err err = {0};
    uint8_t *pristine = memory_copy(vm);
    size_t cap = MXU_VM_IN_CAP, pg = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *payload = mxu_malloc(cap);
    payload[0] = 'x';
    for (size_t i = 1; i < cap; i++)
        payload[i] = (uint8_t)(0x80 | (i * 11));
    int in[2], out[2];
    CHECK(pipe(in) == 0 && pipe(out) == 0);
    CHECK(fcntl(in[1], F_SETPIPE_SZ, 1 << 20) >= (int)MXU_VM_IN_CAP);
    CHECK(write(in[1], payload, cap) == (ssize_t)cap);
    close(in[1]);
    mxu_vm_serve_state st = {.pending_read = true};
    if (mxu_vm_serve(vm, in[0], out[1], -1, 5000, &st, &err) < 0)
        MXU_TEST_FAIL_("serve: %s", err.msg);
    CHECK_EQ_INT(st.exit_code, 7);
    uint8_t *tail = mxu_vm_guest_ptr(vm, MXU_VM_IN_ADDR + pg, cap - pg);
    CHECK(memcmp(tail, payload + pg, cap - pg) == 0);
    CHECK(madvise(tail, cap - pg, MADV_PAGEOUT) == 0);
    unsigned char vec[MXU_VM_IN_CAP / 4096];
    size_t n = (cap - pg) / pg, out_of_memory = 0;
    CHECK(mincore(tail, cap - pg, vec) == 0);
    for (size_t i = 0; i < n; i++)
        out_of_memory += !(vec[i] & 1);
    printf("  %zu of the payload's %zu host-only pages in swap at the reset\n", out_of_memory, n);
    if (out_of_memory == 0)
        SKIP("MADV_PAGEOUT swapped none of the payload's pages out");
    if (mxu_vm_reset(vm, &err) < 0)
        MXU_TEST_FAIL_("reset: %s", err.msg);
    if (memcmp(pristine, mxu_vm_guest_ptr(vm, 0, MEM), MEM) != 0)
        MXU_TEST_FAIL_("the payload's swapped pages survived the reset");
    close(in[0]);
    close(out[0]);
    close(out[1]);
    free(payload);
    free(pristine);
    mxu_vm_destroy(vm);
    mxu_buf_free(&img);
}

/* Host pages of guest memory that are private copies (written since the
 * last remap, or repopulated for writing by a reset): pagemap entries that
 * are present and not file pages. */
static size_t private_pages(mxu_vm *vm)
{
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    long pg = sysconf(_SC_PAGESIZE);
    size_t n = MEM / (size_t)pg, count = 0;
    uint64_t *ent = mxu_malloc(n * sizeof(uint64_t));
    uintptr_t first = (uintptr_t)mxu_vm_guest_ptr(vm, 0, MEM) / (uintptr_t)pg;
    CHECK(pread(fd, ent, n * sizeof(uint64_t), (off_t)(first * sizeof(uint64_t))) ==
          (ssize_t)(n * sizeof(uint64_t)));
    for (size_t i = 0; i < n; i++)
        count += (ent[i] >> 63) & 1 && !((ent[i] >> 61) & 1);
    free(ent);
    close(fd);
    return count;
}

/* A reset repopulates, as private copies, only the pages that were private
 * (written by the last instance, or by the host for it); pages of the image
 * the guest only read are mapped again shared with the image, not copied.
 * (With mincore, which reports every page of the memfd's page cache, every
 * page of the pristine image got a private copy at each reset.) */
static void test_reset_repopulates_only_written_pages(void)
{
    need_kvm();
    mxu_buf img = guest_image();
    mxu_vm *vm = boot_pristine(&img, MXU_VM_RESET_COW);
    mxu_err err = {0};
    long pg = sysconf(_SC_PAGESIZE);
    size_t n = MEM / (size_t)pg, image = 0;
    unsigned char *vec = mxu_malloc(n);
    CHECK(mincore(mxu_vm_guest_ptr(vm, 0, MEM), MEM, vec) == 0);
    for (size_t i = 0; i < n; i++)
        image += vec[i] & 1;
    free(vec);
    CHECK_EQ_INT(run_to_exit(vm, 'x'), 7);
    CHECK(mxu_vm_reset(vm, &err) == 0);
    size_t after_x = private_pages(vm);
    CHECK_EQ_INT(run_to_exit(vm, 'm'), 9);
    CHECK(mxu_vm_reset(vm, &err) == 0);
    size_t after_m = private_pages(vm);
    printf("  pristine image %zu pages; private copies after a reset: %zu (the guest exited at "
           "once), %zu (it dirtied 4 MiB)\n",
           image, after_x, after_m);
    CHECK(after_x > 0 && after_x < image / 2);
    CHECK(after_m >= (4u << 20) / (size_t)pg); /* its heap, at least */
    mxu_vm_destroy(vm);
    mxu_buf_free(&img);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(v[0]), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double mean(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return s / (double)n;
}

/* What a reset costs, each way, and what the guest then pays to run from
 * it (cow: KVM maps every page it touches again; dirtylog: its first write
 * to each page since the reset faults, for the log). The VMs take turns,
 * round by round, so all see the same machine; dirtylog twice: as it is
 * (manual protection, the last guest's pages left writable) and with
 * KVM_GET_DIRTY_LOG alone (every logged page protected again, "get").
 * Phases: a guest that exits at once, one that rewrites 4 MiB, and the
 * first again (does the memory the 4 MiB took stay?). Measured, not
 * asserted: docs/vm.md has the numbers. */
static void test_reset_time(void)
{
    need_kvm();
    mxu_buf img = guest_image();
    enum { WAYS = 3, ROUNDS = 200 };
    static const char *const names[WAYS] = {"cow", "dirtylog", "dirtylog/get"};
    mxu_vm *vm[WAYS];
    vm[0] = boot_pristine(&img, MXU_VM_RESET_COW);
    vm[1] = boot_pristine(&img, MXU_VM_RESET_DIRTYLOG);
    mxu_vm_dirtylog_manual = false; /* read at the snapshot */
    vm[2] = boot_pristine(&img, MXU_VM_RESET_DIRTYLOG);
    mxu_vm_dirtylog_manual = true;
    mxu_err err = {0};
    const char cmds[] = {'x', 'm', 'x'};
    static double reset[WAYS][ROUNDS], run[WAYS][ROUNDS];
    for (size_t c = 0; c < sizeof(cmds); c++) {
        size_t pages[WAYS] = {0};
        for (int i = 0; i < ROUNDS; i++) {
            for (int k = 0; k < WAYS; k++) {
                double t0 = now_us();
                run_to_exit(vm[k], cmds[c]);
                double t1 = now_us();
                if (mxu_vm_reset(vm[k], &err) < 0)
                    MXU_TEST_FAIL_("reset: %s", err.msg);
                double t2 = now_us();
                run[k][i] = t1 - t0;
                reset[k][i] = t2 - t1;
                pages[k] = mxu_vm_last_reset_pages(vm[k]);
            }
        }
        printf("  phase %zu, '%c' (%s), %d rounds:\n", c + 1, cmds[c],
               cmds[c] == 'm' ? "4 MiB heap + 64 KiB bss and stack dirtied" : "exit at once",
               ROUNDS);
        for (int k = 0; k < WAYS; k++)
            printf("    %-14s reset mean %7.1f us, p50 %7.1f us (%4zu pages copied); the "
                   "guest's run from pristine mean %7.1f us, p50 %7.1f us; guest memory held "
                   "%ld KiB\n",
                   names[k], mean(reset[k], ROUNDS), median(reset[k], ROUNDS), pages[k],
                   mean(run[k], ROUNDS), median(run[k], ROUNDS),
                   (long)(mxu_vm_memory_held(vm[k]) >> 10));
    }
    for (int k = 0; k < WAYS; k++)
        mxu_vm_destroy(vm[k]);
    mxu_buf_free(&img);
}

struct echo_host {
    int to_guest, from_guest;
    int rounds;
    double us, first_us; /* per round trip; the first one alone */
    bool ok;
};

static void *echo_driver(void *arg)
{
    struct echo_host *h = arg;
    char c = 'e';
    h->ok = write(h->to_guest, &c, 1) == 1;
    char msg[64], back[64];
    double t0 = now_us();
    for (int i = 0; i < h->rounds && h->ok; i++) {
        int n = snprintf(msg, sizeof(msg), "round %d", i);
        h->ok = write(h->to_guest, msg, (size_t)n) == n;
        ssize_t got = 0;
        while (h->ok && got < n) {
            ssize_t k = read(h->from_guest, back + got, (size_t)(n - got));
            h->ok = k > 0;
            got += k > 0 ? k : 0;
        }
        h->ok = h->ok && memcmp(msg, back, (size_t)n) == 0;
        if (i == 0)
            h->first_us = now_us() - t0;
    }
    h->us = (now_us() - t0) / h->rounds;
    close(h->to_guest); /* EOF: the guest exits */
    return NULL;
}

static void test_hypercall_round_trip(void)
{
    need_kvm();
    mxu_buf img = guest_image();
    mxu_err err = {0};
    mxu_vm *vm;
    if (mxu_vm_create(img.data, img.len, MEM, &vm, &err) < 0)
        MXU_TEST_FAIL_("%s", err.msg);
    int in[2], out[2];
    CHECK(pipe(in) == 0 && pipe(out) == 0);
    struct echo_host h = {.to_guest = in[1], .from_guest = out[0], .rounds = 2000};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, echo_driver, &h) == 0);
    mxu_vm_serve_state st = {0};
    int rc = mxu_vm_serve(vm, in[0], out[1], -1, 10000, &st, &err);
    pthread_join(t, NULL);
    if (rc < 0)
        MXU_TEST_FAIL_("%s", err.msg);
    CHECK(h.ok);
    CHECK_EQ_INT(st.exit_code, 0);
    printf("  echo through the guest (pipe -> READ -> WRITE -> pipe): %.1f us per round trip\n",
           h.us);
    mxu_vm_destroy(vm);
    mxu_buf_free(&img);
}

/* Where one exit's time goes: the guest stamps the TSC when an exit has
 * returned to it and again just before its next doorbell store (vm-guest.c,
 * 't'); the host stamps it around mxu_vm_run. Entry is host-before-KVM_RUN
 * to guest-running, exit is guest-doorbell to host-after-KVM_RUN: all of
 * it the hypervisor's and KVM's (under PVM: vcpu_load's MSR read, the world
 * switch, the MMIO decode, vcpu_put's CR4 write; docs/vm.md "Numbers").
 * The TSC is the host's in the guest too (PVM and VMX without scaling; a
 * negative or absurd span would show otherwise). Printed, not asserted. */
static void test_exit_cost(void)
{
    enum { ROUNDS = 2000 }; /* vm-guest.c's EXIT_COST_ROUNDS */
    need_kvm();
    mxu_buf img = guest_image();
    mxu_err err = {0};
    mxu_vm *vm;
    if (mxu_vm_create(img.data, img.len, MEM, &vm, &err) < 0)
        MXU_TEST_FAIL_("%s", err.msg);
    /* Boot to the guest's first READ (its start rings RANDOM before), and
     * answer that READ with the command by hand. */
    int out[2];
    CHECK(pipe(out) == 0);
    mxu_vm_serve_state st = {0};
    if (mxu_vm_serve_boot(vm, out[1], -1, 5000, &st, NULL, &err) < 0)
        MXU_TEST_FAIL_("boot: %s", err.msg);
    CHECK(st.pending_read);
    close(out[0]);
    close(out[1]);
    mxu_vm_exit ex;
    *(uint8_t *)mxu_vm_guest_ptr(vm, MXU_VM_IN_ADDR, 1) = 't';
    mxu_vm_ctl_block(vm)->in_len = 1;
    const volatile uint64_t *stamp =
        (const volatile uint64_t *)mxu_vm_guest_ptr(vm, MXU_VM_OUT_ADDR, 24);
    static double entry[ROUNDS], exit_[ROUNDS], whole[ROUNDS]; /* TSC ticks */
    uint64_t ns0 = mxu_now_ns(), tsc0 = __builtin_ia32_rdtsc();
    int n = 0;
    for (int i = 0; i < ROUNDS; i++) {
        uint64_t h0 = __builtin_ia32_rdtsc();
        if (mxu_vm_run(vm, 0, &ex, &err) < 0 || ex.kind != MXU_VM_EXIT_HCALL)
            MXU_TEST_FAIL_("round %d: %s", i, err.msg);
        uint64_t h1 = __builtin_ia32_rdtsc(), g0 = stamp[1], g1 = stamp[2];
        CHECK_EQ_INT(ex.nr, MXU_VM_HC_WRITE);
        if (!(h0 < g0 && g0 <= g1 && g1 < h1))
            continue; /* not one clock: nothing to say */
        entry[n] = (double)(g0 - h0);
        exit_[n] = (double)(h1 - g1);
        whole[n] = (double)(h1 - h0);
        n++;
    }
    double tsc_per_us =
        (double)(__builtin_ia32_rdtsc() - tsc0) * 1000.0 / (double)(mxu_now_ns() - ns0);
    CHECK(mxu_vm_run(vm, 5000, &ex, &err) == 0 && ex.kind == MXU_VM_EXIT_HCALL);
    CHECK_EQ_INT(ex.nr, MXU_VM_HC_EXIT);
    if (n < ROUNDS / 2) {
        printf("  exit cost: the guest's TSC is not the host's (%d of %d rounds in order)\n", n,
               ROUNDS);
    } else {
        printf("  one exit, p50 over %d rounds: KVM_RUN %.1f us = entry (KVM_RUN to the guest "
               "running) %.1f us + exit (doorbell to KVM_RUN returning) %.1f us + the guest's "
               "own ~0\n",
               n, median(whole, (size_t)n) / tsc_per_us, median(entry, (size_t)n) / tsc_per_us,
               median(exit_, (size_t)n) / tsc_per_us);
    }
    mxu_vm_destroy(vm);
    mxu_buf_free(&img);
}

/* Echo `rounds` round trips through a booted guest stopped in its READ. */
static struct echo_host echo_on(mxu_vm *vm, int rounds)
{
    mxu_err err = {0};
    int in[2], out[2];
    CHECK(pipe(in) == 0 && pipe(out) == 0);
    struct echo_host h = {.to_guest = in[1], .from_guest = out[0], .rounds = rounds};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, echo_driver, &h) == 0);
    mxu_vm_serve_state st = {.pending_read = true};
    int rc = mxu_vm_serve(vm, in[0], out[1], -1, 10000, &st, &err);
    pthread_join(t, NULL);
    if (rc < 0)
        MXU_TEST_FAIL_("%s", err.msg);
    CHECK(h.ok);
    CHECK_EQ_INT(st.exit_code, 0);
    close(in[0]);
    close(out[0]);
    close(out[1]);
    return h;
}

/* Does KVM's dirty log tax the warm path? The same echo as above, on a
 * guest with no pristine image (nothing logged, nothing remapped), on one
 * reset the cow way and on one reset the dirtylog way (its slot logging
 * writes), taking turns for 10 rounds of 2000 round trips. The first round
 * trip after a reset is shown apart: that is where either way pays (cow:
 * KVM maps the pages again; dirtylog: first writes fault for the log).
 * Measured, not asserted. */
static void test_warm_round_trip_by_reset(void)
{
    need_kvm();
    mxu_buf img = guest_image();
    enum { WAYS = 3, ROUNDS = 10 };
    static const char *const names[WAYS] = {"none", "cow", "dirtylog"};
    double us[WAYS][ROUNDS], first[WAYS][ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        for (int w = 0; w < WAYS; w++) {
            mxu_vm *vm;
            mxu_err err = {0};
            if (w == 0) {
                if (mxu_vm_create(img.data, img.len, MEM, &vm, &err) < 0)
                    MXU_TEST_FAIL_("create: %s", err.msg);
                mxu_vm_exit ex;
                do {
                    CHECK(mxu_vm_run(vm, 5000, &ex, &err) == 0);
                    CHECK_EQ_INT(ex.kind, MXU_VM_EXIT_HCALL);
                } while (ex.nr == MXU_VM_HC_RANDOM);
                CHECK_EQ_INT(ex.nr, MXU_VM_HC_READ);
            } else {
                vm = boot_pristine(&img, w == 1 ? MXU_VM_RESET_COW : MXU_VM_RESET_DIRTYLOG);
                /* A used guest, reset: as a recycled helper serves. */
                run_to_exit(vm, 'e');
                CHECK(mxu_vm_reset(vm, &err) == 0);
            }
            struct echo_host h = echo_on(vm, 2000);
            us[w][r] = h.us;
            first[w][r] = h.first_us;
            mxu_vm_destroy(vm);
        }
    }
    for (int w = 0; w < WAYS; w++) {
        printf("  reset %-8s echo round trip: mean of rounds %.1f us, median %.1f us (rounds",
               names[w], mean(us[w], ROUNDS), median(us[w], ROUNDS));
        for (int r = 0; r < ROUNDS; r++)
            printf(" %.1f", us[w][r]);
        printf("); the first round trip: median %.1f us\n", median(first[w], ROUNDS));
    }
    mxu_buf_free(&img);
}

static void test_write_outside_memory(void)
{
    expect_fault('w', "vm: guest fault: page fault: write to 0x2001000 (not mapped)");
}

static void test_page_tables_protected(void)
{
    expect_fault('p', "vm: guest fault: page fault: write to 0x8000 (not allowed)");
}

static void test_code_protected(void)
{
    expect_fault('c', "vm: guest fault: page fault: write to 0x40");
}

static void test_infinite_loop_kicked(void)
{
    double t0 = now_us();
    expect_fault_t('l', 300, "timeout");
    double ms = (now_us() - t0) / 1000;
    printf("  stopped after %.0f ms (timeout 300 ms)\n", ms);
    CHECK(ms < 5000);
}

static void test_port_io_fault(void)
{
    /* PVM: triple fault (shutdown); VMX: #GP at CPL3, through the stubs. */
    expect_fault('o', "vm: guest fault: ");
}

static void test_hostile_lengths(void)
{
    expect_fault('h', "out_len 4294967295, over the 1048576-byte buffer");
    expect_fault('H', "out_len 1048577");
    expect_fault('u', "unknown hypercall 99");
    expect_fault('R', "RANDOM with rand_len 257, over the 256-byte buffer");
    expect_fault('d', "8-byte write at guest-physical 0xf0000000");
    expect_fault('r', "4-byte read at guest-physical 0xf0000000");
}

/* Run guest command 'g' once: 600 random bytes, then its %fs:0x28 and
 * %fs:0 as the guest reads them. */
static void random_run(uint8_t out[616])
{
    need_kvm();
    mxu_buf img = guest_image();
    mxu_err err = {0};
    mxu_vm *vm;
    if (mxu_vm_create(img.data, img.len, MEM, &vm, &err) < 0)
        MXU_TEST_FAIL_("create: %s", err.msg);
    int in[2], o[2];
    CHECK(pipe(in) == 0 && pipe(o) == 0);
    CHECK(write(in[1], "g", 1) == 1);
    close(in[1]);
    mxu_vm_serve_state st = {0};
    if (mxu_vm_serve(vm, in[0], o[1], -1, 5000, &st, &err) < 0)
        MXU_TEST_FAIL_("serve: %s", err.msg);
    CHECK_EQ_INT(st.exit_code, 0);
    close(o[1]);
    size_t n = 0;
    ssize_t k;
    while (n < 616 && (k = read(o[0], out + n, 616 - n)) > 0)
        n += (size_t)k;
    CHECK_EQ_U64(n, 616);
    mxu_vm_destroy(vm);
    close(in[0]);
    close(o[0]);
    mxu_buf_free(&img);
}

/* RANDOM gives the host's entropy: different in every call and every
 * guest; fs points at the guest's TCB, which holds itself and a canary. */
static void test_random_and_tcb(void)
{
    uint8_t a[616], b[616];
    random_run(a);
    random_run(b);
    CHECK(memcmp(a, a + 300, 300) != 0);
    CHECK(memcmp(a, b, 600) != 0);
    int zeros = 0;
    for (int i = 0; i < 600; i++)
        zeros += a[i] == 0;
    CHECK(zeros < 30); /* ~2.3 expected */
    uint64_t canary, self;
    memcpy(&canary, a + 600, 8);
    memcpy(&self, a + 608, 8);
    CHECK_EQ_U64(self, MXU_VM_TCB_ADDR);
    CHECK(canary != 0 && (canary & 0xff) == 0);
    memcpy(&self, b + 600, 8);
    CHECK(self != canary); /* a new guest, a new canary */
}

/* A copy of the guest image with one program header changed. */
static void check_bad_image(void (*mutate)(uint8_t *img, Elf64_Phdr *ph), const char *what)
{
    mxu_buf img = guest_image();
    Elf64_Ehdr eh;
    memcpy(&eh, img.data, sizeof(eh));
    Elf64_Phdr ph;
    memcpy(&ph, img.data + eh.e_phoff, sizeof(ph));
    mutate((uint8_t *)img.data, &ph);
    memcpy(img.data + eh.e_phoff, &ph, sizeof(ph));
    vm_image im;
    mxu_err err = {0};
    CHECK_EQ_INT(vm_image_parse(img.data, img.len, MEM, &im, &err), -1);
    CHECK_CONTAINS(err.msg, what);
    mxu_buf_free(&img);
}

static void m_low(uint8_t *i, Elf64_Phdr *ph)
{
    (void)i;
    ph->p_vaddr = 0x1000; /* over the page tables */
}
static void m_high(uint8_t *i, Elf64_Phdr *ph)
{
    (void)i;
    ph->p_memsz = MEM; /* into the stack and beyond */
}
static void m_wrap(uint8_t *i, Elf64_Phdr *ph)
{
    (void)i;
    ph->p_vaddr = UINT64_MAX - 0x1000;
}
static void m_file(uint8_t *i, Elf64_Phdr *ph)
{
    (void)i;
    ph->p_offset = UINT64_MAX - 4; /* offset + filesz overflows */
}
static void m_wx(uint8_t *i, Elf64_Phdr *ph)
{
    (void)i;
    ph->p_flags |= PF_W; /* text becomes writable and executable */
}
static void m_type(uint8_t *i, Elf64_Phdr *ph)
{
    (void)ph;
    i[16] = ET_DYN;
}

static void test_image_checks(void)
{
    mxu_buf img = guest_image();
    vm_image im;
    mxu_err err = {0};
    CHECK_EQ_INT(vm_image_parse(img.data, img.len, MEM, &im, &err), 0);
    CHECK_EQ_INT(vm_image_parse(img.data, 10, MEM, &im, &err), -1);
    static const char script[] =
        "#!/bin/sh\n# a script is not a guest image, however long it is\necho hi\n";
    CHECK_EQ_INT(vm_image_parse(script, sizeof(script), MEM, &im, &err), -1);
    CHECK_CONTAINS(err.msg, "not a 64-bit little-endian ELF");
    mxu_buf_free(&img);
    check_bad_image(m_low, "outside the image area");
    check_bad_image(m_high, "outside the image area");
    check_bad_image(m_wrap, "outside the image area");
    check_bad_image(m_file, "outside the image file");
    check_bad_image(m_wx, "share a 2 MiB page");
    check_bad_image(m_type, "not a static x86-64 executable");
    /* Memory bounds */
    need_kvm();
    img = guest_image();
    mxu_vm *vm;
    CHECK_EQ_INT(mxu_vm_create(img.data, img.len, 4u << 20, &vm, &err), -1);
    CHECK_CONTAINS(err.msg, "guest memory must be");
    CHECK_EQ_INT(mxu_vm_create(img.data, img.len, 4ull << 30, &vm, &err), -1);
    mxu_buf_free(&img);
}

/* The helper process end to end: mxu-vmm as the executor runs it. */
static void test_helper_reports_fault_as_fatal_frame(void)
{
    need_kvm();
    int in[2], out[2], errp[2];
    CHECK(pipe(in) == 0 && pipe(out) == 0 && pipe(errp) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 3);
        dup2(out[1], 4);
        dup2(errp[1], 2);
        execl(MXU_VMM_PATH, "mxu-vmm", "33554432", VM_GUEST, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(errp[1]);
    CHECK(write(in[1], "w", 1) == 1);
    uint8_t buf[2048];
    ssize_t n = 0, k;
    while ((k = read(out[0], buf + n, sizeof(buf) - (size_t)n)) > 0)
        n += k;
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(WEXITSTATUS(st), 70);
    CHECK(n > 16);
    CHECK_EQ_INT(buf[4], 7); /* FATAL */
    buf[n < (ssize_t)sizeof(buf) ? n : n - 1] = 0;
    CHECK_CONTAINS((char *)buf + 24, "vm: guest fault: page fault");
    close(in[1]);
    close(out[0]);
    close(errp[0]);
}

/* The helper's --reset: a name it does not know is refused at once. */
static void test_helper_reset_choice(void)
{
    int errp[2];
    CHECK(pipe(errp) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(errp[1], 2);
        execl(MXU_VMM_PATH, "mxu-vmm", "--reset", "snapshot", "33554432", VM_GUEST, (char *)NULL);
        _exit(127);
    }
    close(errp[1]);
    char buf[512];
    ssize_t n = read(errp[0], buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(WEXITSTATUS(st), 2);
    CHECK_CONTAINS(buf, "unknown reset \"snapshot\" (cow or dirtylog)");
    close(errp[0]);
    mxu_vm_reset_kind k;
    mxu_err err = {0};
    CHECK(mxu_vm_reset_kind_parse(NULL, &k, &err) == 0 && k == MXU_VM_RESET_COW);
    CHECK(mxu_vm_reset_kind_parse("dirtylog", &k, &err) == 0 && k == MXU_VM_RESET_DIRTYLOG);
}

MXU_TESTS(TEST(test_boot_and_exit), TEST(test_create_and_first_hypercall_time),
          TEST(test_hypercall_round_trip), TEST(test_exit_cost), TEST(test_write_outside_memory),
          TEST(test_page_tables_protected), TEST(test_code_protected),
          TEST(test_infinite_loop_kicked), TEST(test_port_io_fault), TEST(test_hostile_lengths),
          TEST(test_random_and_tcb), TEST(test_image_checks),
          TEST(test_helper_reports_fault_as_fatal_frame), TEST(test_reset_is_pristine_cow),
          TEST(test_reset_is_pristine_dirtylog), TEST(test_reset_restores_host_writes_cow),
          TEST(test_reset_restores_host_writes_dirtylog), TEST(test_reset_is_pristine_dirtylog_get),
          TEST(test_reset_restores_host_writes_dirtylog_get),
          TEST(test_reset_repopulates_only_written_pages),
          TEST(test_dirtylog_copies_only_written_pages), TEST(test_dirtylog_host_writes_confined),
          TEST(test_dirtylog_reset_restores_swapped_host_writes), TEST(test_reset_time),
          TEST(test_warm_round_trip_by_reset), TEST(test_helper_reset_choice))
