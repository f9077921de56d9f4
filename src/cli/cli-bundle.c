/*
 * Reading a function folder into a bundle: the manifest text plus every
 * regular file below the folder with its permission bits, as `mxu deploy`
 * uploads it and `mxu serve --deploy` hands it to the registry.
 *
 * The walk is done with openat/fstatat relative to directory descriptors and
 * never follows a symlink below the folder, so what is read is what lies in
 * the folder — a link to ~/.ssh in a function's folder is not uploaded. The
 * node's limits (file count, total size) are checked from sizes before any
 * data is read, so a folder holding a 2 GiB file fails at once instead of
 * after filling memory.
 */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

/* Deeper than any real function; guards against runaway recursion. */
#define BUNDLE_MAX_DEPTH 64
/* The node refuses longer paths (registry: MXU_BUNDLE_MAX_PATH). */
#define BUNDLE_MAX_PATH 1024

typedef struct walk {
    const char *dir; /* as the user typed it, for messages */
    mxu_bundle *b;
    size_t files_cap;
    mxu_err *err;
} walk;

static void add_warning(walk *w, char *msg)
{
    mxu_bundle *b = w->b;
    b->warnings = mxu_realloc(b->warnings, (b->nwarnings + 1) * sizeof(char *));
    b->warnings[b->nwarnings++] = msg;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const mxu_bundle_file *)a)->path, ((const mxu_bundle_file *)b)->path);
}

/* Read one regular file, at most `max` bytes (the rest of the size budget). */
static int read_file_at(walk *w, int dfd, const char *name, const char *rel, size_t max,
                        mxu_buf *out)
{
    /* O_NONBLOCK: should the file have been swapped for a FIFO since it was
     * looked at, open must not hang; O_NOFOLLOW: nor for a symlink. */
    _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return mxu_err_sys(w->err, errno, "cannot open %s/%s", w->dir, rel);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return mxu_err_sys(w->err, errno, "cannot stat %s/%s", w->dir, rel);
    if (!S_ISREG(st.st_mode))
        return mxu_err_set(w->err, EAGAIN, "%s/%s changed while it was being read", w->dir, rel);
    for (;;) {
        mxu_buf_reserve(out, 65536);
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return mxu_err_sys(w->err, errno, "cannot read %s/%s", w->dir, rel);
        if (n == 0)
            break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
        if (out->len > max)
            return mxu_err_set(w->err, EFBIG,
                               "the files in %s total more than %u MiB, the most a function may "
                               "have (%s grew while it was being read)",
                               w->dir, MXU_BUNDLE_READ_MAX_BYTES >> 20, rel);
    }
    return 0;
}

static int add_file(walk *w, int dfd, const char *name, const char *rel, const struct stat *st)
{
    mxu_bundle *b = w->b;
    if (b->nfiles >= MXU_BUNDLE_READ_MAX_FILES)
        return mxu_err_set(w->err, EFBIG,
                           "%s has more than %d files (hidden ones not counted), the most a "
                           "function may have",
                           w->dir, MXU_BUNDLE_READ_MAX_FILES);
    if ((uint64_t)st->st_size > MXU_BUNDLE_READ_MAX_BYTES - b->total_bytes) {
        char size[32];
        mxu_format_size((uint64_t)st->st_size, size, sizeof(size));
        return mxu_err_set(w->err, EFBIG,
                           "the files in %s total more than %u MiB, the most a function may have "
                           "(reached at %s, %s)",
                           w->dir, MXU_BUNDLE_READ_MAX_BYTES >> 20, rel, size);
    }
    _cleanup_buf_ mxu_buf data = {0};
    if (read_file_at(w, dfd, name, rel, MXU_BUNDLE_READ_MAX_BYTES - b->total_bytes, &data) < 0)
        return -1;
    if (b->nfiles == w->files_cap) {
        w->files_cap = w->files_cap ? w->files_cap * 2 : 16;
        b->files = mxu_realloc(b->files, w->files_cap * sizeof(*b->files));
    }
    mxu_bundle_file *f = &b->files[b->nfiles++];
    f->path = mxu_strdup(rel);
    f->mode = (uint32_t)(st->st_mode & 0777);
    f->len = data.len;
    f->data = data.data ? mxu_buf_steal(&data, NULL) : mxu_malloc(1);
    b->total_bytes += f->len;
    return 0;
}

/* Walk the folder open at `dfd` (taken over and closed), whose path relative
 * to the function folder is `rel` ("" at the top). */
static int walk_dir(walk *w, int dfd, const char *rel, int depth)
{
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        int e = errno;
        close(dfd);
        return mxu_err_sys(w->err, e, "cannot read the folder %s/%s", w->dir, rel);
    }
    /* Names sorted, so that warnings and errors come in a stable order. */
    char **names = NULL;
    size_t nnames = 0, cap = 0;
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno)
                rc = mxu_err_sys(w->err, errno, "cannot read the folder %s/%s", w->dir, rel);
            break;
        }
        /* Hidden entries (".", "..", .git, .DS_Store, editor swap files) are
         * never part of a function. */
        if (de->d_name[0] == '.')
            continue;
        if (nnames == cap) {
            cap = cap ? cap * 2 : 16;
            names = mxu_realloc(names, cap * sizeof(char *));
        }
        names[nnames++] = mxu_strdup(de->d_name);
    }
    if (nnames > 1)
        qsort(names, nnames, sizeof(char *), cmp_str);

    for (size_t i = 0; rc == 0 && i < nnames; i++) {
        const char *name = names[i];
        _cleanup_free_ char *path = rel[0] ? mxu_asprintf("%s/%s", rel, name) : mxu_strdup(name);
        if (depth == 0 && strcmp(name, "mxu.yaml") == 0)
            continue; /* the manifest travels on its own */
        if (!mxu_utf8_valid(path, strlen(path))) {
            rc = mxu_err_set(w->err, EINVAL,
                             "a file name in %s/%s is not UTF-8; the node only accepts UTF-8 "
                             "paths",
                             w->dir, rel);
            break;
        }
        if (strlen(path) > BUNDLE_MAX_PATH) {
            rc = mxu_err_set(w->err, ENAMETOOLONG, "%s/%.100s...: the path is longer than %d bytes",
                             w->dir, path, BUNDLE_MAX_PATH);
            break;
        }
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue; /* removed while we looked */
            rc = mxu_err_sys(w->err, errno, "cannot stat %s/%s", w->dir, path);
        } else if (S_ISLNK(st.st_mode)) {
            add_warning(w, mxu_asprintf("skipped %s/%s: it is a symlink (copy what it points at "
                                        "into the folder to deploy it)",
                                        w->dir, path));
        } else if (S_ISDIR(st.st_mode)) {
            if (depth + 1 >= BUNDLE_MAX_DEPTH) {
                rc = mxu_err_set(w->err, ELOOP, "%s/%s: folders nest deeper than %d levels", w->dir,
                                 path, BUNDLE_MAX_DEPTH);
                break;
            }
            int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0)
                rc = mxu_err_sys(w->err, errno, "cannot open the folder %s/%s", w->dir, path);
            else
                rc = walk_dir(w, sub, path, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            rc = add_file(w, dirfd(d), name, path, &st);
        } else {
            add_warning(w, mxu_asprintf("skipped %s/%s: not a regular file", w->dir, path));
        }
    }
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

int mxu_bundle_read(const char *dir, mxu_bundle *out, mxu_err *err)
{
    mxu_bundle b = {0};
    walk w = {.dir = dir, .b = &b, .err = err};

    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        if (errno == ENOTDIR)
            return mxu_err_set(err, ENOTDIR,
                               "%s is not a folder (deploy takes the folder that holds mxu.yaml)",
                               dir);
        return mxu_err_sys(err, errno, "cannot open the folder %s", dir);
    }

    b.manifest_path = mxu_path_join(dir, "mxu.yaml");
    mxu_buf text = {0};
    mxu_err rerr;
    if (mxu_read_file(b.manifest_path, MXU_BUNDLE_READ_MAX_MANIFEST, &text, &rerr) < 0) {
        if (rerr.code == ENOENT)
            mxu_err_set(err, ENOENT,
                        "%s not found: a function folder holds its manifest in mxu.yaml",
                        b.manifest_path);
        else
            *err = rerr;
        goto fail;
    }
    if (text.data == NULL)
        mxu_buf_append(&text, "", 0);
    if (strlen(text.data) != text.len || !mxu_utf8_valid(text.data, text.len)) {
        mxu_err_set(err, EINVAL, "%s is not UTF-8 text", b.manifest_path);
        mxu_buf_free(&text);
        goto fail;
    }
    b.manifest = mxu_buf_steal(&text, &b.manifest_len);

    if (walk_dir(&w, mxu_steal_fd(&dfd), "", 0) < 0)
        goto fail;
    if (b.nfiles > 1)
        qsort(b.files, b.nfiles, sizeof(*b.files), cmp_file);
    *out = b;
    return 0;

fail:
    if (dfd >= 0)
        close(dfd);
    mxu_bundle_free(&b);
    return -1;
}

void mxu_bundle_free(mxu_bundle *b)
{
    free(b->manifest);
    free(b->manifest_path);
    for (size_t i = 0; i < b->nfiles; i++) {
        free(b->files[i].path);
        free(b->files[i].data);
    }
    free(b->files);
    for (size_t i = 0; i < b->nwarnings; i++)
        free(b->warnings[i]);
    free(b->warnings);
    memset(b, 0, sizeof(*b));
}
