/*
 * blob, scheme "fs" (fs:///absolute/dir; the default location "embedded" is
 * <data_dir>/resources/blobs): objects as plain files, so an operator can
 * read, back up and rsync a store with ordinary tools.
 *
 * Object KEY of resource R is the file <dir>/<R>/<KEY>; the segments of a key
 * are folders ("img/a.png"). mxu_res_key_problem() keeps keys inside: no
 * "."/".." or empty segments, no leading '/', nothing starting with ".mxu-".
 * A file system cannot hold an object "img" and an object "img/a.png" at
 * once; writing the second while the first exists is refused (INVALID) and
 * says so.
 *
 * Uploads. An object arrives in chunks (≤ 1 MiB each from the protocol) and
 * must appear whole or not at all. Chunks go to a temporary file
 * <dir>/<R>/.mxu-up-<random> — in the resource's own folder, hence on the
 * same file system as the object, so that the rename that publishes it is
 * atomic; one folder for all of a resource's temporaries, so that cleaning up
 * after a crash is one readdir rather than a walk of the whole store. The
 * LAST chunk fsyncs the file, renames it over the object (readers see the old
 * object or the new one, never a part) and fsyncs the object's folder.
 *
 * An upload belongs to its writer, the pair (key, owner): the node passes the
 * invocation that sent the chunk as the owner. Two invocations uploading one
 * key at once (two instances of a function, two functions sharing the
 * resource) each fill their own temporary file and each publish whole by
 * their own rename; the last rename wins, and neither sees an error caused by
 * the other. A FIRST chunk starts over only the upload of the same owner.
 * An owner whose invocation ended is abandoned by the node at once
 * (blob_abandon); an upload that gets no chunk for 10 minutes anyway, or is
 * still open when the backend closes, is deleted with its temporary file;
 * temporaries older than that left by a node that died are deleted when a
 * backend opens. At most UPLOADS_MAX uploads are open per resource, and one
 * owner may hold at most UPLOADS_PER_OWNER of them, so one invocation cannot
 * take every upload slot of a shared store.
 *
 * Operations complete before the call returns: local disk, and a chunk is at
 * most a few MiB. A list walks the folders under the prefix and sorts what it
 * found: it costs the number of objects under the prefix, not the page size.
 */
#include "resolve-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define UPLOAD_IDLE_MS    (10u * 60 * 1000)
#define SWEEP_EVERY_MS    (60u * 1000)
#define UPLOADS_MAX       64
#define UPLOADS_PER_OWNER 16
#define TMP_PREFIX        ".mxu-up-"
#define TMP_PREFIX_LEN    (sizeof(TMP_PREFIX) - 1)

typedef struct upload {
    struct upload *next;
    char *key;
    uint64_t owner;
    char *tmp; /* the temporary file's path */
    int fd;
    uint64_t written;
    uint64_t last_ns;
} upload;

typedef struct blob_fs {
    mxu_backend base;
    char *root; /* <dir>/<resource> */
    char display[96];
    upload *uploads;
    size_t nuploads;
    uv_timer_t *sweep; /* NULL without a loop */
} blob_fs;

static void prune_folders(blob_fs *f, const char *key);

/* ---- uploads -------------------------------------------------------------------------------- */

static void upload_drop(blob_fs *f, upload *u, bool remove_tmp)
{
    for (upload **pp = &f->uploads; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == u) {
            *pp = u->next;
            break;
        }
    }
    f->nuploads--;
    if (u->fd >= 0)
        close(u->fd);
    if (remove_tmp) {
        unlink(u->tmp);
        /* Its first chunk may have made folders that nothing fills now. */
        prune_folders(f, u->key);
    }
    free(u->key);
    free(u->tmp);
    free(u);
}

static upload *upload_find(blob_fs *f, const char *key, uint64_t owner)
{
    for (upload *u = f->uploads; u != NULL; u = u->next)
        if (u->owner == owner && strcmp(u->key, key) == 0)
            return u;
    return NULL;
}

static size_t owner_uploads(blob_fs *f, uint64_t owner)
{
    size_t n = 0;
    for (upload *u = f->uploads; u != NULL; u = u->next)
        n += u->owner == owner;
    return n;
}

static void sweep_idle(blob_fs *f)
{
    uint64_t now = mxu_now_ns();
    for (upload *u = f->uploads, *next; u != NULL; u = next) {
        next = u->next;
        if (now - u->last_ns >= (uint64_t)UPLOAD_IDLE_MS * 1000000ull) {
            mxu_warn("%s: dropping the upload of an object that got no chunk for 10 minutes",
                     f->display);
            upload_drop(f, u, true);
        }
    }
}

static void on_sweep(uv_timer_t *t)
{
    sweep_idle(t->data);
}

/* Delete temporaries older than an upload may idle: left by a node that died
 * during an upload (a live one of this process would be younger). */
static void sweep_stale_tmp(blob_fs *f)
{
    DIR *d = opendir(f->root);
    if (d == NULL)
        return;
    uint64_t now_ms = mxu_wall_ms();
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, TMP_PREFIX, TMP_PREFIX_LEN) != 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        uint64_t mtime_ms = (uint64_t)st.st_mtim.tv_sec * 1000;
        if (now_ms > mtime_ms && now_ms - mtime_ms >= UPLOAD_IDLE_MS)
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

/* ---- open / close ---------------------------------------------------------------------------- */

static int bfs_open(const mxu_backend_config *cfg, mxu_backend **out, mxu_err *err)
{
    if (cfg->resource == NULL || mxu_res_key_problem(cfg->resource, 1, 0) != NULL)
        return mxu_err_set(err, EINVAL, "'%s' is not a resource name a blob store can hold",
                           cfg->resource ? cfg->resource : "");
    _cleanup_free_ char *dir = NULL;
    const char *loc = cfg->location;
    if (loc == NULL || loc[0] == '\0' || strcmp(loc, "embedded") == 0) {
        if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0')
            return mxu_err_set(err, EINVAL, "embedded blobs need the node's data directory");
        dir = mxu_path_join(cfg->data_dir, "resources/blobs");
    } else if (strncmp(loc, "fs://", 5) == 0 && loc[5] == '/' && loc[6] != '\0') {
        dir = mxu_strdup(loc + 5);
    } else {
        return mxu_err_set(
            err, EINVAL, "'%s' is not a blob location (write embedded or fs:///ABSOLUTE/DIR)", loc);
    }
    if (sodium_init() < 0)
        return mxu_err_set(err, EIO, "libsodium failed to initialise");
    _cleanup_free_ char *root = mxu_path_join(dir, cfg->resource);
    if (mxu_mkdir_p(root, 0750, err) < 0)
        return -1;
    blob_fs *f = mxu_calloc(1, sizeof(*f));
    f->base.driver = &mxu_driver_blob_fs;
    f->root = steal_pointer(&root);
    mxu_res_display(cfg->resource, f->display, sizeof(f->display));
    sweep_stale_tmp(f);
    if (cfg->loop != NULL) {
        f->sweep = mxu_malloc(sizeof(*f->sweep));
        uv_timer_init(cfg->loop, f->sweep);
        f->sweep->data = f;
        uv_timer_start(f->sweep, on_sweep, SWEEP_EVERY_MS, SWEEP_EVERY_MS);
        /* Housekeeping must not keep a loop alive on its own. */
        uv_unref((uv_handle_t *)f->sweep);
    }
    *out = &f->base;
    return 0;
}

static void sweep_closed(uv_handle_t *h)
{
    free(h);
}

static void bfs_close(mxu_backend *b)
{
    blob_fs *f = (blob_fs *)b;
    while (f->uploads != NULL)
        upload_drop(f, f->uploads, true);
    if (f->sweep != NULL)
        uv_close((uv_handle_t *)f->sweep, sweep_closed);
    free(f->root);
    free(f);
}

/* ---- helpers -------------------------------------------------------------------------------- */

static char *obj_path(blob_fs *f, const char *key)
{
    return mxu_path_join(f->root, key);
}

static void answer_sys(blob_fs *f, const char *what, const char *key, int e, mxu_res_cb cb,
                       void *ud)
{
    char q[128];
    mxu_res_quote(key, q, sizeof(q));
    mxu_res_fail(cb, ud, MXU_RES_UNAVAILABLE, "%s: cannot %s '%s': %s", f->display, what, q,
                 strerror(e));
}

static void answer_not_found(blob_fs *f, const char *key, mxu_res_cb cb, void *ud)
{
    char q[128];
    mxu_res_quote(key, q, sizeof(q));
    mxu_res_fail(cb, ud, MXU_RES_NOT_FOUND, "no object '%s' in %s", q, f->display);
}

/* Make the folders of `key` exist, refusing where an object stands in the
 * way or where the key itself names a folder. 0, or -1 after answering. */
static int prepare_folders(blob_fs *f, const char *key, mxu_res_cb cb, void *ud)
{
    _cleanup_buf_ mxu_buf p = {0};
    mxu_buf_puts(&p, f->root);
    const char *seg = key;
    char q[128];
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
        mxu_buf_puts(&p, "/");
        mxu_buf_append(&p, seg, len);
        struct stat st;
        int rc = lstat(p.data, &st);
        if (slash == NULL) {
            if (rc == 0 && !S_ISREG(st.st_mode)) {
                mxu_res_quote(key, q, sizeof(q));
                mxu_res_fail(cb, ud, MXU_RES_INVALID,
                             "%s: '%s' is a folder of other objects, it cannot be an object too",
                             f->display, q);
                return -1;
            }
            return 0;
        }
        if (rc == 0 && !S_ISDIR(st.st_mode)) {
            mxu_res_quote(p.data + strlen(f->root) + 1, q, sizeof(q));
            mxu_res_fail(cb, ud, MXU_RES_INVALID,
                         "%s: '%s' is an object, so no key can continue it as a folder", f->display,
                         q);
            return -1;
        }
        if (rc < 0 && mkdir(p.data, 0750) < 0 && errno != EEXIST) {
            answer_sys(f, "create the folder of", key, errno, cb, ud);
            return -1;
        }
        seg = slash + 1;
    }
}

/* After deleting an object, remove the folders it leaves empty, up to the
 * resource's own. */
static void prune_folders(blob_fs *f, const char *key)
{
    _cleanup_free_ char *p = obj_path(f, key);
    size_t rootlen = strlen(f->root);
    for (;;) {
        char *slash = strrchr(p, '/');
        if (slash == NULL || (size_t)(slash - p) <= rootlen)
            return;
        *slash = '\0';
        if (rmdir(p) < 0)
            return;
    }
}

/* ---- write ---------------------------------------------------------------------------------- */

/* An answer kept for later: the callback may close the backend (the resolver
 * drops its last reference from there), so it must come after the cleanup
 * that still needs the backend. */
typedef struct held_answer {
    enum mxu_res_status status;
    char msg[512];
} held_answer;

static void hold_answer(void *ud, const mxu_res_result *r)
{
    held_answer *h = ud;
    h->status = r->status;
    snprintf(h->msg, sizeof(h->msg), "%s", r->message ? r->message : "");
}

static upload *upload_start(blob_fs *f, const char *key, uint64_t owner, mxu_res_cb cb, void *ud)
{
    upload *old = upload_find(f, key, owner);
    if (old != NULL)
        upload_drop(f, old, true);
    sweep_idle(f);
    if (f->nuploads >= UPLOADS_MAX) {
        mxu_res_fail(cb, ud, MXU_RES_UNAVAILABLE,
                     "%s: %d uploads are open already; finish or abandon one first", f->display,
                     UPLOADS_MAX);
        return NULL;
    }
    if (owner_uploads(f, owner) >= UPLOADS_PER_OWNER) {
        mxu_res_fail(cb, ud, MXU_RES_UNAVAILABLE,
                     "%s: this writer has %d uploads open already; finish one first", f->display,
                     UPLOADS_PER_OWNER);
        return NULL;
    }
    if (prepare_folders(f, key, cb, ud) < 0)
        return NULL;
    unsigned char rnd[8];
    char hex[17];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    char *tmp = mxu_asprintf("%s/" TMP_PREFIX "%s", f->root, hex);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
        answer_sys(f, "start writing", key, errno, cb, ud);
        free(tmp);
        return NULL;
    }
    upload *u = mxu_calloc(1, sizeof(*u));
    u->key = mxu_strdup(key);
    u->owner = owner;
    u->tmp = tmp;
    u->fd = fd;
    u->next = f->uploads;
    f->uploads = u;
    f->nuploads++;
    return u;
}

/* Publish a complete upload: fsync, rename over the object, fsync its folder. */
static int upload_finish(blob_fs *f, upload *u, mxu_res_cb cb, void *ud)
{
    if (fsync(u->fd) < 0) {
        answer_sys(f, "write", u->key, errno, cb, ud);
        return -1;
    }
    close(u->fd);
    u->fd = -1;
    /* Again: a delete may have pruned a folder this upload needs since its
     * first chunk, and an object may have appeared in its way. */
    if (prepare_folders(f, u->key, cb, ud) < 0)
        return -1;
    _cleanup_free_ char *path = obj_path(f, u->key);
    if (rename(u->tmp, path) < 0) {
        answer_sys(f, "write", u->key, errno, cb, ud);
        return -1;
    }
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mxu_err err;
    if (mxu_fsync_dir(path, &err) < 0)
        mxu_warn("%s: %s", f->display, err.msg);
    return 0;
}

static void bfs_write(mxu_backend *b, const char *key, uint64_t owner, uint64_t offset,
                      unsigned flags, const void *data, size_t len, mxu_res_cb cb, void *ud)
{
    blob_fs *f = (blob_fs *)b;
    if (mxu_res_check_key(key, 1, 0, "key", f->display, cb, ud) < 0)
        return;
    char q[128];
    if (data == NULL && len > 0) {
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "%s: chunk of %zu bytes without data", f->display,
                     len);
        return;
    }
    if ((flags & ~(MXU_RES_BLOB_FIRST | MXU_RES_BLOB_LAST)) != 0) {
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "%s: unknown chunk flags 0x%x", f->display, flags);
        return;
    }
    upload *u;
    if (flags & MXU_RES_BLOB_FIRST) {
        if (offset != 0) {
            mxu_res_fail(cb, ud, MXU_RES_INVALID, "%s: a first chunk starts at offset 0, not %llu",
                         f->display, (unsigned long long)offset);
            return;
        }
        if ((u = upload_start(f, key, owner, cb, ud)) == NULL)
            return;
    } else {
        u = upload_find(f, key, owner);
        mxu_res_quote(key, q, sizeof(q));
        if (u == NULL) {
            mxu_res_fail(cb, ud, MXU_RES_INVALID,
                         "%s: no upload of '%s' by this writer is open (its first chunk must "
                         "say FIRST)",
                         f->display, q);
            return;
        }
        if (offset != u->written) {
            mxu_res_fail(cb, ud, MXU_RES_INVALID,
                         "%s: chunk of '%s' at offset %llu, but %llu bytes were written",
                         f->display, q, (unsigned long long)offset, (unsigned long long)u->written);
            return;
        }
    }
    if (len > 0 && mxu_write_all(u->fd, data, len) < 0) {
        int e = errno;
        upload_drop(f, u, true);
        answer_sys(f, "write", key, e, cb, ud);
        return;
    }
    u->written += len;
    u->last_ns = mxu_now_ns();
    uint64_t written = u->written;
    if (flags & MXU_RES_BLOB_LAST) {
        held_answer h;
        int rc = upload_finish(f, u, hold_answer, &h);
        upload_drop(f, u, rc < 0);
        if (rc < 0) {
            mxu_res_result r = {.status = h.status, .message = h.msg};
            cb(ud, &r);
            return;
        }
    }
    mxu_res_result r = {.status = MXU_RES_OK, .n1 = written};
    cb(ud, &r);
}

static void bfs_abandon(mxu_backend *b, const char *key, uint64_t owner)
{
    blob_fs *f = (blob_fs *)b;
    upload *u = key != NULL ? upload_find(f, key, owner) : NULL;
    if (u != NULL)
        upload_drop(f, u, true);
}

/* ---- read, stat, delete --------------------------------------------------------------------- */

/* Which version of an object a file is, for a reader that reads it in
 * several chunks: every publish renames a new file over the object, so a new
 * inode with a new change time; the size alone misses a replacement by an
 * object of the same size. Never 0 (0 says "no version" on the wire). */
static uint64_t object_version(const struct stat *st)
{
    uint64_t v = (uint64_t)st->st_ino * 0x9e3779b97f4a7c15ull;
    v ^= ((uint64_t)st->st_ctim.tv_sec * 1000000000ull + (uint64_t)st->st_ctim.tv_nsec) *
         0xbf58476d1ce4e5b9ull;
    v ^= (uint64_t)st->st_dev + ((uint64_t)st->st_size << 1);
    return v != 0 ? v : 1;
}

static void bfs_read(mxu_backend *b, const char *key, uint64_t offset, size_t len, mxu_res_cb cb,
                     void *ud)
{
    blob_fs *f = (blob_fs *)b;
    if (mxu_res_check_key(key, 1, 0, "key", f->display, cb, ud) < 0)
        return;
    _cleanup_free_ char *path = obj_path(f, key);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int e = fd < 0 ? errno : ENOENT;
        if (e == ENOENT || e == ENOTDIR || e == ELOOP || e == EISDIR)
            answer_not_found(f, key, cb, ud);
        else
            answer_sys(f, "read", key, e, cb, ud);
        return;
    }
    uint64_t size = (uint64_t)st.st_size;
    uint64_t version = object_version(&st);
    if (offset > size) {
        char q[128];
        mxu_res_quote(key, q, sizeof(q));
        mxu_res_fail(cb, ud, MXU_RES_INVALID,
                     "%s: offset %llu is past the end of '%s' (%llu bytes)", f->display,
                     (unsigned long long)offset, q, (unsigned long long)size);
        return;
    }
    size_t n = (size_t)MXU_MIN((uint64_t)len, size - offset);
    _cleanup_free_ char *buf = mxu_malloc(n + 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)(offset + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            answer_sys(f, "read", key, errno, cb, ud);
            return;
        }
        if (r == 0) /* shrank under us (replaced: we hold the old file, so only truncation) */
            break;
        got += (size_t)r;
    }
    mxu_res_result r = {.status = MXU_RES_OK, .data = buf, .len = got, .n1 = size, .n2 = version};
    cb(ud, &r);
}

static void bfs_stat(mxu_backend *b, const char *key, mxu_res_cb cb, void *ud)
{
    blob_fs *f = (blob_fs *)b;
    if (mxu_res_check_key(key, 1, 0, "key", f->display, cb, ud) < 0)
        return;
    _cleanup_free_ char *path = obj_path(f, key);
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
        answer_not_found(f, key, cb, ud);
        return;
    }
    mxu_res_result r = {.status = MXU_RES_OK,
                        .n1 = (uint64_t)st.st_size,
                        .n2 = (uint64_t)st.st_mtim.tv_sec * 1000 +
                              (uint64_t)st.st_mtim.tv_nsec / 1000000};
    cb(ud, &r);
}

static void bfs_delete(mxu_backend *b, const char *key, mxu_res_cb cb, void *ud)
{
    blob_fs *f = (blob_fs *)b;
    if (mxu_res_check_key(key, 1, 0, "key", f->display, cb, ud) < 0)
        return;
    _cleanup_free_ char *path = obj_path(f, key);
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
        answer_not_found(f, key, cb, ud);
        return;
    }
    if (unlink(path) < 0) {
        if (errno == ENOENT)
            answer_not_found(f, key, cb, ud);
        else
            answer_sys(f, "delete", key, errno, cb, ud);
        return;
    }
    prune_folders(f, key);
    mxu_res_result r = {.status = MXU_RES_OK};
    cb(ud, &r);
}

/* ---- list ----------------------------------------------------------------------------------- */

typedef struct walk {
    const char *prefix, *cursor;
    char **keys;
    size_t n, cap;
    int err; /* errno of the first folder that could not be read, or 0 */
} walk;

/* Collect the objects under folder `rel` ("" = the resource's root) whose
 * keys start with the prefix and come after the cursor. */
static void walk_dir(blob_fs *f, walk *w, const char *rel)
{
    _cleanup_free_ char *abs = rel[0] ? mxu_path_join(f->root, rel) : mxu_strdup(f->root);
    DIR *d = opendir(abs);
    if (d == NULL) {
        if (errno != ENOENT && errno != ENOTDIR && w->err == 0)
            w->err = errno;
        return;
    }
    size_t plen = strlen(w->prefix);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (strncmp(name, ".mxu-", 5) == 0) /* temporaries; no key has such a segment */
            continue;
        _cleanup_free_ char *key = rel[0] ? mxu_asprintf("%s/%s", rel, name) : mxu_strdup(name);
        size_t klen = strlen(key);
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                continue;
            type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
        }
        /* Compare only as much as both have: a folder "img" matters for the
         * prefix "img/a", and a key "img/a.png" for the prefix "img/". */
        size_t cmp = MXU_MIN(klen, plen);
        if (memcmp(key, w->prefix, cmp) != 0)
            continue;
        if (type == DT_DIR) {
            walk_dir(f, w, key);
            continue;
        }
        if (type != DT_REG || klen < plen || strcmp(key, w->cursor) <= 0 ||
            mxu_res_key_problem(key, 1, 0) != NULL)
            continue;
        if (w->n == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 64;
            w->keys = mxu_realloc(w->keys, w->cap * sizeof(char *));
        }
        w->keys[w->n++] = steal_pointer(&key);
    }
    closedir(d);
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void bfs_list(mxu_backend *b, const char *prefix, const char *cursor, size_t limit,
                     mxu_res_cb cb, void *ud)
{
    blob_fs *f = (blob_fs *)b;
    if (cursor == NULL)
        cursor = "";
    if (prefix == NULL)
        prefix = "";
    /* A prefix may end in '/' ("img/"), which a key may not. */
    size_t plen = strlen(prefix);
    _cleanup_free_ char *ptrim = mxu_strdup(prefix);
    if (plen > 0 && ptrim[plen - 1] == '/')
        ptrim[plen - 1] = '\0';
    if (mxu_res_check_key(ptrim, 1, 1, "prefix", f->display, cb, ud) < 0 ||
        mxu_res_check_key(cursor, 1, 1, "cursor", f->display, cb, ud) < 0)
        return;
    limit = mxu_res_list_limit(limit);
    /* Start the walk at the prefix's folder part: "img/2024/a" → "img/2024". */
    _cleanup_free_ char *start = mxu_strdup(prefix);
    char *slash = strrchr(start, '/');
    if (slash)
        *slash = '\0';
    else
        start[0] = '\0';
    walk w = {.prefix = prefix, .cursor = cursor};
    walk_dir(f, &w, start);
    if (w.err != 0) {
        answer_sys(f, "list", prefix, w.err, cb, ud);
    } else {
        if (w.n > 0)
            qsort(w.keys, w.n, sizeof(char *), cmp_keys);
        size_t n = MXU_MIN(w.n, limit);
        mxu_res_result r = {.status = MXU_RES_OK,
                            .keys = (const char *const *)w.keys,
                            .nkeys = n,
                            .n1 = n,
                            .cursor = w.n > limit ? w.keys[n - 1] : ""};
        cb(ud, &r);
    }
    for (size_t i = 0; i < w.n; i++)
        free(w.keys[i]);
    free(w.keys);
}

/* ---- the driver ------------------------------------------------------------------------------ */

const mxu_driver mxu_driver_blob_fs = {
    .kind = "blob",
    .scheme = "fs",
    .open = bfs_open,
    .close = bfs_close,
    .blob_read = bfs_read,
    .blob_write = bfs_write,
    .blob_abandon = bfs_abandon,
    .blob_stat = bfs_stat,
    .blob_list = bfs_list,
    .blob_delete = bfs_delete,
};
