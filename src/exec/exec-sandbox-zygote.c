/*
 * Spare sandboxes, and the zygote that clones them.
 *
 * Most of a sandbox's setup does not depend on what will run in it: its
 * namespaces, its cgroup (joining a cgroup v1 costs an RCU grace period, 10 to
 * 20 ms), its root. So for every unit the node keeps *spares* (two by default): a sandbox
 * that has done steps C1..C6 of the sequence in exec-sandbox.c and waits on a
 * socket for what to run. A cold start hands it the descriptors, argv and
 * environment; it does C7..C11 (limits, descriptors, privileges, seccomp,
 * execve) and the node refills the unit's spares for next time. Nothing is
 * shared: a spare serves exactly one instance, with its own fresh cgroup,
 * namespaces and tmpfs; it has never run function code before it is used.
 *
 * Spares are cloned by the *zygote*, started once (when the first sandbox unit
 * is prepared) and doing nothing else, so that cloning a spare neither copies
 * the node's page tables nor suspends the node. The zygote is the node's own
 * program executed afresh (/proc/self/exe; a constructor below takes over
 * before main() when MXU_SANDBOX_ZYGOTE is set) and sent the sandbox's
 * settings and seccomp program: so it is small, and so are its spares, whose
 * memory the kernel tears down at their execve, on the cold path. If that exec
 * fails, the forked copy of the node serves as the zygote instead. The zygote clones with
 * CLONE_PARENT: spares are the node's own children, reaped and watched (pidfd) like any instance,
 * and they die with the node (parent-death signal). The zygote itself dies with the node and exits
 * when the node closes its socket.
 *
 *   node ── zyg_req + fds [spare socket, cgroup.procs...] ──▶ zygote
 *   node ◀─ zyg_rep {pid} ─────────────────────────────────── zygote ─clone─▶ spare
 *   node ── go_hdr + argv/env + fds [0..3] ──▶ spare ── C7..C11, execve
 *   node ◀─ sbx_failure (a step failed) or EOF (close-on-exec: it exec'd)
 *
 * What a spare is sent is bounded and checked before use (a spare is not yet
 * hostile, but the node is the only peer it accepts anything from).
 */
#include "exec-sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct zyg_req {
    char tmp_opts[64];
    char bundle[PATH_MAX];
};

struct zyg_rep {
    int pid;
    int err;
};

#define GO_MAGIC    0x6d787567u /* "mxug" */
#define GO_BLOB_MAX (8u << 20)
#define GO_ARGS_MAX 65536u

struct go_hdr {
    uint32_t magic;
    uint32_t fdmask; /* bit i set: fd i (0..4) is among the passed descriptors, in order */
    uint32_t argc, envc;
    uint32_t blob_len; /* argv then envp strings, each NUL-terminated */
    uint32_t set_cpu;
    struct rlimit nofile, cpu;
    char exe[PATH_MAX];
};

/* ---- descriptors over a socket ----------------------------------------------------- */

static int send_fds(int sock, const void *data, size_t len, const int *fds, size_t nfds)
{
    union {
        char buf[CMSG_SPACE(8 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {(void *)data, len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        memset(&u, 0, sizeof(u));
        msg.msg_control = u.buf;
        msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    /* The descriptors went with the first byte; the rest is plain data. */
    const char *p = (const char *)data + n;
    for (size_t left = len - (size_t)n; left > 0;) {
        ssize_t k = send(sock, p, left, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        left -= (size_t)k;
    }
    return 0;
}

/* Read exactly `len` bytes and up to `maxfds` descriptors (close-on-exec).
 * Returns len, 0 at EOF before anything, -1 on error or a short message. */
static ssize_t recv_fds(int sock, void *data, size_t len, int *fds, size_t maxfds, size_t *nfds)
{
    union {
        char buf[CMSG_SPACE(8 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {data, len};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    *nfds = 0;
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_WAITALL | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *got = (int *)CMSG_DATA(c);
        for (size_t i = 0; i < k; i++) {
            if (*nfds < maxfds)
                fds[(*nfds)++] = got[i];
            else
                close(got[i]);
        }
    }
    if (n == 0)
        return 0;
    return n == (ssize_t)len ? n : -1;
}

static int read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- the spare ----------------------------------------------------------------------- */

/*
 * A spare's memory. Outside sanitizer builds a spare shares the zygote's
 * address space (CLONE_VM) on a stack of its own: its execve, on the cold
 * path, then only drops a reference to that address space instead of tearing
 * down a copy of it (the zygote is the node's program, with every library
 * the node links: some 230 mappings, 0.2-0.3 ms to unmap). So a spare must
 * not allocate (malloc's state is the zygote's): what it receives goes into
 * this block, which the zygote maps for it and unmaps once the kernel has
 * cleared `tid` (CLONE_CHILD_CLEARTID: at the spare's execve or exit). It
 * holds only what the node sent for this one spare; the instance's own
 * memory after execve is new, like any program's. Sanitizer runtimes cannot
 * follow code into such a child: there a spare is a copy (fork semantics)
 * and the zygote unmaps its block at once.
 */
#define SPARE_STACK (256u << 10)
#define SPARE_GUARD 4096u

typedef struct spare_mem {
    pid_t tid; /* -1 until the kernel clears it */
    void *base;
    size_t size;
    struct spare_mem *next;
    const mxu_sandbox *sb;
    struct zyg_req req;
    int fds[1 + SBX_CG_N];
    size_t nfds;
    const char *argv[GO_ARGS_MAX + 1];
    const char *envp[GO_ARGS_MAX + 1];
    char blob[GO_BLOB_MAX + 1];
} spare_mem;

/* A spare: set up (C1..C6), then wait for what to run, then C7..C11. It
 * reports failures like any sandbox child, on its socket. */
static void __attribute__((noreturn)) spare_main(spare_mem *m)
{
    sbx_plan pl = {.sb = m->sb, .bundle = m->req.bundle, .report_fd = m->fds[0]};
    memcpy(pl.tmp_opts, m->req.tmp_opts, sizeof(pl.tmp_opts));
    pl.tmp_opts[sizeof(pl.tmp_opts) - 1] = '\0';
    for (int i = 0; i < SBX_CG_N; i++)
        pl.cg_fd[i] = (size_t)i + 1 < m->nfds ? m->fds[i + 1] : -1;
    sbx_child_setup(&pl);
    for (int i = 0; i < SBX_CG_N; i++)
        if (pl.cg_fd[i] >= 0)
            close(pl.cg_fd[i]);

    /* Wait for the node: what to run, or EOF (the unit went away). */
    struct go_hdr h;
    int got[SBX_FDS];
    size_t ngot = 0;
    ssize_t n = recv_fds(pl.report_fd, &h, sizeof(h), got, SBX_FDS, &ngot);
    if (n <= 0 || h.magic != GO_MAGIC || h.blob_len > GO_BLOB_MAX || h.argc == 0 ||
        h.argc > GO_ARGS_MAX || h.envc > GO_ARGS_MAX)
        _exit(n == 0 ? 0 : 127);
    if (read_full(pl.report_fd, m->blob, h.blob_len) < 0)
        _exit(127);
    m->blob[h.blob_len] = '\0';
    /* Split, never past the end: a missing NUL just ends the last string. */
    char *p = m->blob, *end = m->blob + h.blob_len;
    for (uint32_t i = 0; i < h.argc + h.envc; i++) {
        if (p >= end)
            _exit(127);
        if (i < h.argc)
            m->argv[i] = p;
        else
            m->envp[i - h.argc] = p;
        p += strnlen(p, (size_t)(end - p)) + 1;
    }
    m->argv[h.argc] = NULL;
    m->envp[h.envc] = NULL;
    h.exe[sizeof(h.exe) - 1] = '\0';
    pl.exe = h.exe;
    pl.argv = m->argv;
    pl.envp = m->envp;
    pl.nofile = h.nofile;
    pl.cpu = h.cpu;
    pl.set_cpu = h.set_cpu != 0;
    size_t k = 0;
    for (int i = 0; i < SBX_FDS; i++)
        pl.src[i] = (h.fdmask & (1u << i)) && k < ngot ? got[k++] : -1;
    sbx_child_finish(&pl);
}

static spare_mem *spare_mem_new(void)
{
    size_t size = SPARE_GUARD + SPARE_STACK + ((sizeof(spare_mem) + 4095u) & ~(size_t)4095u);
    char *base = mmap(NULL, size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    /* Below the stack: a page that faults, so an overflow cannot run into
     * other memory. */
    mprotect(base, SPARE_GUARD, PROT_NONE);
    spare_mem *m = (spare_mem *)(base + SPARE_GUARD + SPARE_STACK);
    m->base = base;
    m->size = size;
    m->tid = -1;
    return m;
}

#ifdef SBX_SPARE_FORK
static pid_t spare_clone(const mxu_sandbox *sb, spare_mem *m, spare_mem **live)
{
    MXU_UNUSED(live);
    /* fork semantics (own copy of the zygote) into new namespaces, as a
     * child of the node. */
    pid_t pid =
        (pid_t)syscall(SYS_clone, (unsigned long)(CLONE_PARENT | sbx_clone_flags(sb) | SIGCHLD),
                       NULL, NULL, NULL, 0);
    if (pid == 0)
        spare_main(m);
    int saved = errno;
    munmap(m->base, m->size); /* the spare has its own copy */
    errno = saved;
    return pid;
}
#else
static int spare_entry(void *arg)
{
    spare_main(arg);
}

static pid_t spare_clone(const mxu_sandbox *sb, spare_mem *m, spare_mem **live)
{
    /* The zygote's address space, its own stack; a child of the node. The
     * zygote has no signal handlers, so none can run on the spare's stack. */
    pid_t pid =
        clone(spare_entry, (char *)m,
              CLONE_VM | CLONE_CHILD_CLEARTID | CLONE_PARENT | sbx_clone_flags(sb) | SIGCHLD, m,
              NULL, NULL, &m->tid);
    if (pid < 0) {
        int saved = errno;
        munmap(m->base, m->size);
        errno = saved;
        return -1;
    }
    m->next = *live;
    *live = m;
    return pid;
}
#endif

/* Unmap the memory of spares that have exec'd or died. */
static void spare_mem_reclaim(spare_mem **live)
{
    for (spare_mem **pp = live; *pp;) {
        spare_mem *m = *pp;
        if (__atomic_load_n(&m->tid, __ATOMIC_ACQUIRE) == 0) {
            *pp = m->next;
            munmap(m->base, m->size);
        } else {
            pp = &m->next;
        }
    }
}

/* ---- the zygote ---------------------------------------------------------------------- */

static void __attribute__((noreturn)) zygote_main(const mxu_sandbox *sb, int ctl, pid_t node)
{
    /* Default signals, nothing blocked; only its socket open (and /dev/null
     * on 0..2); dies with the node. */
    mxu_child_default_signals();
    if (dup2(ctl, 3) < 0)
        _exit(127);
    ctl = 3;
    int null = open("/dev/null", O_RDWR);
    for (int i = 0; i < 3 && null >= 0; i++)
        dup2(null, i);
    syscall(SYS_close_range, 4u, ~0u, 0u);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != node)
        _exit(0);
    prctl(PR_SET_NAME, "mxu-zygote", 0, 0, 0);
    setpgid(0, 0);

    /* The bounding set only limits what an execve may grant, and spares
     * inherit it: emptied once here instead of with some forty prctls in
     * every sandbox on its cold path. Spares keep their effective
     * capabilities for their setup and lose them when they change uid
     * (sbx_child_finish, which drops whatever is still in the set: in a user
     * namespace a spare starts with a full one). */
    if (!sb->userns)
        for (int cap = 0; cap <= sb->last_cap; cap++)
            prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);

    spare_mem *live = NULL;
    for (;;) {
        spare_mem_reclaim(&live);
        struct zyg_req req;
        int fds[1 + SBX_CG_N];
        size_t nfds = 0;
        ssize_t n = recv_fds(ctl, &req, sizeof(req), fds, MXU_ARRAY_LEN(fds), &nfds);
        if (n == 0)
            _exit(0); /* the node closed its end */
        struct zyg_rep rep = {-1, EPROTO};
        spare_mem *m = NULL;
        if (n == (ssize_t)sizeof(req) && nfds >= 1 && (m = spare_mem_new()) == NULL) {
            rep.err = errno;
        } else if (m) {
            req.bundle[sizeof(req.bundle) - 1] = '\0';
            m->sb = sb;
            m->req = req;
            memcpy(m->fds, fds, nfds * sizeof(int));
            m->nfds = nfds;
            pid_t pid = spare_clone(sb, m, &live);
            rep = (struct zyg_rep){pid, pid < 0 ? errno : 0};
        } else if (n < 0 && errno != EPROTO && nfds == 0) {
            _exit(0);
        }
        for (size_t i = 0; i < nfds; i++)
            close(fds[i]);
        if (write(ctl, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
            _exit(0);
    }
}

/* The zygote, executed afresh: read the settings and take over before main().
 * The node sends its mxu_sandbox (only the plain fields the children use are
 * meaningful here) followed by the seccomp program. */
__attribute__((constructor)) static void zygote_ctor(void)
{
    const char *env = getenv("MXU_SANDBOX_ZYGOTE");
    if (env == NULL)
        return;
    char *end;
    long fd = strtol(env, &end, 10);
    pid_t node = *end == ':' ? (pid_t)strtol(end + 1, NULL, 10) : 0;
    static mxu_sandbox sb;
    if (fd < 3 || node <= 0 || read_full((int)fd, &sb, sizeof(sb)) < 0 || sb.prog.len == 0)
        _exit(127);
    size_t len = (size_t)sb.prog.len * sizeof(struct sock_filter);
    struct sock_filter *prog = malloc(len);
    if (prog == NULL || read_full((int)fd, prog, len) < 0)
        _exit(127);
    sb.prog.filter = prog;
    sb.cg = (sbx_cgroups){0};
    sb.pending = NULL;
    sb.units = NULL;
    sb.ex = NULL;
    zygote_main(&sb, (int)fd, node);
}

int sbx_zygote_start(mxu_sandbox *sb)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    pid_t node = getpid();
    char envbuf[64];
    snprintf(envbuf, sizeof(envbuf), "MXU_SANDBOX_ZYGOTE=3:%d", (int)node);
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(sv[0]);
        close(sv[1]);
        errno = saved;
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        /* Its socket on fd 3, kept across execve; nothing else is. */
        if (dup2(sv[1], 3) == 3) {
            char *const argv[] = {"mxu-zygote", NULL};
            char *const envp[] = {envbuf, NULL};
            syscall(SYS_close_range, 4u, ~0u, 0u);
            execve("/proc/self/exe", argv, envp);
            /* exec failed: this copy of the node serves, and skips the
             * settings it already has. */
            sv[1] = 3;
            size_t len = sizeof(*sb) + (size_t)sb->prog.len * sizeof(struct sock_filter);
            char *skip = malloc(len);
            if (skip == NULL || read_full(3, skip, len) < 0)
                _exit(127);
            free(skip);
        }
        zygote_main(sb, sv[1], node);
    }
    close(sv[1]);
    /* Its settings (which a zygote that could not exec reads and skips). */
    if (send_fds(sv[0], sb, sizeof(*sb), NULL, 0) < 0 ||
        send_fds(sv[0], sb->prog.filter, (size_t)sb->prog.len * sizeof(struct sock_filter), NULL,
                 0) < 0) {
        close(sv[0]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    sb->zygote_fd = sv[0];
    sb->zygote_pid = pid;
    return 0;
}

void sbx_zygote_stop(mxu_sandbox *sb)
{
    if (sb->zygote_fd >= 0) {
        close(sb->zygote_fd);
        sb->zygote_fd = -1;
    }
    if (sb->zygote_pid > 0) {
        kill(sb->zygote_pid, SIGKILL);
        while (waitpid(sb->zygote_pid, NULL, 0) < 0 && errno == EINTR)
            ;
        sb->zygote_pid = 0;
    }
}

/* ---- the node's side of spares ---------------------------------------------------------- */

/* Wait up to `ms` for `fd` to be readable. */
static int wait_readable(int fd, int ms)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    int n;
    do {
        n = poll(&pfd, 1, ms);
    } while (n < 0 && errno == EINTR);
    return n > 0 ? 0 : -1;
}

int sbx_spare_make(mxu_sandbox *sb, const char *bundle, uint64_t memory, sbx_spare *out,
                   mxu_err *err)
{
    memset(out, 0, sizeof(*out));
    if (sb->zygote_fd < 0)
        return mxu_err_set(err, ESRCH, "no zygote");
    struct zyg_req req;
    memset(&req, 0, sizeof(req));
    if (strlen(bundle) >= sizeof(req.bundle))
        return mxu_err_set(err, ENAMETOOLONG, "bundle path too long");
    snprintf(req.bundle, sizeof(req.bundle), "%s", bundle);
    snprintf(req.tmp_opts, sizeof(req.tmp_opts), "size=%llu,nr_inodes=4096,mode=1777",
             (unsigned long long)MXU_MIN(memory / 2, 256ull << 20));

    sbx_limits lim = sb->defaults;
    lim.memory_bytes = memory;
    uint64_t id = ++sb->next_id;
    int cg_fd[SBX_CG_N];
    if (sbx_cg_create(&sb->cg, id, &lim, cg_fd, err) < 0)
        return -1;
    int sv[2] = {-1, -1};
    int fds[1 + SBX_CG_N];
    size_t nfds = 0;
    int rc = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        mxu_err_sys(err, errno, "socketpair");
        goto out;
    }
    fds[nfds++] = sv[1];
    for (int i = 0; i < SBX_CG_N; i++)
        if (cg_fd[i] >= 0)
            fds[nfds++] = cg_fd[i];
    struct zyg_rep rep;
    if (send_fds(sb->zygote_fd, &req, sizeof(req), fds, nfds) < 0 ||
        wait_readable(sb->zygote_fd, 5000) < 0 || read_full(sb->zygote_fd, &rep, sizeof(rep)) < 0) {
        /* The zygote is gone or stuck: from now on the node clones itself. */
        mxu_err_sys(err, errno ? errno : EPIPE, "the sandbox zygote does not answer");
        mxu_warn("sandbox: %s; sandboxes start without spares from now on", err->msg);
        sbx_zygote_stop(sb);
        goto out;
    }
    if (rep.pid <= 0) {
        mxu_err_sys(err, rep.err, "the zygote cannot clone a sandbox");
        goto out;
    }
    *out = (sbx_spare){.pid = rep.pid, .sock = sv[0], .cg_id = id, .memory = memory};
    sv[0] = -1;
    rc = 0;
out:
    mxu_closep(&sv[0]);
    mxu_closep(&sv[1]);
    for (int i = 0; i < SBX_CG_N; i++)
        mxu_closep(&cg_fd[i]);
    if (rc < 0)
        sbx_cg_release(sb, id);
    return rc;
}

void sbx_spare_discard(mxu_sandbox *sb, sbx_spare *sp)
{
    if (sp->pid <= 0)
        return;
    kill(sp->pid, SIGKILL);
    while (waitpid(sp->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    mxu_closep(&sp->sock);
    if (sp->cg_id)
        sbx_cg_release(sb, sp->cg_id);
    memset(sp, 0, sizeof(*sp));
    sp->sock = -1;
}

int sbx_spare_go(mxu_sandbox *sb, sbx_spare *sp, const sbx_plan *pl, mxu_err *err)
{
    struct go_hdr h;
    memset(&h, 0, sizeof(h));
    h.magic = GO_MAGIC;
    mxu_buf blob = {0};
    for (const char *const *a = pl->argv; *a; a++, h.argc++)
        mxu_buf_append(&blob, *a, strlen(*a) + 1);
    for (const char *const *e = pl->envp; e && *e; e++, h.envc++)
        mxu_buf_append(&blob, *e, strlen(*e) + 1);
    int fds[SBX_FDS];
    size_t nfds = 0;
    for (int i = 0; i < SBX_FDS; i++) {
        if (pl->src[i] >= 0) {
            h.fdmask |= 1u << i;
            fds[nfds++] = pl->src[i];
        }
    }
    h.blob_len = (uint32_t)blob.len;
    h.set_cpu = pl->set_cpu;
    h.nofile = pl->nofile;
    h.cpu = pl->cpu;
    snprintf(h.exe, sizeof(h.exe), "%s", pl->exe);
    int rc = -1;
    if (blob.len > GO_BLOB_MAX) {
        mxu_err_set(err, E2BIG, "argv and environment larger than %u bytes", GO_BLOB_MAX);
        goto fail;
    }
    /* Header and descriptors, then the strings. A spare that died while it
     * waited shows here as EPIPE. */
    if (send_fds(sp->sock, &h, sizeof(h), fds, nfds) < 0 ||
        (blob.len && send_fds(sp->sock, blob.data, blob.len, NULL, 0) < 0)) {
        mxu_err_sys(err, errno, "the spare sandbox is gone");
        goto fail;
    }
    /* Its answer: a failure record, or EOF when execve closed its end. */
    if (wait_readable(sp->sock, 30000) < 0) {
        mxu_err_set(err, ETIMEDOUT, "the spare sandbox did not start in 30 s");
        goto fail;
    }
    sbx_failure f;
    ssize_t n;
    do {
        n = read(sp->sock, &f, sizeof(f));
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(f)) {
        mxu_err_sys(err, f.err, "failed at %s", sbx_step_name(f.step));
        goto fail;
    }
    mxu_closep(&sp->sock);
    rc = 0;
    goto out;
fail:
    sbx_spare_discard(sb, sp);
out:
    mxu_buf_free(&blob);
    return rc;
}
