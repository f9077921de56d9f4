/*
 * Cgroups for the sandbox executor: memory, pids and cpu limits per instance,
 * on cgroup v2 or on v1 controllers (this project's own machines mount v1
 * controllers beside an empty v2 hierarchy, so both are first-class).
 *
 * Layout. At node start one parent per node is made next to the node's own
 * cgroup, in every hierarchy used (v2: one tree; v1: the memory, pids and cpu
 * hierarchies):
 *
 *     <node's cgroup>/mxu-<node-id>/         limits nothing itself
 *     <node's cgroup>/mxu-<node-id>/i<seq>/  one per instance: its limits
 *
 * Nesting under the node's own cgroup keeps whatever limits the node itself
 * runs under (a container, a systemd unit) above its instances, and works
 * with delegation. An instance's cgroup is made before its process is cloned
 * (the child joins it before it does anything else) and removed once the
 * process has been reaped; a cgroup that still holds dying tasks is retried
 * later. Cgroups are never reused, so no two instances share counters, peaks
 * or charges.
 *
 * A node that was killed leaves its parent behind; the next node with the
 * same node id finds every directory called mxu-<node-id> in the hierarchies
 * (wherever its predecessor ran), kills what is inside and removes it.
 *
 * Divisions: finding hierarchies; small file helpers; leftovers and removal;
 * init; per-instance cgroups.
 */
#include "exec-sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- finding hierarchies ----------------------------------------------------- */

/* Is `word` one of the comma-separated words in `list`? */
static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, word, n) == 0)
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* The node's path in the hierarchy with controller `ctl` (v1) or in the
 * unified one (ctl == NULL), from /proc/self/cgroup. */
static char *own_cgroup_path(const char *ctl)
{
    _cleanup_buf_ mxu_buf b = {0};
    if (sbx_read_file("/proc/self/cgroup", 1 << 16, &b) < 0)
        return NULL;
    for (char *line = b.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL)
            continue;
        *c1 = *c2 = '\0';
        if (ctl == NULL ? (strcmp(line, "0") == 0 && c1[1] == '\0') : has_word(c1 + 1, ctl))
            return mxu_strdup(c2 + 1);
    }
    return NULL;
}

/* Where the hierarchy holding `ctl` (v1, fstype cgroup) or the unified one
 * (ctl == NULL, fstype cgroup2) is mounted, and the cgroup path at the root of
 * that mount (not "/" inside a container that mounts a subtree). */
static int find_mount(const char *ctl, char **mnt, char **mroot)
{
    _cleanup_buf_ mxu_buf b = {0};
    if (sbx_read_file("/proc/self/mountinfo", 1 << 20, &b) < 0)
        return -1;
    for (char *line = b.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        /* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
        char *f[6] = {0};
        char *save = NULL, *tok = strtok_r(line, " ", &save);
        for (int i = 0; tok && i < 6; i++, tok = strtok_r(NULL, " ", &save))
            f[i] = tok;
        while (tok && strcmp(tok, "-") != 0)
            tok = strtok_r(NULL, " ", &save);
        char *fstype = tok ? strtok_r(NULL, " ", &save) : NULL;
        char *source = fstype ? strtok_r(NULL, " ", &save) : NULL;
        char *super = source ? strtok_r(NULL, " ", &save) : NULL;
        if (f[4] == NULL || fstype == NULL)
            continue;
        bool match = ctl == NULL ? strcmp(fstype, "cgroup2") == 0
                                 : strcmp(fstype, "cgroup") == 0 && super && has_word(super, ctl);
        if (match) {
            *mnt = mxu_strdup(f[4]);
            *mroot = mxu_strdup(f[3]);
            return 0;
        }
    }
    return -1;
}

/* The directory of the node's own cgroup in one hierarchy, or NULL. */
static char *own_cgroup_dir(const char *ctl)
{
    _cleanup_free_ char *mnt = NULL, *mroot = NULL, *path = own_cgroup_path(ctl);
    if (path == NULL || find_mount(ctl, &mnt, &mroot) < 0)
        return NULL;
    /* Inside a cgroup namespace the path is relative to the mount's root
     * already; outside, strip the part of it the mount does not show. */
    const char *rel = path;
    size_t rl = strlen(mroot);
    if (strcmp(mroot, "/") != 0 && strncmp(path, mroot, rl) == 0 &&
        (path[rl] == '/' || path[rl] == '\0'))
        rel = path + rl;
    return mxu_asprintf("%s%s%s", mnt, rel[0] == '/' ? "" : "/", strcmp(rel, "/") == 0 ? "" : rel);
}

/* ---- small file helpers ------------------------------------------------------- */

static int write_str(const char *dir, const char *file, const char *val)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = mxu_write_all(fd, val, strlen(val));
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

static int write_u64(const char *dir, const char *file, uint64_t v)
{
    char val[32];
    snprintf(val, sizeof(val), "%llu", (unsigned long long)v);
    return write_str(dir, file, val);
}

/* The number after `key ` in a "key value" file, or after nothing if key is
 * NULL (a file holding one number). */
static int read_key(const char *dir, const char *file, const char *key, uint64_t *out)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    _cleanup_buf_ mxu_buf b = {0};
    if (sbx_read_file(path, 1 << 16, &b) < 0)
        return -1;
    const char *p = b.data;
    if (key) {
        size_t kl = strlen(key);
        for (p = b.data; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
            if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
                break;
        }
        if (p == NULL)
            return -1;
        p += strlen(key) + 1;
    }
    unsigned long long v;
    if (sscanf(p, "%llu", &v) != 1)
        return -1;
    *out = v;
    return 0;
}

/* ---- leftovers and removal --------------------------------------------------------- */

/* SIGKILL every process listed in dir/cgroup.procs. Returns how many. */
static int kill_procs(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    _cleanup_buf_ mxu_buf b = {0};
    if (sbx_read_file(path, 1 << 20, &b) < 0)
        return 0;
    int n = 0;
    for (char *p = b.data; p && *p;) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p) {
            p++; /* not a number: skip it */
            continue;
        }
        if (pid > 1 && pid != getpid() && kill((pid_t)pid, SIGKILL) == 0)
            n++;
        p = end;
    }
    return n;
}

/* Kill and remove `dir` and every cgroup below it, deepest first. With
 * `wait_ms`, rmdir is retried while killed tasks finish dying. Returns 0 if
 * it is gone. */
static int remove_tree(const char *dir, int *killed, int wait_ms)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_type != DT_DIR || de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *sub = mxu_path_join(dir, de->d_name);
        remove_tree(sub, killed, wait_ms);
    }
    closedir(d);
    for (int waited = 0;; waited += 5) {
        int k = kill_procs(dir);
        if (killed)
            *killed += k;
        if (rmdir(dir) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY || waited >= wait_ms)
            return -1;
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Find directories called `name` below `dir` (at most `depth` levels) and
 * remove them. Returns how many processes were killed. */
static int sweep(const char *dir, const char *name, int depth)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int killed = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_type != DT_DIR || de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *sub = mxu_path_join(dir, de->d_name);
        if (strcmp(de->d_name, name) == 0) {
            if (remove_tree(sub, &killed, 1000) < 0)
                mxu_warn("sandbox: cannot remove leftover cgroup %s: %s", sub, strerror(errno));
        } else if (strncmp(de->d_name, "mxu-", 4) == 0) {
            /* Another node's parent. If it is empty (no task, no child) its
             * node is gone or idle: remove it, so that nodes killed and never
             * restarted on their data directory leave nothing behind for
             * long. rmdir cannot remove a cgroup in use; a live node makes
             * its parent again when it needs it (sbx_cg_create). */
            rmdir(sub);
        } else if (depth > 0) {
            killed += sweep(sub, name, depth - 1);
        }
    }
    closedir(d);
    return killed;
}

/* ---- init ------------------------------------------------------------------------------ */

static int make_parent(const char *own, const char *node_id, char **out)
{
    char *dir = mxu_asprintf("%s/mxu-%s", own, node_id);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        int saved = errno;
        free(dir);
        errno = saved;
        return -1;
    }
    *out = dir;
    return 0;
}

/* Is controller `ctl` listed in dir/cgroup.controllers (v2)? */
static bool v2_has(const char *dir, const char *ctl)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/cgroup.controllers", dir);
    _cleanup_buf_ mxu_buf b = {0};
    if (sbx_read_file(path, 4096, &b) < 0)
        return false;
    for (char *save = NULL, *w = strtok_r(b.data, " \n", &save); w;
         w = strtok_r(NULL, " \n", &save))
        if (strcmp(w, ctl) == 0)
            return true;
    return false;
}

/* cgroup v2: memory and pids must be available to the node's cgroup, and
 * enabled for its children. The "no internal processes" rule forbids that
 * while the node's cgroup holds processes (unless it is the root): then the
 * node moves itself into a leaf beside its instances, as delegated services
 * do (systemd's Delegate=yes). */
static int init_v2(sbx_cgroups *cg, const char *node_id, char *why, size_t whylen)
{
    _cleanup_free_ char *own = own_cgroup_dir(NULL);
    if (own == NULL) {
        snprintf(why, whylen, "no cgroup v2 hierarchy");
        return -1;
    }
    /* A process that is already in a node's leaf (below: it moved there
     * before) belongs to the cgroup above it: leftovers are there, and so
     * is where its parent goes, rather than nested in the leaf. */
    char *base = strrchr(own, '/');
    size_t bl = base ? strlen(base + 1) : 0;
    if (base && base != own && bl > 9 && strncmp(base + 1, "mxu-", 4) == 0 &&
        strcmp(base + 1 + bl - 5, "-node") == 0)
        *base = '\0';
    if (!v2_has(own, "memory") || !v2_has(own, "pids")) {
        snprintf(why, whylen, "cgroup v2 at %s lacks the memory or pids controller", own);
        return -1;
    }
    _cleanup_free_ char *name = mxu_asprintf("mxu-%s", node_id);
    /* Leftovers may sit anywhere a predecessor ran (another service, or
     * before it was moved): look from the root, as on v1. */
    _cleanup_free_ char *mnt = NULL, *mroot = NULL;
    if (find_mount(NULL, &mnt, &mroot) == 0)
        sweep(mnt, name, 6);
    cg->cpu_ok = v2_has(own, "cpu");
    const char *enable = cg->cpu_ok ? "+memory +pids +cpu" : "+memory +pids";
    if (write_str(own, "cgroup.subtree_control", enable) < 0 && errno == EBUSY) {
        _cleanup_free_ char *leaf = mxu_asprintf("%s/mxu-%s-node", own, node_id);
        char pid[32];
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        if ((mkdir(leaf, 0755) < 0 && errno != EEXIST) ||
            write_str(leaf, "cgroup.procs", pid) < 0 ||
            write_str(own, "cgroup.subtree_control", enable) < 0) {
            int saved = errno;
            /* Others share the node's cgroup (a login session, the shell
             * that started it): then it may have no children with
             * controllers. Go back where we were. */
            write_str(own, "cgroup.procs", pid);
            rmdir(leaf);
            snprintf(why, whylen, "cgroup v2: cannot enable controllers below %s: %s%s", own,
                     strerror(saved),
                     saved == EBUSY ? " (other processes share the node's cgroup: give it one "
                                      "of its own, e.g. systemd's Delegate=yes)"
                                    : "");
            return -1;
        }
    }
    char *parent;
    if (make_parent(own, node_id, &parent) < 0) {
        snprintf(why, whylen, "cgroup v2: cannot create a cgroup in %s: %s", own, strerror(errno));
        return -1;
    }
    cg->dir[SBX_CG_MEMORY] = parent;
    if (write_str(parent, "cgroup.subtree_control", enable) < 0) {
        snprintf(why, whylen, "cgroup v2: cannot enable controllers in %s: %s", parent,
                 strerror(errno));
        return -1;
    }
    cg->version = 2;
    return 0;
}

/* cgroup v1: memory and pids hierarchies are required, cpu is used if it is
 * there. */
static int init_v1(sbx_cgroups *cg, const char *node_id, char *why, size_t whylen)
{
    static const char *const ctl[SBX_CG_N] = {"memory", "pids", "cpu"};
    _cleanup_free_ char *name = mxu_asprintf("mxu-%s", node_id);
    for (int i = 0; i < SBX_CG_N; i++) {
        _cleanup_free_ char *own = own_cgroup_dir(ctl[i]);
        if (own == NULL) {
            if (i == SBX_CG_CPU)
                continue;
            snprintf(why, whylen, "no cgroup v1 %s hierarchy is mounted", ctl[i]);
            return -1;
        }
        /* Leftovers may sit anywhere a predecessor ran: look from the root. */
        _cleanup_free_ char *mnt = NULL, *mroot = NULL;
        if (find_mount(ctl[i], &mnt, &mroot) == 0)
            sweep(mnt, name, 6);
        if (make_parent(own, node_id, &cg->dir[i]) < 0) {
            if (i == SBX_CG_CPU)
                continue;
            snprintf(why, whylen, "cannot create a cgroup in %s: %s", own, strerror(errno));
            return -1;
        }
    }
    cg->cpu_ok = cg->dir[SBX_CG_CPU] != NULL;
    /* memory.use_hierarchy must be on for the parent to contain its children
     * (it is the default everywhere but very old setups). */
    write_str(cg->dir[SBX_CG_MEMORY], "memory.use_hierarchy", "1");
    cg->version = 1;
    return 0;
}

int sbx_cg_init(sbx_cgroups *cg, const char *node_id, char *why, size_t whylen)
{
    memset(cg, 0, sizeof(*cg));
    char why2[256] = "";
    /* Prefer v2 where it has the controllers; v1 otherwise (hybrid hosts). */
    if (init_v2(cg, node_id, why2, sizeof(why2)) == 0)
        return 0;
    sbx_cg_fini(cg);
    memset(cg, 0, sizeof(*cg));
    if (init_v1(cg, node_id, why, whylen) == 0)
        return 0;
    size_t n = strlen(why);
    snprintf(why + n, whylen - n, "; %s", why2);
    sbx_cg_fini(cg);
    memset(cg, 0, sizeof(*cg));
    return -1;
}

int sbx_cg_sweep(const char *node_id)
{
    static const char *const ctl[] = {"memory", "pids", "cpu", NULL};
    _cleanup_free_ char *name = mxu_asprintf("mxu-%s", node_id);
    int killed = 0;
    for (size_t i = 0; i < MXU_ARRAY_LEN(ctl); i++) {
        _cleanup_free_ char *mnt = NULL, *mroot = NULL;
        if (find_mount(ctl[i], &mnt, &mroot) == 0)
            killed += sweep(mnt, name, 6);
    }
    return killed;
}

void sbx_cg_fini(sbx_cgroups *cg)
{
    for (int i = 0; i < SBX_CG_N; i++) {
        if (cg->dir[i] && remove_tree(cg->dir[i], NULL, 1000) < 0)
            mxu_warn("sandbox: cannot remove cgroup %s: %s", cg->dir[i], strerror(errno));
        free(cg->dir[i]);
        cg->dir[i] = NULL;
    }
}

/* ---- per-instance cgroups --------------------------------------------------------------- */

static char *inst_dir(const sbx_cgroups *cg, int i, uint64_t id)
{
    return cg->dir[i] ? mxu_asprintf("%s/i%llu", cg->dir[i], (unsigned long long)id) : NULL;
}

int sbx_cg_create(const sbx_cgroups *cg, uint64_t id, const sbx_limits *lim, int procs_fd[SBX_CG_N],
                  mxu_err *err)
{
    for (int i = 0; i < SBX_CG_N; i++)
        procs_fd[i] = -1;
    for (int i = 0; i < SBX_CG_N; i++) {
        if (cg->dir[i] == NULL)
            continue;
        _cleanup_free_ char *dir = inst_dir(cg, i, id);
        int made = mkdir(dir, 0755);
        if (made < 0 && errno == ENOENT) {
            /* Our parent was removed (another node sweeps empty ones). */
            if (mkdir(cg->dir[i], 0755) == 0 && cg->version == 2) {
                const char *enable = cg->cpu_ok ? "+memory +pids +cpu" : "+memory +pids";
                write_str(cg->dir[i], "cgroup.subtree_control", enable);
            }
            made = mkdir(dir, 0755);
        }
        if (made < 0 && errno != EEXIST) {
            mxu_err_sys(err, errno, "cannot create cgroup %s", dir);
            goto fail;
        }
        int rc = 0;
        const char *what = "";
        if (cg->version == 2) {
            char cpu[64];
            snprintf(cpu, sizeof(cpu), "%llu %llu", (unsigned long long)lim->cpu_quota_us,
                     (unsigned long long)lim->cpu_period_us);
            if ((rc = write_u64(dir, what = "memory.max", lim->memory_bytes)) == 0 &&
                (rc = write_u64(dir, what = "pids.max", lim->pids_max)) == 0 && cg->cpu_ok &&
                lim->cpu_quota_us)
                rc = write_str(dir, what = "cpu.max", cpu);
            /* No swap: the memory limit is the limit. Absent without swap support. */
            write_str(dir, "memory.swap.max", "0");
        } else if (i == SBX_CG_MEMORY) {
            rc = write_u64(dir, what = "memory.limit_in_bytes", lim->memory_bytes);
            write_u64(dir, "memory.memsw.limit_in_bytes", lim->memory_bytes);
        } else if (i == SBX_CG_PIDS) {
            rc = write_u64(dir, what = "pids.max", lim->pids_max);
        } else if (i == SBX_CG_CPU && lim->cpu_quota_us) {
            if ((rc = write_u64(dir, what = "cpu.cfs_period_us", lim->cpu_period_us)) == 0)
                rc = write_u64(dir, what = "cpu.cfs_quota_us", lim->cpu_quota_us);
        }
        if (rc < 0) {
            mxu_err_sys(err, errno, "cannot set %s/%s", dir, what);
            goto fail;
        }
        /* Opened here, written by the child ("0" = itself): the kernel checks
         * the opener's credentials, so the child may join even after it has
         * become someone else (user namespace). */
        _cleanup_free_ char *procs = mxu_path_join(dir, "cgroup.procs");
        if ((procs_fd[i] = open(procs, O_WRONLY | O_CLOEXEC)) < 0) {
            mxu_err_sys(err, errno, "cannot open %s", procs);
            goto fail;
        }
        if (cg->version == 2)
            break;
    }
    return 0;
fail:
    for (int i = 0; i < SBX_CG_N; i++)
        mxu_closep(&procs_fd[i]);
    sbx_cg_remove(cg, id);
    return -1;
}

void sbx_cg_exit_info(const sbx_cgroups *cg, uint64_t id, bool *oom, uint64_t *peak)
{
    *oom = false;
    *peak = 0;
    _cleanup_free_ char *dir = inst_dir(cg, SBX_CG_MEMORY, id);
    if (dir == NULL)
        return;
    uint64_t kills = 0;
    if (cg->version == 2) {
        if (read_key(dir, "memory.events", "oom_kill", &kills) == 0 && kills > 0)
            *oom = true;
        read_key(dir, "memory.peak", NULL, peak);
    } else {
        if (read_key(dir, "memory.oom_control", "oom_kill", &kills) == 0 && kills > 0)
            *oom = true;
        read_key(dir, "memory.max_usage_in_bytes", NULL, peak);
    }
}

int sbx_cg_peak(const sbx_cgroups *cg, uint64_t id, uint64_t *peak)
{
    _cleanup_free_ char *dir = inst_dir(cg, SBX_CG_MEMORY, id);
    if (dir == NULL)
        return -1;
    if (cg->version == 1)
        return read_key(dir, "memory.max_usage_in_bytes", NULL, peak);
    /* memory.peak is new in Linux 5.19; before it, what it uses now. */
    return read_key(dir, "memory.peak", NULL, peak) == 0
               ? 0
               : read_key(dir, "memory.current", NULL, peak);
}

int sbx_cg_remove(const sbx_cgroups *cg, uint64_t id)
{
    int rc = 0;
    for (int i = 0; i < SBX_CG_N; i++) {
        _cleanup_free_ char *dir = inst_dir(cg, i, id);
        if (dir == NULL)
            continue;
        kill_procs(dir);
        if (rmdir(dir) < 0 && errno != ENOENT)
            rc = -1;
        if (cg->version == 2)
            break;
    }
    return rc;
}
