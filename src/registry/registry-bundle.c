/*
 * Bundles: the files of a deploy, checked, hashed, and written to disk in a
 * way that a crash at any moment leaves either nothing or a complete folder.
 *
 * A bundle is content-addressed: bundles/<digest>/ where digest is a sha256
 * over the manifest text and every (path, mode, data). Two versions with the
 * same content share one folder. A deploy writes into bundles/.tmp-XXXXXX,
 * syncs every file and folder, builds there, and only then renames the folder
 * to its digest: so a folder named by a digest is always complete, and
 * whatever a crash leaves is a .tmp-* folder (removed on open) or a digest
 * folder no committed version names (also removed on open).
 */
#include "registry-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define TMP_PREFIX ".tmp-"

/* ---- checking the files of a deploy --------------------------------------------- */

void reg_files_free(reg_file *files, size_t n)
{
    if (files == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(files[i].path);
        free(files[i].data);
    }
    free(files);
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const reg_file *)a)->path, ((const reg_file *)b)->path);
}

/* Index of the first file whose path is >= key (files sorted by path). */
static size_t lower_bound(const reg_file *files, size_t n, const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(files[mid].path, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const reg_file *find_file(const reg_file *files, size_t n, const char *path)
{
    size_t i = lower_bound(files, n, path);
    return i < n && strcmp(files[i].path, path) == 0 ? &files[i] : NULL;
}

/* The program an exec function runs must be there and be executable: caught
 * now, at deploy, rather than as a failure on the first invocation. */
static int check_command(const mxu_manifest *m, const reg_file *files, size_t n, mxu_err *err)
{
    const char *cmd = m->command[0];
    if (cmd[0] == '/') {
        struct stat st;
        if (stat(cmd, &st) < 0)
            return mxu_err_sys(err, EINVAL, "command: '%.200s' does not exist on this node", cmd);
        if (!S_ISREG(st.st_mode) || access(cmd, X_OK) < 0)
            return mxu_err_set(err, EINVAL, "command: '%.200s' is not an executable file", cmd);
        return 0;
    }
    const char *rel = strncmp(cmd, "./", 2) == 0 ? cmd + 2 : cmd;
    const reg_file *f = find_file(files, n, rel);
    if (f == NULL)
        return mxu_err_set(err, EINVAL,
                           "command: '%.200s' is not among the deployed files (to run a "
                           "program installed on the node, give its absolute path, e.g. "
                           "/usr/bin/python3)",
                           cmd);
    if ((f->mode & 0111) == 0)
        return mxu_err_set(err, EINVAL,
                           "command: '%.200s' is not executable (mode %04o); deploy it with "
                           "mode 0755",
                           cmd, (unsigned)f->mode);
    return 0;
}

static int files_check(const mxu_manifest *m, const mxu_deploy_file *in, size_t nfiles,
                       reg_file **out, mxu_err *err)
{
    if (nfiles > MXU_BUNDLE_MAX_FILES)
        return mxu_err_set(err, EINVAL, "a function may have at most %d files (got %zu)",
                           MXU_BUNDLE_MAX_FILES, nfiles);
    if (nfiles > 0 && in == NULL)
        return mxu_err_set(err, EINVAL, "no files given");
    size_t total = 0;
    for (size_t i = 0; i < nfiles; i++) {
        const char *why = in[i].path ? reg_path_problem(in[i].path) : "is missing";
        if (why)
            return mxu_err_set(err, EINVAL, "file '%.200s': the path %s",
                               in[i].path ? in[i].path : "", why);
        if (in[i].mode & ~0777u)
            return mxu_err_set(err, EINVAL,
                               "file '%.200s': mode %o has more than permission bits (0777)",
                               in[i].path, (unsigned)in[i].mode);
        if (in[i].data == NULL && in[i].len > 0)
            return mxu_err_set(err, EINVAL, "file '%.200s': no data", in[i].path);
        if (in[i].len > MXU_BUNDLE_MAX_BYTES - total)
            return mxu_err_set(err, EINVAL, "the files of a function may total at most %u MiB",
                               MXU_BUNDLE_MAX_BYTES >> 20);
        total += in[i].len;
    }

    /* Copy: the caller's buffers are only valid during the call, and the
     * deploy runs later. Sorted, so that the digest does not depend on the
     * order the client listed the files in. */
    reg_file *files = mxu_calloc(nfiles ? nfiles : 1, sizeof(*files));
    for (size_t i = 0; i < nfiles; i++) {
        files[i].path = mxu_strdup(in[i].path);
        files[i].mode = in[i].mode;
        files[i].len = in[i].len;
        files[i].data = mxu_malloc(in[i].len);
        if (in[i].len)
            memcpy(files[i].data, in[i].data, in[i].len);
    }
    qsort(files, nfiles, sizeof(*files), cmp_file);

    for (size_t i = 0; i < nfiles; i++) {
        if (i > 0 && strcmp(files[i - 1].path, files[i].path) == 0) {
            mxu_err_set(err, EINVAL, "file '%.200s' is listed twice", files[i].path);
            goto fail;
        }
        /* "a" and "a/b" can't both be: one would have to be a folder. */
        _cleanup_free_ char *dir = mxu_asprintf("%s/", files[i].path);
        size_t j = lower_bound(files, nfiles, dir);
        if (j < nfiles && strncmp(files[j].path, dir, strlen(dir)) == 0) {
            mxu_err_set(err, EINVAL, "file '%.200s' is also the folder of '%.200s'", files[i].path,
                        files[j].path);
            goto fail;
        }
    }
    if (m->runtime == MXU_RUNTIME_C) {
        for (size_t i = 0; i < m->nsources; i++) {
            if (find_file(files, nfiles, m->sources[i]) == NULL) {
                mxu_err_set(err, EINVAL, "sources: '%.200s' is not among the deployed files",
                            m->sources[i]);
                goto fail;
            }
        }
    } else if (m->service == NULL && check_command(m, files, nfiles, err) < 0) {
        goto fail;
    }
    *out = files;
    return 0;
fail:
    reg_files_free(files, nfiles);
    return -1;
}

int reg_files_check(const mxu_manifest *m, const mxu_deploy_file *in, size_t nfiles, reg_file **out,
                    mxu_err *err)
{
    if (files_check(m, in, nfiles, out, err) < 0) {
        if (err)
            reg_text_clean(err->msg); /* it quotes paths the client chose */
        return -1;
    }
    return 0;
}

/* ---- digest ------------------------------------------------------------------------ */

static void hash_u64(crypto_hash_sha256_state *st, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    crypto_hash_sha256_update(st, b, sizeof(b));
}

void reg_bundle_digest(const char *manifest_text, size_t manifest_len, const reg_file *files,
                       size_t nfiles, char *hex)
{
    static const char tag[] = "mxu-bundle-v1";
    crypto_hash_sha256_state st;
    unsigned char out[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)tag, sizeof(tag));
    hash_u64(&st, manifest_len);
    crypto_hash_sha256_update(&st, (const unsigned char *)manifest_text, manifest_len);
    hash_u64(&st, nfiles);
    for (size_t i = 0; i < nfiles; i++) {
        size_t pl = strlen(files[i].path);
        hash_u64(&st, pl);
        crypto_hash_sha256_update(&st, (const unsigned char *)files[i].path, pl);
        hash_u64(&st, files[i].mode);
        hash_u64(&st, files[i].len);
        crypto_hash_sha256_update(&st, files[i].data, files[i].len);
    }
    crypto_hash_sha256_final(&st, out);
    sodium_bin2hex(hex, MXU_DIGEST_HEX_LEN + 1, out, sizeof(out));
}

bool reg_digest_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    }
    return n == MXU_DIGEST_HEX_LEN;
}

/* ---- writing ----------------------------------------------------------------------- */

static int write_one(const char *root, const reg_file *f, mxu_err *err)
{
    _cleanup_free_ char *path = mxu_path_join(root, f->path);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    if (mxu_mkdir_p(path, 0755, err) < 0)
        return -1;
    *slash = '/';
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return mxu_err_sys(err, errno, "cannot create %s", path);
    /* fchmod after writing: the mode given is what the file gets, umask or not. */
    if (mxu_write_all(fd, f->data, f->len) < 0 || fchmod(fd, f->mode) < 0 || fsync(fd) < 0)
        return mxu_err_sys(err, errno, "cannot write %s", path);
    return 0;
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sync the root and every folder files were created in: a new file is only
 * durable once the folder entry naming it is. */
static int sync_dirs(const char *root, const reg_file *files, size_t n, mxu_err *err)
{
    size_t nd = 0, cap = 16;
    char **dirs = mxu_calloc(cap, sizeof(char *));
    dirs[nd++] = mxu_strdup("");
    for (size_t i = 0; i < n; i++) {
        /* every ancestor: a/b/c.txt → "a", "a/b" (duplicates removed below) */
        for (const char *slash = files[i].path; (slash = strchr(slash, '/')) != NULL; slash++) {
            if (nd == cap) {
                cap *= 2;
                dirs = mxu_realloc(dirs, cap * sizeof(char *));
            }
            dirs[nd++] = mxu_strndup(files[i].path, (size_t)(slash - files[i].path));
        }
    }
    qsort(dirs, nd, sizeof(*dirs), cmp_strp);
    int rc = 0;
    for (size_t i = 0; i < nd; i++) {
        if (rc == 0 && (i == 0 || strcmp(dirs[i - 1], dirs[i]) != 0)) {
            _cleanup_free_ char *p = dirs[i][0] ? mxu_path_join(root, dirs[i]) : mxu_strdup(root);
            rc = mxu_fsync_dir(p, err);
        }
    }
    for (size_t i = 0; i < nd; i++)
        free(dirs[i]);
    free(dirs);
    return rc;
}

int reg_bundle_write_tmp(const char *bundles_dir, const reg_file *files, size_t nfiles,
                         char **tmp_out, mxu_err *err)
{
    char *tmp = mxu_asprintf("%s/" TMP_PREFIX "XXXXXX", bundles_dir);
    if (mkdtemp(tmp) == NULL) {
        mxu_err_sys(err, errno, "cannot create a folder in %s", bundles_dir);
        free(tmp);
        return -1;
    }
    if (chmod(tmp, 0755) < 0) {
        mxu_err_sys(err, errno, "cannot set the mode of %s", tmp);
        goto fail;
    }
    for (size_t i = 0; i < nfiles; i++) {
        if (write_one(tmp, &files[i], err) < 0)
            goto fail;
    }
    if (sync_dirs(tmp, files, nfiles, err) < 0)
        goto fail;
    *tmp_out = tmp;
    return 0;
fail:
    mxu_rm_rf(tmp, NULL);
    free(tmp);
    return -1;
}

int reg_bundle_install(const char *bundles_dir, const char *tmp, const char *digest, bool *reused,
                       mxu_err *err)
{
    _cleanup_free_ char *dst = mxu_path_join(bundles_dir, digest);
    *reused = false;
    if (rename(tmp, dst) < 0) {
        if (errno != EEXIST && errno != ENOTEMPTY)
            return mxu_err_sys(err, errno, "cannot move %s to %s", tmp, dst);
        /* Same digest, same content: keep the folder that is there. */
        mxu_rm_rf(tmp, NULL);
        *reused = true;
        return 0;
    }
    return mxu_fsync_dir(bundles_dir, err);
}

void reg_bundle_remove(const char *bundles_dir, const char *digest)
{
    _cleanup_free_ char *src = mxu_path_join(bundles_dir, digest);
    _cleanup_free_ char *dst = mxu_asprintf("%s/" TMP_PREFIX "del-%s", bundles_dir, digest);
    mxu_err err;
    if (rename(src, dst) < 0) {
        if (errno != ENOENT)
            mxu_warn("registry: cannot remove bundle %s: %s", src, strerror(errno));
        return;
    }
    if (mxu_rm_rf(dst, &err) < 0)
        mxu_warn("registry: removing %s: %s (removed on next start)", dst, err.msg);
}

int reg_bundle_sweep(mxu_registry *reg, mxu_err *err)
{
    DIR *d = opendir(reg->bundles_dir);
    if (d == NULL)
        return mxu_err_sys(err, errno, "cannot list %s", reg->bundles_dir);
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        bool tmp = strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0;
        if (!tmp && !reg_digest_valid(name)) {
            mxu_warn("registry: leaving unknown entry %s/%s alone", reg->bundles_dir, name);
            continue;
        }
        if (!tmp && reg_digest_in_use(reg, name))
            continue;
        /* A deploy interrupted before its commit, or a bundle whose versions
         * were deleted while it was in use. */
        _cleanup_free_ char *path = mxu_path_join(reg->bundles_dir, name);
        mxu_debug("registry: removing leftover %s", path);
        rc = mxu_rm_rf(path, err);
    }
    closedir(d);
    return rc;
}

char *reg_exe_path(const mxu_manifest *m, const char *bundle_dir)
{
    if (m->service)
        return mxu_strdup(""); /* a service runs no program */
    if (m->runtime == MXU_RUNTIME_C)
        return mxu_path_join(bundle_dir, MXU_BUNDLE_INSTANCE_PATH);
    const char *cmd = m->command[0];
    if (cmd[0] == '/')
        return mxu_strdup(cmd);
    return mxu_path_join(bundle_dir, strncmp(cmd, "./", 2) == 0 ? cmd + 2 : cmd);
}
