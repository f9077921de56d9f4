/*
 * Fuzz the host side of descriptor operations: arbitrary bytes arrive as a
 * RES_OP payload from a hostile instance, are decoded, checked against a
 * descriptor table (declared names, access modes, shapes, sizes, budgets)
 * and, when they pass, run against the real embedded backends (SQLite kv and
 * queue, files for blobs) in a scratch data directory. Nothing may crash,
 * leak or answer twice.
 */
#include "registry/registry.h"
#include "resolve/resolve.h"
#include "unit/unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uv_loop_t loop;
static mxu_resolver *resolver;
static mxu_manifest *manifest;
static mxu_desc_table *table;
static int answers;

static const char manifest_yaml[] =
    "name: fuzz\nruntime: exec\ncommand: /bin/true\nresources:\n"
    "  db: {uri: \"kv:db\", access: read-write, max_value: 4Ki}\n"
    "  ro: {uri: \"kv:db\", access: read}\n"
    "  files: {uri: \"blob:files\", access: read-write, max_value: 64Ki}\n"
    "  jobs: {uri: \"queue:jobs\", access: publish-consume, max_value: 1Ki}\n"
    "  pub: {uri: \"queue:jobs\", access: publish}\n"
    "  call: {uri: \"svc:other\"}\n"
    "  slow: {uri: \"kv:slow\", access: read-write, ops_per_second: 3}\n";

static char dir[] = "/tmp/mxu-fuzz-resop-XXXXXX";

static void cleanup(void)
{
    mxu_rm_rf(dir, NULL);
}

static void setup(void)
{
    if (mkdtemp(dir) == NULL)
        abort();
    atexit(cleanup);
    mxu_err err;
    uv_loop_init(&loop);
    mxu_resolver_config cfg = {.loop = &loop, .data_dir = dir};
    if (mxu_resolver_open(&cfg, &resolver, &err) < 0 ||
        mxu_manifest_parse(manifest_yaml, strlen(manifest_yaml), "fuzz.yaml", &manifest, &err) <
            0 ||
        mxu_desc_table_create(manifest, resolver, "default", &table, &err) < 0) {
        fprintf(stderr, "fuzz setup: %s\n", err.msg);
        abort();
    }
}

static void on_done(void *ud, const mxu_res_result *r)
{
    int *called = ud;
    if (++*called != 1)
        abort(); /* exactly once */
    if (r->status > MXU_RES_CALL_FAILED)
        abort();
    answers++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (table == NULL)
        setup();
    mxu_res_op_msg op;
    if (mxu_res_op_decode(data, size, &op) < 0)
        return 0;
    char why[300];
    if (mxu_desc_check(table, &op, why, sizeof(why)) != MXU_RES_OK)
        return 0;
    if (op.op == MXU_RES_SVC_CALL)
        return 0; /* served by the scheduler, not a backend */
    int called = 0;
    /* Each input is an invocation of its own, which ends after its op (as
     * the scheduler does: its unfinished uploads are dropped). */
    static uint64_t owner;
    owner++;
    mxu_desc_run(table, &op, owner, on_done, &called);
    /* Embedded backends answer at once; nothing may still be pending. */
    uv_run(&loop, UV_RUN_NOWAIT);
    if (called != 1)
        abort();
    mxu_desc_release(table, owner);
    return 0;
}
