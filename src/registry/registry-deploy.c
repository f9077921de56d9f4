/*
 * Deploys: a FIFO of jobs, one running at a time, each going through
 *
 *   check (at once, on the caller's stack: manifest and files; errors return -1
 *          and the callback never runs)
 *   hash  (work item: the digest over the manifest text and files)
 *   compare (loop: same digest as latest → "unchanged"; a folder for this digest
 *          already there → reuse it, skip to commit)
 *   write + build (work item: bundles/.tmp-XXXXXX, compile for runtime c,
 *          rename to bundles/<digest>, sync)
 *   commit (loop: the version row; only then does the model change)
 *
 * Comparing on the loop, after the previous deploy committed, is what makes
 * "unchanged" right when the same bundle is sent twice in a row, and keeps a
 * deletion that happened while hashing from being missed.
 *
 * One at a time because builds are heavy (a compiler per deploy) and because
 * version numbers must follow arrival order.
 *
 * Closing: queued jobs are cancelled; the running job's thread is told to
 * stop (its compiler is killed) and waited for. The job then lives on,
 * detached, until libuv calls its after-work callback, which only frees it.
 */
#include "registry-internal.h"

#include "policy/policy.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

struct reg_deploy_job {
    mxu_registry *reg; /* NULL once detached by close */
    char *tenant;      /* who the function is deployed for */
    char *file;        /* the manifest's file name, for messages */
    reg_deploy_job *next;
    uv_work_t work;
    mxu_deploy_cb cb;
    void *ud;
    mxu_manifest *manifest;
    char *manifest_text;
    size_t manifest_len;
    reg_file *files;
    size_t nfiles;
    char digest[MXU_DIGEST_HEX_LEN + 1];

    /* What the build thread needs, copied so it never reads the registry. */
    char *bundles_dir;
    char *cc, *sdk_include_dir, *sdk_lib_dir;
    uint64_t build_timeout_ms;
    bool vm;    /* runs under the vm executor: build a guest image */
    int cancel; /* set by close, read by the build thread (atomically) */

    /* Results of the write + build work item. */
    int rc;
    mxu_err err;
    mxu_buf log;
    bool reused; /* the digest folder was already there */

    /* close() waits on this for a work item that is running. */
    uv_mutex_t mu;
    uv_cond_t cond;
    bool work_done;
};

static void job_free(reg_deploy_job *job)
{
    mxu_manifest_free(job->manifest);
    free(job->tenant);
    free(job->file);
    free(job->manifest_text);
    reg_files_free(job->files, job->nfiles);
    free(job->bundles_dir);
    free(job->cc);
    free(job->sdk_include_dir);
    free(job->sdk_lib_dir);
    mxu_buf_free(&job->log);
    uv_cond_destroy(&job->cond);
    uv_mutex_destroy(&job->mu);
    free(job);
}

static void work_mark_done(reg_deploy_job *job)
{
    uv_mutex_lock(&job->mu);
    job->work_done = true;
    uv_cond_signal(&job->cond);
    uv_mutex_unlock(&job->mu);
}

static void start_next(mxu_registry *reg);

/* The end of a job: the registry moves on to the next one before the
 * callback runs, so that the callback may deploy again or even close the
 * registry. */
static void finish(reg_deploy_job *job, int rc, const mxu_err *err, mxu_fn_version *v,
                   bool unchanged)
{
    mxu_registry *reg = job->reg;
    mxu_deploy_result res = {.rc = rc, .version = v, .unchanged = unchanged};
    if (err)
        res.err = *err;
    res.build_log = job->log.data ? job->log.data : "";
    reg->running = NULL;
    start_next(reg);
    job->cb(job->ud, &res);
    job_free(job);
}

/* ---- phase 4: commit (loop) ---- */

static void commit(reg_deploy_job *job, bool fresh_folder)
{
    mxu_registry *reg = job->reg;
    mxu_err err = {0};
    /* A service is checked against what the tenant has at this moment: the
     * deploys before it in the queue have committed, so a function deployed
     * just before the service that calls it is there. */
    if (job->manifest->service &&
        reg_service_check(reg, job->tenant, job->manifest, job->file, &err) < 0) {
        if (fresh_folder && !reg_digest_in_use(reg, job->digest))
            reg_bundle_remove(reg->bundles_dir, job->digest);
        finish(job, -1, &err, NULL, false);
        return;
    }
    mxu_manifest *m = steal_pointer(&job->manifest);
    mxu_fn_version *v = reg_commit_version(reg, job->tenant, m, job->digest, &err);
    if (v == NULL) {
        /* Nothing names the folder we just made: take it away again. */
        if (fresh_folder && !reg_digest_in_use(reg, job->digest))
            reg_bundle_remove(reg->bundles_dir, job->digest);
        finish(job, -1, &err, NULL, false);
        return;
    }
    finish(job, 0, NULL, v, false);
}

/* ---- phase 3: write + build (thread) ---- */

static void build_work(uv_work_t *req)
{
    reg_deploy_job *job = req->data;
    char *tmp = NULL;
    job->rc = reg_bundle_write_tmp(job->bundles_dir, job->files, job->nfiles, &tmp, &job->err);
    if (job->rc == 0 && job->manifest->runtime == MXU_RUNTIME_C) {
        reg_build_opts opts = {
            .cc = job->cc,
            .sdk_include_dir = job->sdk_include_dir,
            .sdk_lib_dir = job->sdk_lib_dir,
            .timeout_ms = job->build_timeout_ms,
            .vm = job->vm,
            .cancel = &job->cancel,
        };
        job->rc = reg_build_c(job->manifest, tmp, &opts, &job->log, &job->err);
    }
    if (job->rc == 0)
        job->rc = reg_bundle_install(job->bundles_dir, tmp, job->digest, &job->reused, &job->err);
    else if (tmp)
        mxu_rm_rf(tmp, NULL);
    free(tmp);
    work_mark_done(job);
}

static void build_done(uv_work_t *req, int status)
{
    reg_deploy_job *job = req->data;
    if (job->reg == NULL) {
        /* Closed meanwhile: a folder it may have installed is swept on open. */
        job_free(job);
        return;
    }
    if (status == UV_ECANCELED || job->rc < 0) {
        if (status == UV_ECANCELED)
            mxu_err_set(&job->err, ECANCELED, "deploy cancelled");
        finish(job, -1, &job->err, NULL, false);
        return;
    }
    commit(job, !job->reused);
}

/* ---- phase 2: compare (loop) ---- */

static void hash_done(uv_work_t *req, int status)
{
    reg_deploy_job *job = req->data;
    mxu_registry *reg = job->reg;
    if (reg == NULL) {
        job_free(job);
        return;
    }
    if (status == UV_ECANCELED) {
        mxu_err e;
        mxu_err_set(&e, ECANCELED, "deploy cancelled");
        finish(job, -1, &e, NULL, false);
        return;
    }
    reg_function *fn = reg_function_find(reg, job->tenant, job->manifest->name);
    mxu_fn_version *latest = fn ? reg_function_latest(fn) : NULL;
    if (latest && strcmp(latest->digest, job->digest) == 0) {
        finish(job, 0, NULL, latest, true);
        return;
    }
    _cleanup_free_ char *dir = mxu_path_join(reg->bundles_dir, job->digest);
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        /* An older version (or one being deleted while still in use) has
         * exactly this bundle, built: use it as it is. */
        commit(job, false);
        return;
    }
    job->work_done = false;
    uv_queue_work(reg->loop, &job->work, build_work, build_done);
}

/* ---- phase 1: hash (thread) ---- */

static void hash_work(uv_work_t *req)
{
    reg_deploy_job *job = req->data;
    /* A manifest that names no executor builds differently when the node's
     * default is vm: that build must not be mistaken for (or reuse) the
     * process build of the same files. */
    _cleanup_buf_ mxu_buf text = {0};
    mxu_buf_append(&text, job->manifest_text, job->manifest_len);
    if (job->vm && job->manifest->executor[0] == '\0')
        mxu_buf_puts(&text, "\n# built for the node's default executor: vm\n");
    reg_bundle_digest(text.data, text.len, job->files, job->nfiles, job->digest);
    work_mark_done(job);
}

static void start_next(mxu_registry *reg)
{
    if (reg->running || reg->queue_head == NULL)
        return;
    reg_deploy_job *job = reg->queue_head;
    reg->queue_head = job->next;
    if (reg->queue_head == NULL)
        reg->queue_tail = NULL;
    job->next = NULL;
    reg->running = job;
    job->work_done = false;
    uv_queue_work(reg->loop, &job->work, hash_work, hash_done);
}

int mxu_registry_deploy(mxu_registry *reg, const char *tenant, const char *manifest_filename,
                        const char *manifest_text, size_t manifest_len,
                        const mxu_deploy_file *files, size_t nfiles, mxu_deploy_cb cb, void *ud,
                        mxu_err *err)
{
    if (cb == NULL)
        return mxu_err_set(err, EINVAL, "deploy: no callback");
    if (tenant == NULL || !mxu_tenant_name_valid(tenant))
        return mxu_err_set(err, EINVAL, "deploy: '%.40s' is not a tenant name",
                           tenant ? tenant : "");
    mxu_manifest *m = NULL;
    if (mxu_manifest_parse(manifest_text, manifest_len, manifest_filename, &m, err) < 0)
        return -1;
    /* Under vm a function is a guest image: refuse early, with the reason,
     * on a node that cannot run guests. */
    const char *executor = m->executor[0] ? m->executor : reg->default_executor;
    bool vm = strcmp(executor, "vm") == 0 && m->service == NULL; /* a service runs nowhere */
    if (vm && reg->vm_unavailable) {
        mxu_err_set(err, EINVAL, "%s: executor vm is not available on this node: %s", m->name,
                    reg->vm_unavailable);
        mxu_manifest_free(m);
        return -1;
    }
    char bad_libs[256];
    if (vm && m->nlibs && reg_vm_libs_refused(m, bad_libs, sizeof(bad_libs)) > 0) {
        /* The manifest check says this for `executor: vm`; here vm is the
         * node's default, and the linker would say it far less clearly. */
        mxu_err_set(err, EINVAL,
                    "%s: executor vm (this node's default) cannot link build: libs: %s: a vm "
                    "guest links only the guest SDK and the libraries " REG_VM_LIBS_TEXT
                    "; deploy it with executor: process or sandbox (docs/vm.md)",
                    m->name, bad_libs);
        mxu_manifest_free(m);
        return -1;
    }
    if (vm && m->runtime != MXU_RUNTIME_C) {
        mxu_err_set(err, EINVAL,
                    "%s: executor vm runs runtime c functions only (a guest has no operating "
                    "system to run a command in)",
                    m->name);
        mxu_manifest_free(m);
        return -1;
    }
    reg_file *copied = NULL;
    if (reg_files_check(m, files, nfiles, &copied, err) < 0) {
        mxu_manifest_free(m);
        return -1;
    }
    reg_deploy_job *job = mxu_calloc(1, sizeof(*job));
    job->reg = reg;
    job->cb = cb;
    job->ud = ud;
    job->manifest = m;
    job->tenant = mxu_strdup(tenant);
    job->file = mxu_strdup(manifest_filename ? manifest_filename : "mxu.yaml");
    job->manifest_text = mxu_strndup(manifest_text, manifest_len);
    job->manifest_len = manifest_len;
    job->files = copied;
    job->nfiles = nfiles;
    job->bundles_dir = mxu_strdup(reg->bundles_dir);
    job->cc = mxu_strdup(reg->cc);
    job->sdk_include_dir = mxu_strdup(reg->sdk_include_dir);
    job->sdk_lib_dir = mxu_strdup(reg->sdk_lib_dir);
    job->build_timeout_ms = reg->build_timeout_ms;
    job->vm = vm;
    job->work.data = job;
    uv_mutex_init(&job->mu);
    uv_cond_init(&job->cond);
    if (reg->queue_tail)
        reg->queue_tail->next = job;
    else
        reg->queue_head = job;
    reg->queue_tail = job;
    start_next(reg);
    return 0;
}

void reg_deploy_shutdown(mxu_registry *reg)
{
    mxu_err e;
    mxu_err_set(&e, ECANCELED, "deploy cancelled: the registry is closing");
    mxu_deploy_result res = {.rc = -1, .err = e, .build_log = ""};

    reg_deploy_job *job = reg->running;
    if (job) {
        reg->running = NULL;
        __atomic_store_n(&job->cancel, 1, __ATOMIC_RELAXED);
        /* Not started yet: libuv drops it (its after-work callback still
         * runs, with UV_ECANCELED). Started: wait for the thread, which
         * kills its compiler at once on `cancel`. */
        if (uv_cancel((uv_req_t *)&job->work) != 0) {
            uv_mutex_lock(&job->mu);
            while (!job->work_done)
                uv_cond_wait(&job->cond, &job->mu);
            uv_mutex_unlock(&job->mu);
        }
        job->reg = NULL;
        job->cb(job->ud, &res);
    }
    while ((job = reg->queue_head) != NULL) {
        reg->queue_head = job->next;
        job->cb(job->ud, &res);
        job_free(job);
    }
    reg->queue_tail = NULL;
}
