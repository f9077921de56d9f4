/* File helpers. Anything the node tells a client is stored must survive a
 * crash, so whole-file writes go through a temp file, fsync and rename, and
 * the directory is synced too (a rename is only durable once its directory is). */
#include "core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

char *mxu_path_join(const char *a, const char *b)
{
    size_t la = strlen(a);
    while (la > 1 && a[la - 1] == '/')
        la--;
    while (*b == '/')
        b++;
    mxu_buf out = {0};
    mxu_buf_append(&out, a, la);
    if (!(la == 1 && a[0] == '/'))
        mxu_buf_puts(&out, "/");
    mxu_buf_puts(&out, b);
    return mxu_buf_steal(&out, NULL);
}

int mxu_mkdir_p(const char *path, unsigned mode, mxu_err *err)
{
    _cleanup_free_ char *p = mxu_strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return mxu_err_sys(err, errno, "cannot create directory %s", p);
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return mxu_err_sys(err, errno, "cannot create directory %s", p);
    return 0;
}

int mxu_fsync_dir(const char *path, mxu_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return mxu_err_sys(err, errno, "cannot open directory %s", path);
    if (fsync(fd) < 0)
        return mxu_err_sys(err, errno, "cannot sync directory %s", path);
    return 0;
}

int mxu_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int mxu_pwrite_all(int fd, const void *data, size_t len, uint64_t off)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int mxu_pread_all(int fd, void *out, size_t len, uint64_t off)
{
    char *p = out;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int mxu_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                          mxu_err *err)
{
    _cleanup_free_ char *tmp = mxu_asprintf("%s.tmp.%d", path, (int)getpid());
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return mxu_err_sys(err, errno, "cannot create %s", tmp);
    if (mxu_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        int e = errno;
        unlink(tmp);
        return mxu_err_sys(err, e, "cannot write %s", tmp);
    }
    if (fchmod(fd, mode) < 0 || rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return mxu_err_sys(err, e, "cannot install %s", path);
    }
    _cleanup_free_ char *dir = mxu_strdup(path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        return mxu_fsync_dir(".", err);
    *slash = '\0';
    return mxu_fsync_dir(slash == dir ? "/" : dir, err);
}

int mxu_read_file(const char *path, size_t max, mxu_buf *out, mxu_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mxu_err_sys(err, errno, "cannot open %s", path);
    for (;;) {
        mxu_buf_reserve(out, 65536);
        out->data[out->len] = '\0'; /* an empty file is an empty string too */
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return mxu_err_sys(err, errno, "cannot read %s", path);
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
        if (out->len > max)
            return mxu_err_set(err, EFBIG, "%s is larger than %zu bytes", path, max);
    }
    return 0;
}

static int rm_rf_at(int parent, const char *name, mxu_err *err)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : mxu_err_sys(err, errno, "cannot stat %s", name);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(parent, name, 0) < 0 && errno != ENOENT)
            return mxu_err_sys(err, errno, "cannot remove %s", name);
        return 0;
    }
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return mxu_err_sys(err, errno, "cannot open %s", name);
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return mxu_err_sys(err, errno, "cannot list %s", name);
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = rm_rf_at(dirfd(d), de->d_name, err);
    }
    closedir(d);
    if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return mxu_err_sys(err, errno, "cannot remove directory %s", name);
    return rc;
}

int mxu_rm_rf(const char *path, mxu_err *err)
{
    return rm_rf_at(AT_FDCWD, path, err);
}
