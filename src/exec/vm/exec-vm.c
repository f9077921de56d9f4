/*
 * The vm executor: each instance is a KVM guest with no guest kernel, run by
 * its own helper process, mxu-vmm (vmm-main.c; why a process and not a
 * thread is said there). The helper is started exactly like a process
 * instance (exec-process.c: own group, death signal, rlimits, the channel
 * pipes on fds 3 and 4), so everything the scheduler does with instances —
 * frames, kill, CPU and memory use, exit reasons — works unchanged; only
 * what runs is different: `mxu-vmm MEMORY IMAGE` instead of the program.
 *
 * The guest image is the `runtime: c` build made for vm at deploy (the
 * function's sources linked with the guest SDK, sdk/guest/); prepare()
 * checks it once per unit, so a unit built for another executor fails with
 * a message instead of a crash loop.
 *
 * Spares. A cold start that forks and execs the helper and then builds and
 * boots a VM costs about 2 ms, most of it fork+exec and KVM setup that does
 * not depend on the invocation. So for every unit the executor keeps
 * *spares* (two by default; MXU_VM_SPARES): helpers already started with
 * the unit's warm spec, whose guest has booted and sent HELLO and waits in
 * its first READ, the HELLO sitting in the channel pipe. spawn() hands the
 * oldest spare over as the instance (its exit callback becomes the
 * caller's) and refills a moment later, off the request's path. A spare
 * serves exactly one instance and has never run an invocation before: no
 * two instances ever share a VM. Spares are made at prepare() (so even the
 * first cold start finds one) and after each spawn; a spare that dies on
 * its own is dropped and not replaced at once, so a broken image cannot
 * make the node fork in a loop.
 *
 * Recycling (MXU_VM_RECYCLE, on by default with spares). A helper started
 * with --recycle keeps its booted guest as a pristine image (vm-kvm.c) and,
 * when its instance ends cleanly (BYE, exit 0), resets the guest to it and
 * says "R" on a control socket (its fd 5). The executor then reports the
 * instance's end to the scheduler as an exit with status 0
 * (mxu_proc_end_detached: the process is not touched), gives the helper a
 * new channel and stderr ("G" + three descriptors), and files it as one of
 * the unit's spares under a new handle: the next cold start costs a reset
 * (tens of microseconds) instead of a fork, an exec and a new VM. The reset
 * guest is byte for byte the pristine one (test-vm), so nothing of one
 * instance reaches the next. A failed guest is never recycled: the helper
 * exits as before. A unit that has its spares already, or is gone, gets no
 * recycled helper: closing the socket ends it.
 *
 * Refill and recycling. A recycling helper whose instance is live is
 * expected back as a spare: the refill counts it (spares wanted - spares
 * present - helpers expected back) and forks only for the rest. A helper
 * stops being expected when it comes back (R), when its instance ends
 * without an R (a fault, a kill, a non-zero exit: the refill then runs at
 * once), and BACK_WAIT_MS after it was taken: an instance that lives longer
 * is a warm one, and its unit must not go without spares for as long as it
 * stays warm.
 *
 * Spares and the memory budget. Spares hold memory no instance reserved;
 * each is charged SPARE_CHARGE_BASE plus its image (spare_charge() says how
 * that was measured). standby() reports the charge of the spares present,
 * shed() kills spares of the least recently used units first, and a spare
 * is made (refill, recycled helper) only when the scheduler's budget has
 * room for its charge (mxu_exec_standby_fits).
 */
#include "exec/exec-internal.h"
#include "exec/vm/vm-internal.h"
#include "mxu-config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

/* RLIMIT_DATA of the helper: guest memory is a private mapping of the
 * helper's, so the limit is the guest's memory plus the helper's own needs. */
#define HELPER_OVERHEAD (64ull << 20)

#define SPARES_DEFAULT 2
#define SPARES_MAX     8
/* Spares of one unit that died before use, in a row, after which the unit
 * gets no more until one is used (a broken image must not fork forever). */
#define SPARE_FAILURES_MAX 3
/* Refill this long after a spawn that took the unit's last spare: the
 * instance that took it gets its first frames through before the node
 * forks again (a fork blocks the node until the child has exec'd). */
#define REFILL_DELAY_MS 2
/* ... and this long when spares are left: time for the helper that was
 * taken to come back recycled (its instance ended, its guest reset), so
 * that the node forks only when helpers do not come back. */
#define REFILL_LAZY_MS 100
/* A recycling helper counts as on its way back for this long after it was
 * taken (see the top of the file). A cold start served in a few ms; on a
 * slow node the reset and the R arrive within some hundred ms. */
#define BACK_WAIT_MS 1000

/* What a spare holds, measured on this machine (docs/vm.md, "Spares"):
 * `/proc/PID/smaps_rollup` of idle spares (8, 32 and 128 MiB guests, with
 * and without recycling): PSS 0.48-0.62 MiB (RSS 0.90-1.04 MiB), of which
 * the static helper's text, shared by all helpers, ~0.42 MiB and the guest
 * pages the probe function's boot touched 0.15-0.2 MiB (its private copies
 * and the pristine memfd's); and /proc/meminfo over 40 spares started at
 * once: 0.2-0.25 MiB of kernel memory each (page tables, KVM's secondary
 * page tables, slab, kernel stack), which no smaps shows. Reading each
 * spare's smaps instead would cost a page-table walk per spare at every
 * admission; a spare waits in read() and its memory does not change, so a
 * charge fixed per unit is as exact. The base covers the helper and the
 * kernel; the guest's share grows with its image, whose loaded bytes its
 * boot touches (twice with recycling: the pristine copy and a private one). */
#define SPARE_CHARGE_BASE (1ull << 20)

/* One unit's spares and the spec to make more: a deep copy of the warm
 * spec prepare() was given (spawn's spec is borrowed for the call only). */
typedef struct vm_unit {
    char *label, *image, *cwd;
    char **envp;
    uint64_t memory_bytes, cpu_limit_s;
    uint32_t max_open_files;
    unsigned refs;
    mxu_proc *spare[SPARES_MAX];
    unsigned nspare;
    unsigned failures;
    uint64_t charge;       /* standby bytes per spare (spare_charge) */
    uint64_t used_ms;      /* loop time of its last spawn or prepare: shed() goes by it */
    struct vm_helper *out; /* recycling helpers serving its instances (expected back) */
    struct mxu_vm_spares *owner;
    struct vm_unit *next;
} vm_unit;

struct mxu_vm_spares {
    mxu_exec *ex;
    vm_unit *units;
    unsigned per_unit;
    bool recycle;
    const char *reset; /* how recycled helpers reset their guest: "dirtylog" or "cow" */
    uv_timer_t refill;
};

/* A recycling helper's control socket, kept with whichever handle stands
 * for the helper now (its instance's, then a spare's). */
typedef struct vm_helper {
    mxu_exec *ex;
    mxu_proc *p;
    char *label, *image; /* its unit's key: the unit may be gone when it comes back */
    int ctl;
    uv_poll_t poll;
    uv_check_t recheck; /* runs the recycling after this loop turn's I/O (on_helper_ctl) */
    int open_handles;   /* poll and recheck: vh is freed when both have closed */
    /* While it serves an instance of `unit`: on the unit's `out` list. */
    vm_unit *unit;
    uint64_t out_ms; /* loop time when it was taken */
    struct vm_helper *out_prev, *out_next;
} vm_helper;

static int helper_start(mxu_exec *ex, const mxu_exec_spec *spec, bool recycle,
                        mxu_proc_exit_cb exit_cb, void *ud, mxu_proc **out, mxu_err *err);

const char *mxu_vm_unavailable(void)
{
    return mxu_vm_probe();
}

static const char *helper_path(void)
{
    const char *p = getenv("MXU_VMM");
    return p && p[0] ? p : MXU_VMM_PATH;
}

static uint64_t guest_memory(const mxu_exec_spec *spec)
{
    uint64_t m = spec->memory_bytes ? spec->memory_bytes : (128ull << 20);
    return m & ~(uint64_t)(MXU_VM_PAGE - 1);
}

static vm_unit *unit_get(mxu_exec *ex, const mxu_exec_spec *spec, uint64_t charge);
static void unit_refill(vm_unit *u);
static struct mxu_vm_spares *spares_get(mxu_exec *ex);

/* The standby bytes charged per spare of a unit (see SPARE_CHARGE_BASE):
 * the base plus the image's loaded bytes, in the host's 4 KiB pages (the
 * guest's 2 MiB pages are backed by those as they are touched), twice when
 * the helper keeps a pristine copy. */
static uint64_t spare_charge(const vm_image *im, bool recycle)
{
    uint64_t loaded = 0;
    for (size_t i = 0; i < im->nseg; i++)
        loaded += (im->seg[i].filesz + 4095u) & ~(uint64_t)4095u;
    return SPARE_CHARGE_BASE + loaded * (recycle ? 2 : 1);
}

static int vm_prepare(mxu_exec *ex, const mxu_exec_spec *spec, mxu_err *err)
{
    const char *why = mxu_vm_probe();
    if (why)
        return mxu_err_set(err, ENODEV, "%s: the vm executor cannot run here: %s", spec->label,
                           why);
    uint64_t mem = guest_memory(spec);
    if (mem < MXU_VM_MEM_MIN || mem > MXU_VM_MEM_MAX)
        return mxu_err_set(err, EINVAL, "%s: a vm guest's memory must be %llu MiB .. %llu GiB",
                           spec->label, (unsigned long long)(MXU_VM_MEM_MIN >> 20),
                           (unsigned long long)(MXU_VM_MEM_MAX >> 30));
    if (access(helper_path(), X_OK) < 0)
        return mxu_err_sys(err, errno, "%s: cannot run the VMM helper %s", spec->label,
                           helper_path());
    if (spec->argv == NULL || spec->argv[0] == NULL)
        return mxu_err_set(err, EINVAL, "%s: no guest image", spec->label);
    _cleanup_buf_ mxu_buf img = {0};
    if (mxu_read_file(spec->argv[0], (size_t)mem, &img, err) < 0)
        return mxu_err_prefix(err, "%s: guest image", spec->label);
    vm_image im;
    if (vm_image_parse(img.data, img.len, mem, &im, err) < 0)
        return mxu_err_prefix(err, "%s: %s is not a guest image (deploy it with executor: vm)",
                              spec->label, spec->argv[0]);
    spares_get(ex);
    vm_unit *u = unit_get(ex, spec, spare_charge(&im, ex->vm->recycle));
    if (u)
        unit_refill(u);
    return 0;
}

/* ---- recycling ------------------------------------------------------------------------------ */

static void on_helper_closed(uv_handle_t *h)
{
    vm_helper *vh = h->data;
    if (--vh->open_handles > 0)
        return;
    mxu_closep(&vh->ctl);
    free(vh->label);
    free(vh->image);
    free(vh);
}

static void refill_soon(struct mxu_vm_spares *sp, uint64_t delay);

/* The helper now serves an instance of `u`, and is expected back. */
static void helper_out(vm_helper *vh, vm_unit *u)
{
    vh->unit = u;
    vh->out_ms = uv_now(vh->ex->loop);
    vh->out_prev = NULL;
    vh->out_next = u->out;
    if (u->out)
        u->out->out_prev = vh;
    u->out = vh;
}

/* The helper is no longer expected back: it came back (`back`), or it
 * ended or was let go without coming back, and then its unit may be short
 * of what the refill counted on: refill now. */
static void helper_in(vm_helper *vh, bool back)
{
    vm_unit *u = vh->unit;
    if (u == NULL)
        return;
    if (vh->out_prev)
        vh->out_prev->out_next = vh->out_next;
    else
        u->out = vh->out_next;
    if (vh->out_next)
        vh->out_next->out_prev = vh->out_prev;
    vh->unit = NULL;
    vh->out_prev = vh->out_next = NULL;
    if (!back && u->nspare < u->owner->per_unit)
        refill_soon(u->owner, REFILL_DELAY_MS);
}

/* Stop listening to the helper; closing the socket tells a helper waiting
 * for its next instance to end. */
static void helper_drop(vm_helper *vh)
{
    helper_in(vh, false);
    if (vh->p) {
        vh->p->xdata = NULL;
        vh->p->on_free = NULL;
        vh->p = NULL;
    }
    uv_poll_stop(&vh->poll);
    uv_close((uv_handle_t *)&vh->poll, on_helper_closed);
    uv_close((uv_handle_t *)&vh->recheck, on_helper_closed); /* stops a pending recycle */
}

static void helper_on_proc_free(mxu_proc *p)
{
    if (p->xdata)
        helper_drop(p->xdata);
}

static vm_unit *unit_by_key(mxu_exec *ex, const char *label, const char *image);
static void on_spare_exit(mxu_proc *p, const mxu_proc_exit *ex, void *ud);

/* The helper's instance ended cleanly and its guest is pristine again: a
 * new handle with a new channel and stderr, filed as a spare; then the old
 * instance's end goes to its owner. */
static void helper_recycle(vm_helper *vh)
{
    mxu_proc *p = vh->p;
    if (p == NULL || p->exited || p->freed)
        return; /* being killed, or already gone */
    vm_unit *u = unit_by_key(vh->ex, vh->label, vh->image);
    /* The instance it served still holds its reservation (the unit's
     * memory) until its end is reported, below: the spare replaces it, so
     * only what the spare costs beyond it must fit. */
    uint64_t more = u && u->charge > u->memory_bytes ? u->charge - u->memory_bytes : 0;
    if (u == NULL || u->nspare >= vh->ex->vm->per_unit || !mxu_exec_standby_fits(vh->ex, more)) {
        helper_drop(vh); /* it ends; its exit reaches the instance as usual */
        return;
    }
    int host[2] = {-1, -1}, child[2] = {-1, -1}, errp[2] = {-1, -1};
    mxu_err err = {0};
    mxu_proc *p2 = NULL;
    bool watched = false;
    if (mxu_exec_channel_pipes(host, child, u->label, &err) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
        mxu_fd_nonblock_cloexec(host[0]) < 0 || mxu_fd_nonblock_cloexec(host[1]) < 0 ||
        mxu_fd_nonblock_cloexec(errp[0]) < 0) {
        mxu_warn("vm: %s: cannot recycle a helper: %s", u->label,
                 err.msg[0] ? err.msg : strerror(errno));
        goto fail;
    }
    p2 = mxu_calloc(1, sizeof(*p2));
    p2->ops = &mxu_exec_vm_ops;
    p2->pid = p->pid;
    p2->pidfd = -1;
    p2->exit_cb = on_spare_exit;
    p2->ud = u;
    p2->fds = (mxu_proc_fds){.channel = mxu_steal_fd(&host[0]),
                             .channel_w = mxu_steal_fd(&host[1]),
                             .channel_split = true,
                             .stdin_w = -1,
                             .stdout_r = -1,
                             .stderr_r = mxu_steal_fd(&errp[0])};
    if (mxu_proc_watch(vh->ex, p2, &err) < 0) {
        mxu_warn("vm: %s: cannot recycle a helper: %s", u->label, err.msg);
        goto fail;
    }
    watched = true;
    /* The new instance's ends, to the helper: in, out, stderr. */
    int give[3] = {child[0], child[1], errp[1]};
    char g = 'G';
    union {
        char buf[CMSG_SPACE(sizeof(give))];
        struct cmsghdr align;
    } cm;
    memset(&cm, 0, sizeof(cm));
    struct iovec iov = {&g, 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(give));
    memcpy(CMSG_DATA(c), give, sizeof(give));
    if (sendmsg(vh->ctl, &msg, MSG_NOSIGNAL) != 1) {
        mxu_warn("vm: %s: cannot recycle a helper: %s", u->label, strerror(errno));
        mxu_proc_free(p2); /* kills the helper: its old instance then ends as usual */
        p2 = NULL;
        goto fail;
    }
    for (int k = 0; k < 2; k++) {
        mxu_closep(&child[k]);
        mxu_closep(&errp[k]);
    }
    /* The helper is the spare's now. */
    helper_in(vh, true);
    p->xdata = NULL;
    p->on_free = NULL;
    vh->p = p2;
    p2->xdata = vh;
    p2->on_free = helper_on_proc_free;
    u->spare[u->nspare++] = p2;
    mxu_proc_end_detached(p, 0); /* last: the owner may free p */
    return;

fail:
    if (p2 && !watched) { /* never linked by the exec layer (watch sets ex early) */
        mxu_closep(&p2->fds.channel);
        mxu_closep(&p2->fds.channel_w);
        mxu_closep(&p2->fds.stderr_r);
        mxu_closep(&p2->pidfd);
        free(p2);
    }
    for (int k = 0; k < 2; k++) {
        mxu_closep(&host[k]);
        mxu_closep(&child[k]);
        mxu_closep(&errp[k]);
    }
    helper_drop(vh);
}

static void on_helper_recheck(uv_check_t *h)
{
    vm_helper *vh = h->data;
    uv_check_stop(h);
    helper_recycle(vh);
}

static void on_helper_ctl(uv_poll_t *h, int status, int events)
{
    MXU_UNUSED(events);
    vm_helper *vh = h->data;
    char c = 0;
    ssize_t n = status < 0 ? -1 : recv(vh->ctl, &c, 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n == 1 && c == 'R') {
        /* Not now: after this loop turn's I/O callbacks. The helper wrote
         * the instance's last frames to the channel before it said R, so
         * the epoll_wait that saw R saw the channel readable too; but the
         * order in which this turn's callbacks run is not the order the
         * bytes came in, and recycling ends the instance (and closes its
         * channel) at once. The check phase follows the turn's I/O, so the
         * channel has been read, and the instance's last frames handled,
         * before its end is reported. */
        uv_check_start(&vh->recheck, on_helper_recheck);
        return;
    }
    /* EOF (the helper is gone: its pidfd says so) or nonsense: stop. */
    helper_drop(vh);
}

/* Start a helper for `spec` (the warm spec of a unit, or a copy of it);
 * `recycle`: with --recycle and its control socket. */
static int helper_start(mxu_exec *ex, const mxu_exec_spec *spec, bool recycle,
                        mxu_proc_exit_cb exit_cb, void *ud, mxu_proc **out, mxu_err *err)
{
    char mem[32];
    snprintf(mem, sizeof(mem), "%" PRIu64, guest_memory(spec));
    const char *argv[8];
    size_t n = 0;
    argv[n++] = helper_path();
    if (recycle) {
        argv[n++] = "--recycle";
        argv[n++] = "--reset";
        argv[n++] = ex->vm ? ex->vm->reset : "dirtylog";
    }
    argv[n++] = mem;
    argv[n++] = spec->argv[0];
    argv[n] = NULL;
    mxu_exec_spec hs = *spec;
    hs.argv = argv;
    hs.memory_bytes = guest_memory(spec) + HELPER_OVERHEAD;
    int ctl[2] = {-1, -1};
    if (recycle) {
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0)
            return mxu_err_sys(err, errno, "%s: socketpair", spec->label);
        hs.has_fd5 = true;
        hs.fd5 = ctl[1];
    }
    int rc = mxu_exec_process_ops.spawn(ex, &hs, exit_cb, ud, out, err);
    mxu_closep(&ctl[1]);
    if (rc < 0) {
        mxu_closep(&ctl[0]);
        return -1;
    }
    (*out)->ops = &mxu_exec_vm_ops;
    if (recycle) {
        vm_helper *vh = mxu_calloc(1, sizeof(*vh));
        vh->ex = ex;
        vh->p = *out;
        vh->label = mxu_strdup(spec->label);
        vh->image = mxu_strdup(spec->argv[0]);
        vh->ctl = ctl[0];
        fcntl(vh->ctl, F_SETFL, O_NONBLOCK);
        uv_poll_init(ex->loop, &vh->poll, vh->ctl);
        vh->poll.data = vh;
        uv_check_init(ex->loop, &vh->recheck);
        vh->recheck.data = vh;
        vh->open_handles = 2;
        uv_poll_start(&vh->poll, UV_READABLE, on_helper_ctl);
        (*out)->xdata = vh;
        (*out)->on_free = helper_on_proc_free;
    }
    return 0;
}

/* ---- spares -------------------------------------------------------------------------------- */

static struct mxu_vm_spares *spares_get(mxu_exec *ex)
{
    if (ex->vm)
        return ex->vm;
    struct mxu_vm_spares *sp = mxu_calloc(1, sizeof(*sp));
    sp->ex = ex;
    const char *env = getenv("MXU_VM_SPARES");
    int n = env && env[0] ? atoi(env) : SPARES_DEFAULT;
    sp->per_unit = (unsigned)MXU_MIN(MXU_MAX(n, 0), SPARES_MAX);
    env = getenv("MXU_VM_RECYCLE");
    sp->recycle = sp->per_unit > 0 && !(env && strcmp(env, "0") == 0);
    /* How a recycled helper resets its guest (docs/vm.md, "Pristine
     * images"): by the dirty log (faster at every step measured), or by
     * copy-on-write (MXU_VM_RESET=cow), which holds whatever wrote a page.
     * A node setting, never the function's: the helper takes it as an
     * argument and does not read its environment, which is the function's. */
    sp->reset = "dirtylog";
    env = getenv("MXU_VM_RESET");
    if (env && strcmp(env, "cow") == 0)
        sp->reset = "cow";
    else if (env && env[0] && strcmp(env, "dirtylog") != 0)
        mxu_warn("vm: MXU_VM_RESET=%s is neither dirtylog nor cow: resetting guests by the dirty "
                 "log",
                 env);
    uv_timer_init(ex->loop, &sp->refill);
    sp->refill.data = sp;
    ex->vm = sp;
    return sp;
}

/* The unit's spare bookkeeping, made on its first prepare; NULL when spares
 * are off. */
static vm_unit *unit_get(mxu_exec *ex, const mxu_exec_spec *spec, uint64_t charge)
{
    struct mxu_vm_spares *sp = spares_get(ex);
    if (sp->per_unit == 0 || !spec->channel)
        return NULL;
    for (vm_unit *u = sp->units; u; u = u->next) {
        if (strcmp(u->label, spec->label) == 0 && strcmp(u->image, spec->argv[0]) == 0) {
            u->refs++;
            u->charge = charge; /* the image may have been rebuilt */
            u->used_ms = uv_now(ex->loop);
            return u;
        }
    }
    vm_unit *u = mxu_calloc(1, sizeof(*u));
    u->owner = sp;
    u->label = mxu_strdup(spec->label);
    u->image = mxu_strdup(spec->argv[0]);
    u->cwd = spec->cwd ? mxu_strdup(spec->cwd) : NULL;
    size_t n = 0;
    while (spec->envp && spec->envp[n])
        n++;
    u->envp = mxu_calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        u->envp[i] = mxu_strdup(spec->envp[i]);
    u->memory_bytes = spec->memory_bytes;
    u->cpu_limit_s = spec->cpu_limit_s;
    u->max_open_files = spec->max_open_files;
    u->refs = 1;
    u->charge = charge;
    u->used_ms = uv_now(ex->loop);
    u->next = sp->units;
    sp->units = u;
    return u;
}

static vm_unit *unit_by_key(mxu_exec *ex, const char *label, const char *image)
{
    if (ex->vm == NULL)
        return NULL;
    for (vm_unit *u = ex->vm->units; u; u = u->next)
        if (strcmp(u->label, label) == 0 && strcmp(u->image, image) == 0)
            return u;
    return NULL;
}

static vm_unit *unit_find(mxu_exec *ex, const mxu_exec_spec *spec)
{
    return unit_by_key(ex, spec->label, spec->argv[0]);
}

static void unit_discard_spares(vm_unit *u)
{
    for (unsigned i = 0; i < u->nspare; i++)
        mxu_proc_free(u->spare[i]); /* killed; reaped without a callback */
    u->nspare = 0;
}

static void unit_free(vm_unit *u)
{
    unit_discard_spares(u);
    while (u->out) { /* no longer expected anywhere: when they come back, they end */
        vm_helper *vh = u->out;
        u->out = vh->out_next;
        vh->unit = NULL;
        vh->out_prev = vh->out_next = NULL;
    }
    for (size_t i = 0; u->envp[i]; i++)
        free(u->envp[i]);
    free(u->envp);
    free(u->label);
    free(u->image);
    free(u->cwd);
    free(u);
}

/* A spare ended before anyone used it (a VM that could not be built, a kill
 * from outside): drop it, say why (its stderr), and count the failure. */
static void on_spare_exit(mxu_proc *p, const mxu_proc_exit *ex, void *ud)
{
    vm_unit *u = ud;
    for (unsigned i = 0; i < u->nspare; i++) {
        if (u->spare[i] != p)
            continue;
        u->nspare--;
        memmove(&u->spare[i], &u->spare[i + 1], (u->nspare - i) * sizeof(u->spare[0]));
        break;
    }
    char why[64], text[512];
    mxu_proc_exit_describe(ex, why, sizeof(why));
    ssize_t n = p->fds.stderr_r >= 0 ? read(p->fds.stderr_r, text, sizeof(text) - 1) : -1;
    text[n > 0 ? n : 0] = '\0';
    if (n > 0 && text[n - 1] == '\n')
        text[n - 1] = '\0';
    mxu_warn("vm: %s: a spare VM %s before use%s%s", u->label, why, n > 0 ? ": " : "", text);
    u->failures++;
    mxu_proc_free(p);
}

/* How many of the unit's helpers count as on their way back (see the top of
 * the file); *until: the loop time at which the first of them stops. */
static unsigned helpers_back(vm_unit *u, uint64_t now, uint64_t *until)
{
    unsigned n = 0;
    *until = 0;
    for (vm_helper *vh = u->out; vh; vh = vh->out_next) {
        uint64_t end = vh->out_ms + BACK_WAIT_MS;
        if (end <= now)
            continue;
        n++;
        if (*until == 0 || end < *until)
            *until = end;
    }
    return n;
}

/* Make the unit's missing spares: those that neither are there nor are
 * expected back, as far as the node's memory budget has room for them. A
 * unit the budget leaves short is refilled at its next spawn. */
static void unit_refill(vm_unit *u)
{
    struct mxu_vm_spares *sp = u->owner;
    uint64_t now = uv_now(sp->ex->loop), until;
    unsigned back = helpers_back(u, now, &until);
    const char *argv[] = {u->image, NULL};
    mxu_exec_spec spec = {
        .label = u->label,
        .argv = argv,
        .envp = (const char *const *)u->envp,
        .cwd = u->cwd,
        .memory_bytes = u->memory_bytes,
        .cpu_limit_s = u->cpu_limit_s,
        .max_open_files = u->max_open_files,
        .channel = true,
    };
    if (back > 0 && u->nspare < sp->per_unit)
        refill_soon(sp, until - now); /* look again when they stop counting */
    while (u->nspare + back < sp->per_unit && u->failures < SPARE_FAILURES_MAX) {
        if (!mxu_exec_standby_fits(sp->ex, u->charge))
            return;
        mxu_err err = {0};
        mxu_proc *p;
        if (helper_start(sp->ex, &spec, sp->recycle, on_spare_exit, u, &p, &err) < 0) {
            mxu_warn("vm: %s: cannot start a spare VM: %s", u->label, err.msg);
            u->failures++;
            return;
        }
        u->spare[u->nspare++] = p;
    }
}

static void refill_all(uv_timer_t *t)
{
    struct mxu_vm_spares *sp = t->data;
    for (vm_unit *u = sp->units; u; u = u->next)
        unit_refill(u);
}

/* Refill within `delay` ms (sooner if it is due sooner already). */
static void refill_soon(struct mxu_vm_spares *sp, uint64_t delay)
{
    uv_timer_t *t = &sp->refill;
    if (!uv_is_active((uv_handle_t *)t) || uv_timer_get_due_in(t) > delay)
        uv_timer_start(t, refill_all, delay, 0);
}

/* The unit's oldest spare that is still alive, taken out of the list; NULL
 * when there is none. A spare that died a moment ago may not have been
 * reaped yet: its pidfd says so without waiting. */
static mxu_proc *spare_take(vm_unit *u)
{
    while (u->nspare > 0) {
        mxu_proc *p = u->spare[0];
        u->nspare--;
        memmove(&u->spare[0], &u->spare[1], u->nspare * sizeof(u->spare[0]));
        struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
        if (!p->exited && poll(&pfd, 1, 0) == 0)
            return p;
        mxu_proc_free(p); /* reaped by the loop, without a callback */
    }
    return NULL;
}

static int vm_spawn(mxu_exec *ex, const mxu_exec_spec *spec, mxu_proc_exit_cb exit_cb, void *ud,
                    mxu_proc **out, mxu_err *err)
{
    vm_unit *u = spec->channel ? unit_find(ex, spec) : NULL;
    mxu_proc *p = u ? spare_take(u) : NULL;
    if (p) {
        /* The spare becomes the instance: from now on its end is the
         * caller's to hear about. */
        p->exit_cb = exit_cb;
        p->ud = ud;
        u->failures = 0;
        *out = p;
    } else if (helper_start(ex, spec, u && ex->vm->recycle, exit_cb, ud, out, err) < 0) {
        return -1;
    }
    if (u) {
        u->used_ms = uv_now(ex->loop);
        vm_helper *vh = (*out)->xdata; /* a recycling helper: it should come back */
        if (vh)
            helper_out(vh, u);
        refill_soon(ex->vm, u->nspare == 0 || !ex->vm->recycle ? REFILL_DELAY_MS : REFILL_LAZY_MS);
    }
    return 0;
}

/* The helper is a process like any instance: these are the process
 * executor's (its CPU time includes the guest's, which runs on its thread). */
static void vm_kill(mxu_proc *p)
{
    mxu_exec_process_ops.kill(p);
}

static int vm_usage(mxu_proc *p, mxu_usage *u)
{
    return mxu_exec_process_ops.usage(p, u);
}

static int vm_cpu(mxu_proc *p, uint64_t *cpu_us)
{
    return mxu_exec_process_ops.cpu(p, cpu_us);
}

static void vm_release(mxu_exec *ex, const mxu_exec_spec *spec)
{
    if (ex->vm == NULL)
        return;
    for (vm_unit **pp = &ex->vm->units; *pp; pp = &(*pp)->next) {
        vm_unit *u = *pp;
        if (strcmp(u->label, spec->label) != 0 || strcmp(u->image, spec->argv[0]) != 0 ||
            --u->refs > 0)
            continue;
        *pp = u->next;
        unit_free(u);
        return;
    }
}

/* The charge of every spare present; a spawn of `taker` would take one of
 * its unit's over, which then is the instance's. */
static uint64_t vm_standby(mxu_exec *ex, const mxu_exec_spec *taker)
{
    if (ex->vm == NULL)
        return 0;
    vm_unit *t = taker && taker->channel && taker->argv ? unit_find(ex, taker) : NULL;
    uint64_t sum = 0;
    for (vm_unit *u = ex->vm->units; u; u = u->next)
        sum += (uint64_t)(u->nspare - (u == t && u->nspare > 0 ? 1 : 0)) * u->charge;
    return sum;
}

/* Kill spares, one at a time, from the unit used least recently (`keep`'s
 * last), the newest spare of a unit first: the older has had longer to
 * boot. Never `keep`'s last one: the spawn takes it over, vm_standby() does
 * not count it, and killing it frees nothing admission is short of. The
 * unit gets them back at its next spawn if the budget allows. */
static uint64_t vm_shed(mxu_exec *ex, uint64_t want, const mxu_exec_spec *keep)
{
    if (ex->vm == NULL)
        return 0;
    vm_unit *k = keep && keep->channel && keep->argv ? unit_find(ex, keep) : NULL;
    uint64_t got = 0;
    while (got < want) {
        vm_unit *victim = NULL;
        for (vm_unit *u = ex->vm->units; u; u = u->next) {
            if (u->nspare == 0 || u == k)
                continue;
            if (victim == NULL || u->used_ms < victim->used_ms)
                victim = u;
        }
        if (victim == NULL && k && k->nspare > 1)
            victim = k;
        if (victim == NULL)
            break;
        mxu_proc_free(victim->spare[--victim->nspare]); /* killed; reaped without a callback */
        got += victim->charge;
        mxu_debug("vm: %s: a spare shed for memory", victim->label);
    }
    return got;
}

static void on_refill_closed(uv_handle_t *h)
{
    free(h->data);
}

void mxu_vm_fini(mxu_exec *ex)
{
    struct mxu_vm_spares *sp = ex->vm;
    if (sp == NULL)
        return;
    ex->vm = NULL;
    while (sp->units) {
        vm_unit *u = sp->units;
        sp->units = u->next;
        unit_free(u);
    }
    uv_timer_stop(&sp->refill);
    uv_close((uv_handle_t *)&sp->refill, on_refill_closed); /* frees sp */
}

const mxu_executor_ops mxu_exec_vm_ops = {
    .name = "vm",
    .prepare = vm_prepare,
    .spawn = vm_spawn,
    .kill = vm_kill,
    .usage = vm_usage,
    .cpu = vm_cpu,
    .release = vm_release,
    .standby = vm_standby,
    .shed = vm_shed,
};
