/* Unit tests for src/registry/registry-manifest.c: every field, the defaults,
 * and every class of error with the exact "FILE:LINE: FIELD:" it reports. */
#include "registry/registry.h"
#include "test.h"

#include <errno.h>

#define FILE_NAME "fn/mxu.yaml"

static mxu_manifest *parse_ok_(const char *yaml, const char *where, int line)
{
    mxu_err err = {0};
    mxu_manifest *m = NULL;
    if (mxu_manifest_parse(yaml, strlen(yaml), FILE_NAME, &m, &err) < 0) {
        fprintf(stderr, "  %s:%d: unexpected parse error: %s\n", where, line, err.msg);
        exit(1);
    }
    return m;
}
#define parse_ok(yaml) parse_ok_((yaml), __FILE__, __LINE__)

/* Parsing must fail with EINVAL, the message must start with `prefix`
 * ("fn/mxu.yaml:4: memory: ") and contain `sub`. */
#define EXPECT_ERR_N(yaml, len, prefix, sub)                                                \
    do {                                                                                    \
        mxu_err e_ = {0};                                                                   \
        mxu_manifest *m_ = NULL;                                                            \
        if (mxu_manifest_parse((yaml), (len), FILE_NAME, &m_, &e_) == 0) {                  \
            mxu_manifest_free(m_);                                                          \
            MXU_TEST_FAIL_("parsed, but expected an error starting with \"%s\"", (prefix)); \
        }                                                                                   \
        CHECK(m_ == NULL);                                                                  \
        CHECK_EQ_INT(e_.code, EINVAL);                                                      \
        if (strncmp(e_.msg, (prefix), strlen(prefix)) != 0)                                 \
            MXU_TEST_FAIL_("message \"%s\" does not start with \"%s\"", e_.msg, (prefix));  \
        CHECK_CONTAINS(e_.msg, (sub));                                                      \
        CHECK(mxu_utf8_valid(e_.msg, strlen(e_.msg)));                                      \
    } while (0)
#define EXPECT_ERR(yaml, prefix, sub) EXPECT_ERR_N((yaml), strlen(yaml), (prefix), (sub))

static const char full_c[] = "name: thumbs\n"                    /* 1 */
                             "description: makes thumbnails\n"   /* 2 */
                             "runtime: c\n"                      /* 3 */
                             "executor: process\n"               /* 4 */
                             "sources: [main.c, lib/resize.c]\n" /* 5 */
                             "build:\n"                          /* 6 */
                             "  cflags: [-Wall, -DFAST=1]\n"     /* 7 */
                             "  libs: [m, z]\n"                  /* 8 */
                             "memory: 256Mi\n"                   /* 9 */
                             "timeout: 5s\n"                     /* 10 */
                             "concurrency: 8\n"                  /* 11 */
                             "min_instances: 1\n"                /* 12 */
                             "max_instances: 4\n"                /* 13 */
                             "keep_alive: 2m\n"                  /* 14 */
                             "env:\n"                            /* 15 */
                             "  MODE: fast\n"                    /* 16 */
                             "  LEVEL: 3\n"                      /* 17 */
                             "  _x: \"\"\n"                      /* 18 */
                             "resources:\n"                      /* 19 */
                             "  images: {uri: \"blob:images\", access: read}\n"
                             "  jobs:\n"
                             "    uri: queue:jobs\n"
                             "    access: publish-consume\n"
                             "  cache: {uri: \"kv:cache\", access: read-write}\n"
                             "  resize: {uri: \"svc:resize@prod\"}\n"
                             "  other: {uri: \"svc:other@3\", access: invoke}\n"
                             "  plain: {uri: \"svc:plain\"}\n";

static void test_full_c(void)
{
    mxu_manifest *m = parse_ok(full_c);
    CHECK_STR(m->name, "thumbs");
    CHECK_STR(m->description, "makes thumbnails");
    CHECK_EQ_INT(m->runtime, MXU_RUNTIME_C);
    CHECK_STR(m->executor, "process");
    CHECK_EQ_INT(m->nsources, 2);
    CHECK_STR(m->sources[0], "main.c");
    CHECK_STR(m->sources[1], "lib/resize.c");
    CHECK_EQ_INT(m->ncflags, 2);
    CHECK_STR(m->cflags[1], "-DFAST=1");
    CHECK_EQ_INT(m->nlibs, 2);
    CHECK_STR(m->libs[0], "m");
    CHECK_STR(m->libs[1], "z");
    CHECK_EQ_INT(m->ncommand, 0);
    CHECK_EQ_U64(m->memory_bytes, 256ull << 20);
    CHECK_EQ_U64(m->timeout_ms, 5000);
    CHECK_EQ_INT(m->concurrency, 8);
    CHECK_EQ_INT(m->min_instances, 1);
    CHECK_EQ_INT(m->max_instances, 4);
    CHECK_EQ_U64(m->keep_alive_ms, 120000);
    CHECK_EQ_INT(m->nenv, 3);
    CHECK_STR(m->env_names[0], "MODE");
    CHECK_STR(m->env_values[0], "fast");
    CHECK_STR(m->env_names[1], "LEVEL");
    CHECK_STR(m->env_values[1], "3");
    CHECK_STR(m->env_names[2], "_x");
    CHECK_STR(m->env_values[2], "");
    CHECK_EQ_INT(m->nresources, 6);
    CHECK_STR(m->resources[0].name, "images");
    CHECK_STR(m->resources[0].uri, "blob:images");
    CHECK_STR(m->resources[0].kind, "blob");
    CHECK_STR(m->resources[0].target, "images");
    CHECK_STR(m->resources[0].access, "read");
    CHECK_STR(m->resources[1].kind, "queue");
    CHECK_STR(m->resources[1].access, "publish-consume");
    CHECK_STR(m->resources[2].access, "read-write");
    CHECK_STR(m->resources[3].kind, "svc");
    CHECK_STR(m->resources[3].target, "resize@prod");
    CHECK_STR(m->resources[3].access, "invoke"); /* svc default */
    CHECK_STR(m->resources[4].target, "other@3");
    CHECK_STR(m->resources[5].target, "plain");
    mxu_manifest_free(m);
}

static void test_defaults_exec(void)
{
    mxu_manifest *m = parse_ok("name: hello\nruntime: exec\ncommand: ./run.sh\n");
    CHECK_STR(m->name, "hello");
    CHECK_STR(m->description, "");
    CHECK_EQ_INT(m->runtime, MXU_RUNTIME_EXEC);
    CHECK_STR(m->executor, ""); /* not given: the node's default */
    CHECK_EQ_INT(m->ncommand, 1);
    CHECK_STR(m->command[0], "./run.sh");
    CHECK_EQ_INT(m->nsources, 0);
    CHECK_EQ_U64(m->memory_bytes, 128ull << 20);
    CHECK_EQ_U64(m->timeout_ms, 30000);
    CHECK_EQ_INT(m->concurrency, 1);
    CHECK_EQ_INT(m->min_instances, 0);
    CHECK_EQ_INT(m->max_instances, 10);
    CHECK_EQ_U64(m->keep_alive_ms, 600000);
    CHECK_EQ_INT(m->nenv, 0);
    CHECK_EQ_INT(m->nresources, 0);
    mxu_manifest_free(m);
}

static void test_command_forms(void)
{
    mxu_manifest *m = parse_ok("name: a\nruntime: exec\ncommand: \"  /bin/sh   -c\t'x y' \"\n");
    CHECK_EQ_INT(m->ncommand, 4);
    CHECK_STR(m->command[0], "/bin/sh");
    CHECK_STR(m->command[1], "-c");
    CHECK_STR(m->command[2], "'x");
    CHECK_STR(m->command[3], "y'");
    mxu_manifest_free(m);
    m = parse_ok("name: a\nruntime: exec\ncommand: [python3, \"main app.py\"]\n");
    CHECK_EQ_INT(m->ncommand, 2);
    CHECK_STR(m->command[1], "main app.py");
    mxu_manifest_free(m);
    m = parse_ok("name: a\nruntime: exec\ncommand:\n  - bin/run\n  - --fast\n");
    CHECK_EQ_INT(m->ncommand, 2);
    CHECK_STR(m->command[0], "bin/run");
    mxu_manifest_free(m);
}

static void test_sizes_and_durations(void)
{
    mxu_manifest *m = parse_ok("name: a\nruntime: exec\ncommand: x\nmemory: 1Gi\ntimeout: 500ms\n"
                               "keep_alive: 0\n");
    CHECK_EQ_U64(m->memory_bytes, 1ull << 30);
    CHECK_EQ_U64(m->timeout_ms, 500);
    CHECK_EQ_U64(m->keep_alive_ms, 0);
    mxu_manifest_free(m);
    /* bare integers: bytes for memory (when >= 1 MiB), seconds for durations */
    m = parse_ok("name: a\nruntime: exec\ncommand: x\nmemory: 268435456\ntimeout: 2\n"
                 "keep_alive: \"1h\"\n");
    CHECK_EQ_U64(m->memory_bytes, 256ull << 20);
    CHECK_EQ_U64(m->timeout_ms, 2000);
    CHECK_EQ_U64(m->keep_alive_ms, 3600000);
    mxu_manifest_free(m);
    m = parse_ok("name: a\nruntime: exec\ncommand: x\nmemory: 64GiB\ntimeout: 15m\n");
    CHECK_EQ_U64(m->memory_bytes, 64ull << 30);
    CHECK_EQ_U64(m->timeout_ms, 900000);
    mxu_manifest_free(m);
}

static void test_anchors_and_comments(void)
{
    mxu_manifest *m = parse_ok("# a function\n"
                               "---\n"
                               "name: a # the name\n"
                               "runtime: c\n"
                               "sources: &src [a.c]\n"
                               "build: {cflags: [-O1], libs: []}\n"
                               "...\n");
    CHECK_EQ_INT(m->nsources, 1);
    CHECK_EQ_INT(m->ncflags, 1);
    CHECK_EQ_INT(m->nlibs, 0);
    mxu_manifest_free(m);
}

static void test_err_memory(void)
{
    const char *head = "name: a\nruntime: exec\ncommand: x\n";
    char y[256];
    snprintf(y, sizeof(y), "%smemory: 12X\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: memory: ", "'12X' is not a size (write e.g. 128Mi");
    snprintf(y, sizeof(y), "%smemory: 128\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: memory: ", "write a unit, e.g. 128Mi");
    snprintf(y, sizeof(y), "%smemory: 8Mi\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: memory: ", "8 MiB is below the minimum of 16 MiB");
    snprintf(y, sizeof(y), "%smemory: 65Gi\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: memory: ", "above the maximum of 64 GiB");
    snprintf(y, sizeof(y), "%smemory: [1]\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: memory: ", "expected a size like 128Mi, got a list");
    snprintf(y, sizeof(y), "%smemory:\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: memory: ", "has no value");
}

static void test_err_durations_and_numbers(void)
{
    const char *head = "name: a\nruntime: c\nsources: [a.c]\n";
    char y[256];
    snprintf(y, sizeof(y), "%s\ntimeout: soon\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: timeout: ", "'soon' is not a duration");
    snprintf(y, sizeof(y), "%stimeout: 0\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: timeout: ", "below the minimum");
    snprintf(y, sizeof(y), "%stimeout: 16m\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: timeout: ", "above the maximum of 15 min");
    snprintf(y, sizeof(y), "%skeep_alive: 25h\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: keep_alive: ", "above the maximum of 24 h");
    snprintf(y, sizeof(y), "%sconcurrency: \"4\"\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: concurrency: ", "got the string '4' (remove the quotes)");
    snprintf(y, sizeof(y), "%sconcurrency: -1\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: concurrency: ", "must not be negative");
    snprintf(y, sizeof(y), "%sconcurrency: four\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: concurrency: ", "expected a whole number, got 'four'");
    snprintf(y, sizeof(y), "%sconcurrency: 0\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: concurrency: ", "0 is below the minimum of 1");
    snprintf(y, sizeof(y), "%sconcurrency: 1001\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: concurrency: ", "1001 is above the maximum of 1000");
    snprintf(y, sizeof(y), "%sconcurrency: 99999999999\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: concurrency: ", "above the maximum");
    snprintf(y, sizeof(y), "%smax_instances: 0\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: max_instances: ", "below the minimum of 1");
    snprintf(y, sizeof(y), "%smax_instances: 2\nmin_instances: 5\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: min_instances: ", "5 is more than max_instances (2)");
    snprintf(y, sizeof(y), "%smin_instances: 11\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: min_instances: ", "11 is more than max_instances (10)");
}

static void test_err_required(void)
{
    EXPECT_ERR("runtime: exec\ncommand: x\n", FILE_NAME ":1: name: ", "required field is missing");
    EXPECT_ERR("\n\nname: a\ncommand: x\n",
               FILE_NAME ":3: runtime: ", "required field is missing (c or exec)");
    EXPECT_ERR("name: a\nruntime: c\n", FILE_NAME ":1: sources: ", "required for runtime c");
    EXPECT_ERR("name: a\nruntime: c\nsources: []\n", FILE_NAME ":3: sources: ", "is empty");
    EXPECT_ERR("name: a\nruntime: exec\n", FILE_NAME ":1: command: ", "required for runtime exec");
    EXPECT_ERR("name: a\nruntime: exec\ncommand: \"  \"\n", FILE_NAME ":3: command: ", "is empty");
}

static void test_err_runtime_rules(void)
{
    EXPECT_ERR("name: a\nruntime: java\n",
               FILE_NAME ":2: runtime: ", "'java' is not a runtime (c or exec)");
    EXPECT_ERR("name: a\nruntime: exec\ncommand: x\nsources: [a.c]\n",
               FILE_NAME ":4: sources: ", "only for runtime c");
    EXPECT_ERR("name: a\nruntime: exec\ncommand: x\nbuild: {libs: [m]}\n",
               FILE_NAME ":4: build: ", "only for runtime c");
    EXPECT_ERR("name: a\nruntime: c\nsources: [a.c]\n\ncommand: ./a\n",
               FILE_NAME ":5: command: ", "only for runtime exec");
    EXPECT_ERR("name: a\nruntime: exec\ncommand: x\nconcurrency: 4\n",
               FILE_NAME ":4: concurrency: ", "each invocation runs its own process");
    /* concurrency: 1 is fine for exec */
    mxu_manifest_free(parse_ok("name: a\nruntime: exec\ncommand: x\nconcurrency: 1\n"));
}

static void test_err_executor(void)
{
    const char *head = "name: a\nruntime: exec\ncommand: x\n";
    char y[256];
    snprintf(y, sizeof(y), "%sexecutor: sandbox\n", head);
    mxu_manifest_free(parse_ok(y));
    snprintf(y, sizeof(y), "%sexecutor: kvm\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: executor: ", "'kvm' is not an executor (process, sandbox or vm)");
    /* vm takes runtime c only, and no system libraries */
    snprintf(y, sizeof(y), "%sexecutor: vm\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: executor: ", "vm runs runtime c functions only");
    mxu_manifest_free(parse_ok("name: a\nruntime: c\nsources: [a.c]\nexecutor: vm\n"));
    mxu_manifest_free(parse_ok("name: a\nruntime: c\nsources: [a.c]\nexecutor: vm\nbuild:\n"
                               "  libs: [jansson, z, sodium, m]\n"));
    EXPECT_ERR("name: a\nruntime: c\nsources: [a.c]\nexecutor: vm\nbuild:\n"
               "  libs: [m, curl, jansson, uv]\n",
               FILE_NAME ":6: build: ",
               "a vm guest cannot link curl, uv: it links only the guest SDK and the libraries "
               "jansson, z, sodium, m");
    snprintf(y, sizeof(y), "%sexecutor: docker\n", head);
    EXPECT_ERR(y, FILE_NAME ":4: executor: ", "'docker' is not an executor");
}

static void test_err_unknown_field(void)
{
    EXPECT_ERR("name: a\nruntime: exec\nmemroy: 1Gi\ncommand: x\n",
               FILE_NAME ":3: unknown field 'memroy'", "(did you mean 'memory'?)");
    EXPECT_ERR("name: a\nruntime: exec\ncommand: x\n\n\nfrobnicate: 1\n",
               FILE_NAME ":6: unknown field 'frobnicate'", "frobnicate");
    EXPECT_ERR("name: a\nruntime: c\nsources: [a.c]\nbuild:\n  cflag: [-O1]\n",
               FILE_NAME ":5: build: unknown field 'cflag'", "did you mean 'cflags'?");
    EXPECT_ERR("name: a\nruntime: exec\ncommand: x\nresources:\n  db:\n    uri: kv:db\n"
               "    acess: read\n",
               FILE_NAME ":7: resources.db: unknown field 'acess'", "did you mean 'access'?");
}

static void test_err_duplicate_key(void)
{
    EXPECT_ERR("name: a\nruntime: exec\nmemory: 1Gi\ncommand: x\nmemory: 2Gi\n",
               FILE_NAME ":5: memory: ", "duplicate key (first on line 3)");
    EXPECT_ERR("name: a\nruntime: exec\ncommand: x\nenv:\n  A: 1\n  B: 2\n  A: 3\n",
               FILE_NAME ":7: env: ", "duplicate key 'A' (first on line 5)");
}

static void test_err_syntax(void)
{
    /* libyaml's own message, at its line and column */
    EXPECT_ERR("name: a\nruntime: exec\ncommand: [x, y\n",
               FILE_NAME ":4:1: ", "did not find expected ',' or ']'");
    EXPECT_ERR("name: a\n  runtime: exec\n", FILE_NAME ":2:10: ", "mapping values are not allowed");
    EXPECT_ERR("name: a\nruntime: \"exec\n", FILE_NAME ":3:1: ", "found unexpected end of stream");
    EXPECT_ERR("name: *nope\n", FILE_NAME ":1:7: ", "found undefined alias");
    EXPECT_ERR("name: a\tb: c\nx: \x01\n",
               FILE_NAME ":2:4: ", "control characters are not allowed");
}

static void test_err_encoding_and_empty(void)
{
    EXPECT_ERR("name: a\nruntime: exec\ndescription: caf\xe9\ncommand: x\n",
               FILE_NAME ":3: ", "not valid UTF-8");
    EXPECT_ERR("name: caf\xc3\xa9\n", FILE_NAME ":1: name: ", "is not a valid name");
    EXPECT_ERR("", FILE_NAME ":1: ", "the manifest is empty");
    EXPECT_ERR("# nothing here\n\n", FILE_NAME ":1: ", "the manifest is empty");
    EXPECT_ERR("- a\n- b\n", FILE_NAME ":1: ", "a manifest is a mapping of fields");
    EXPECT_ERR("just text\n", FILE_NAME ":1: ", "not a string");
    EXPECT_ERR("name: a\nruntime: exec\ncommand: x\n---\nname: b\n",
               FILE_NAME ":5: ", "one YAML document");
    /* a NUL inside the text is a control character to libyaml */
    EXPECT_ERR_N("name: a\0\n", 9, FILE_NAME ":1:8: ", "control characters");
    /* an escaped NUL inside a quoted string */
    EXPECT_ERR("name: \"a\\0b\"\nruntime: exec\ncommand: x\n",
               FILE_NAME ":1: name: ", "NUL character");
    char *big = calloc(1, 2u << 20);
    memset(big, '#', (2u << 20) - 1);
    EXPECT_ERR(big, FILE_NAME ": ", "larger than 1024 KiB");
    free(big);
}

static void test_err_types(void)
{
    EXPECT_ERR("name: [a]\n", FILE_NAME ":1: name: ", "expected a string, got a list");
    EXPECT_ERR("name: {a: b}\n", FILE_NAME ":1: name: ", "expected a string, got a mapping");
    EXPECT_ERR("name: ~\n", FILE_NAME ":1: name: ", "has no value");
    EXPECT_ERR("name: Hello\nruntime: exec\ncommand: x\n",
               FILE_NAME ":1: name: ", "'Hello' is not a valid name");
    EXPECT_ERR("name: a\nruntime: c\nsources: main.c\n",
               FILE_NAME ":3: sources: ", "expected a list, got a string");
    EXPECT_ERR("name: a\nruntime: c\nsources:\n  - a.c\n  - [b.c]\n",
               FILE_NAME ":5: sources: ", "expected a string, got a list");
    EXPECT_ERR("name: a\nruntime: exec\ncommand: x\nenv: [A]\n",
               FILE_NAME ":4: env: ", "expected a mapping");
    EXPECT_ERR("name: a\nruntime: exec\ncommand: x\nresources: kv:x\n",
               FILE_NAME ":4: resources: ", "expected a mapping");
    EXPECT_ERR("name: a\nruntime: c\nsources: [a.c]\nbuild: [m]\n",
               FILE_NAME ":4: build: ", "expected a mapping");
    EXPECT_ERR("name: a\nruntime: exec\ncommand: {a: b}\n",
               FILE_NAME ":3: command: ", "expected a string, got a mapping");
    EXPECT_ERR("? [a]\n: b\n", FILE_NAME ":1: ", "keys must be strings");
}

static void test_err_env(void)
{
    const char *head = "name: a\nruntime: exec\ncommand: x\nenv:\n";
    char y[256];
    snprintf(y, sizeof(y), "%s  OK: 1\n  1BAD: x\n", head);
    EXPECT_ERR(y, FILE_NAME ":6: env: ", "'1BAD' is not a variable name");
    snprintf(y, sizeof(y), "%s  A-B: x\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: env: ", "'A-B' is not a variable name");
    snprintf(y, sizeof(y), "%s  MXU_TOKEN: x\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: env: ", "'MXU_TOKEN' is reserved");
    snprintf(y, sizeof(y), "%s  A:\n    - x\n", head);
    EXPECT_ERR(y, FILE_NAME ":6: env.A: ", "expected a string value, got a list");
    snprintf(y, sizeof(y), "%s  A:\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: env.A: ", "has no value");
}

static void test_resource_limits(void)
{
    mxu_manifest *m = parse_ok("name: a\nruntime: exec\ncommand: x\nresources:\n"
                               "  db: {uri: \"kv:db\", access: read}\n"
                               "  q: {uri: \"queue:q\", access: publish}\n"
                               "  big: {uri: \"kv:big\", access: write, max_value: 4Mi,"
                               " ops_per_second: 50}\n");
    CHECK_EQ_U64(m->resources[0].max_value, 1u << 20);
    CHECK_EQ_INT(m->resources[0].ops_per_second, 0);
    CHECK_EQ_U64(m->resources[1].max_value, 256u << 10);
    CHECK_EQ_U64(m->resources[2].max_value, 4u << 20);
    CHECK_EQ_INT(m->resources[2].ops_per_second, 50);
    /* Limits survive storage. */
    json_t *j = mxu_manifest_to_json(m);
    mxu_manifest *back = NULL;
    mxu_err err;
    CHECK_EQ_INT(mxu_manifest_from_json(j, &back, &err), 0);
    CHECK_EQ_U64(back->resources[2].max_value, 4u << 20);
    CHECK_EQ_INT(back->resources[2].ops_per_second, 50);
    json_decref(j);
    mxu_manifest_free(back);
    mxu_manifest_free(m);
    EXPECT_ERR("name: a\nruntime: exec\ncommand: x\nresources:\n"
               "  db: {uri: \"kv:db\", access: read, max_value: lots}\n",
               FILE_NAME ":5: resources.db.max_value: ", "is not a size");
    EXPECT_ERR("name: a\nruntime: exec\ncommand: x\nresources:\n"
               "  db: {uri: \"kv:db\", access: read, ops_per_second: -3}\n",
               FILE_NAME ":5: resources.db.ops_per_second: ", "negative");
}

static void test_err_resources(void)
{
    const char *head = "name: a\nruntime: exec\ncommand: x\nresources:\n";
    char y[512];
    snprintf(y, sizeof(y), "%s  db: {uri: \"sql:db\", access: read}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.db.uri: ", "unknown resource kind");
    snprintf(y, sizeof(y), "%s  db: {uri: orders, access: read}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.db.uri: ", "is not a resource URI");
    snprintf(y, sizeof(y), "%s  db:\n    uri: \"kv:Orders\"\n    access: read\n", head);
    EXPECT_ERR(y, FILE_NAME ":6: resources.db.uri: ", "'Orders' is not a valid name");
    snprintf(y, sizeof(y), "%s  db:\n    uri: kv:orders\n", head);
    EXPECT_ERR(y, FILE_NAME ":6: resources.db.access: ",
               "is required for kv resources (read, write or read-write)");
    snprintf(y, sizeof(y), "%s  q:\n    uri: queue:jobs\n    access: read\n", head);
    EXPECT_ERR(y, FILE_NAME ":7: resources.q.access: ",
               "'read' is not an access mode for queue resources (use publish, consume or "
               "publish-consume)");
    snprintf(y, sizeof(y), "%s  b: {uri: \"blob:x\", access: publish}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.b.access: ", "not an access mode for blob");
    snprintf(y, sizeof(y), "%s  s: {uri: \"svc:x\", access: read}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.s.access: ", "use invoke");
    snprintf(y, sizeof(y), "%s  s: {uri: \"svc:x@\"}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.s.uri: ", "name@version or name@alias");
    snprintf(y, sizeof(y), "%s  s: {uri: \"svc:x@0\"}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.s.uri: ", "name@version");
    snprintf(y, sizeof(y), "%s  s: {uri: \"svc:x@Prod\"}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.s.uri: ", "name@alias");
    /* svc:TENANT/NAME[@REF]: another tenant's function */
    snprintf(y, sizeof(y), "%s  s: {uri: \"svc:Acme/x\"}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.s.uri: ", "before '/' comes a tenant name");
    snprintf(y, sizeof(y), "%s  s: {uri: \"svc:/x\"}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.s.uri: ", "before '/' comes a tenant name");
    snprintf(y, sizeof(y), "%s  s: {uri: \"svc:acme/\"}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.s.uri: ", "optionally after TENANT/");
    snprintf(y, sizeof(y), "%s  s: {uri: \"svc:acme/x/y\"}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.s.uri: ", "optionally after TENANT/");
    snprintf(y, sizeof(y), "%s  s: {uri: \"svc:acme/x@Prod\"}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.s.uri: ", "name@alias");
    {
        mxu_manifest *m = NULL;
        mxu_err err;
        snprintf(y, sizeof(y), "%s  s: {uri: \"svc:acme-2/x-y@prod\"}\n", head);
        CHECK_EQ_INT(mxu_manifest_parse(y, strlen(y), FILE_NAME, &m, &err), 0);
        CHECK_STR(m->resources[0].kind, "svc");
        CHECK_STR(m->resources[0].target, "acme-2/x-y@prod");
        mxu_manifest_free(m);
    }
    snprintf(y, sizeof(y), "%s  Orders: {uri: \"kv:orders\", access: read}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources: ", "'Orders' is not a valid local name");
    snprintf(y, sizeof(y), "%s  db:\n    access: read\n", head);
    EXPECT_ERR(y, FILE_NAME ":6: resources.db: ", "uri is missing");
    snprintf(y, sizeof(y), "%s  db: kv:db\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.db: ", "expected a mapping like {uri: kv:orders");
    snprintf(y, sizeof(y), "%s  db: {uri: [kv:db], access: read}\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: resources.db.uri: ", "expected a string, got a list");
}

static void test_err_paths_and_flags(void)
{
    const char *head = "name: a\nruntime: c\n";
    char y[256];
    snprintf(y, sizeof(y), "%ssources:\n  - ok.c\n  - ../x.c\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: sources: ", "'../x.c' must not contain '.' or '..'");
    snprintf(y, sizeof(y), "%ssources: [/etc/passwd]\n", head);
    EXPECT_ERR(y, FILE_NAME ":3: sources: ", "not an absolute one");
    snprintf(y, sizeof(y), "%ssources: [.mxu/instance.c]\n", head);
    EXPECT_ERR(y, FILE_NAME ":3: sources: ", "reserved for build output");
    snprintf(y, sizeof(y), "%ssources: [a//b.c]\n", head);
    EXPECT_ERR(y, FILE_NAME ":3: sources: ", "empty path component");
    snprintf(y, sizeof(y), "%ssources: [-o.c]\n", head);
    EXPECT_ERR(y, FILE_NAME ":3: sources: ", "read as a flag");
    snprintf(y, sizeof(y), "%ssources: [a.c]\nbuild:\n  cflags: [-O2, -o, x]\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: build.cflags: ", "'-o' sets the output file");
    snprintf(y, sizeof(y), "%ssources: [a.c]\nbuild:\n  cflags: [extra.c]\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: build.cflags: ", "is not a compiler flag");
    snprintf(y, sizeof(y), "%ssources: [a.c]\nbuild:\n  libs: [-lm]\n", head);
    EXPECT_ERR(y, FILE_NAME ":5: build.libs: ", "'-lm' is not a library name (write m for -lm)");
    EXPECT_ERR("name: a\nruntime: exec\ncommand: ../run\n",
               FILE_NAME ":3: command: ", "'../run' must not contain");
    mxu_manifest_free(parse_ok("name: a\nruntime: exec\ncommand: ./bin/run\n"));
}

/* to_json → from_json → to_json gives the same JSON and the same values. */
static void test_json_roundtrip(void)
{
    mxu_manifest *m = parse_ok(full_c);
    json_t *j = mxu_manifest_to_json(m);
    CHECK_STR(json_string_value(json_object_get(j, "runtime")), "c");
    CHECK_EQ_U64(json_integer_value(json_object_get(j, "memory_bytes")), 256ull << 20);
    CHECK_EQ_U64(json_integer_value(json_object_get(j, "timeout_ms")), 5000);
    CHECK_STR(json_string_value(json_object_get(json_object_get(j, "env"), "LEVEL")), "3");
    json_t *res = json_object_get(json_object_get(j, "resources"), "resize");
    CHECK_STR(json_string_value(json_object_get(res, "access")), "invoke");
    CHECK_STR(json_string_value(json_object_get(res, "kind")), "svc");
    mxu_manifest *m2 = NULL;
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_manifest_from_json(j, &m2, &err), 0);
    json_t *j2 = mxu_manifest_to_json(m2);
    CHECK(json_equal(j, j2));
    /* env order survives (the spec says file order) */
    CHECK_STR(m2->env_names[0], "MODE");
    CHECK_STR(m2->env_names[2], "_x");
    CHECK_STR(m2->resources[5].name, "plain");
    char *s1 = json_dumps(j, JSON_COMPACT), *s2 = json_dumps(j2, JSON_COMPACT);
    CHECK_STR(s1, s2);
    free(s1);
    free(s2);
    json_decref(j);
    json_decref(j2);
    mxu_manifest_free(m);
    mxu_manifest_free(m2);

    m = parse_ok("name: e\nruntime: exec\ncommand: [/bin/sh, -c, \"echo hi\"]\n");
    j = mxu_manifest_to_json(m);
    CHECK_EQ_INT(mxu_manifest_from_json(j, &m2, &err), 0);
    CHECK_EQ_INT(m2->runtime, MXU_RUNTIME_EXEC);
    CHECK_EQ_INT(m2->ncommand, 3);
    CHECK_STR(m2->command[2], "echo hi");
    json_decref(j);
    mxu_manifest_free(m);
    mxu_manifest_free(m2);
}

static void from_json_err(const char *text, const char *sub)
{
    json_t *j = json_loads(text, 0, NULL);
    CHECK(j != NULL);
    mxu_manifest *m = NULL;
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_manifest_from_json(j, &m, &err), -1);
    CHECK(m == NULL);
    CHECK_EQ_INT(err.code, EINVAL);
    CHECK_CONTAINS(err.msg, "manifest JSON: ");
    CHECK_CONTAINS(err.msg, sub);
    json_decref(j);
}

static void test_json_errors(void)
{
    from_json_err("[]", "must be a JSON object");
    from_json_err("{\"name\": \"a\", \"runtime\": \"exec\", \"command\": [\"x\"], \"color\": 1}",
                  "unknown field 'color'");
    from_json_err("{\"name\": \"a\", \"runtime\": \"exec\"}", "command: required");
    from_json_err("{\"name\": \"a\", \"runtime\": \"exec\", \"command\": [\"x\"], "
                  "\"concurrency\": 3}",
                  "concurrency: must be 1");
    from_json_err("{\"name\": \"a\", \"runtime\": \"exec\", \"command\": [\"x\"], "
                  "\"memory_bytes\": -5}",
                  "memory_bytes: expected a whole number");
    from_json_err("{\"name\": \"a\", \"runtime\": \"c\", \"sources\": [\"../a.c\"]}",
                  "sources: '../a.c'");
    from_json_err("{\"name\": \"A\", \"runtime\": \"c\", \"sources\": [\"a.c\"]}",
                  "name: 'A' is not a valid name");
    from_json_err("{\"name\": \"a\", \"runtime\": \"exec\", \"command\": [\"x\"], "
                  "\"resources\": {\"db\": {\"uri\": \"kv:db\", \"access\": \"read\", "
                  "\"kind\": \"blob\"}}}",
                  "inconsistent");
    from_json_err("{\"name\": \"a\", \"runtime\": \"exec\", \"command\": [\"x\"], "
                  "\"env\": {\"MXU_A\": \"1\"}}",
                  "reserved");
}

/* ---- services (kind: service) ---- */

static const char checkout[] = "kind: service\n"                         /* 1 */
                               "name: checkout\n"                        /* 2 */
                               "timeout: 10s\n"                          /* 3 */
                               "public: true\n"                          /* 4 */
                               "on_error: oops\n"                        /* 5 */
                               "steps:\n"                                /* 6 */
                               "  - validate@2\n"                        /* 7 */
                               "  - id: price\n"                         /* 8 */
                               "    routes:\n"                           /* 9 */
                               "      - {call: pricing@1, weight: 90}\n" /* 10 */
                               "      - {header: X-Beta, equals: \"1\", call: pricing@beta}\n"
                               "      - {call: pricing@2, weight: 10}\n"            /* 12 */
                               "    timeout: 200ms\n"                               /* 13 */
                               "    retries: 2\n"                                   /* 14 */
                               "    retry_on: [error, 429]\n"                       /* 15 */
                               "    breaker: {failures: 5, open_for: 1m}\n"         /* 16 */
                               "    fallback: pricing-static\n"                     /* 17 */
                               "    rate: 100/s\n"                                  /* 18 */
                               "  - parallel:\n"                                    /* 19 */
                               "      - stock\n"                                    /* 20 */
                               "      - id: ship\n"                                 /* 21 */
                               "        steps: [carrier, json-pick, json-pick]\n"   /* 22 */
                               "    join: object\n"                                 /* 23 */
                               "  - switch: json /customer/tier\n"                  /* 24 */
                               "    cases:\n"                                       /* 25 */
                               "      - {when: gold, steps: [premium]}\n"           /* 26 */
                               "      - {when: [silver, 3], steps: []}\n"           /* 27 */
                               "    default: [basic]\n"                             /* 28 */
                               "  - switch: status\n"                               /* 29 */
                               "    cases: [{when: [404, 5xx], steps: [stock]}]\n"; /* 30 */

static void test_service_full(void)
{
    mxu_manifest *m = parse_ok(checkout);
    CHECK(m->service != NULL);
    CHECK_STR(m->name, "checkout");
    CHECK_EQ_U64(m->timeout_ms, 10000);
    CHECK(m->is_public);
    const mxu_service *s = m->service;
    CHECK_STR(s->on_error->text, "oops");
    CHECK_EQ_INT(s->steps.n, 5);
    /* every step numbered, nested ones too: 5 top + 2 branches + 3 in the
     * group + premium + basic + stock */
    CHECK_EQ_INT(s->nsteps, 13);
    const mxu_step *v = s->steps.v;
    CHECK_EQ_INT(v[0].kind, MXU_STEP_CALL);
    CHECK_STR(v[0].id, "validate");
    CHECK_STR(v[0].call.routes[0].to.name, "validate");
    CHECK_STR(v[0].call.routes[0].to.ref, "2");
    CHECK_EQ_INT(v[0].call.retries, 0);
    /* header routes come first; names lowercase */
    const mxu_edge *e = &v[1].call;
    CHECK_STR(v[1].id, "price");
    CHECK_EQ_INT(e->nroutes, 3);
    CHECK_STR(e->routes[0].header, "x-beta");
    CHECK_STR(e->routes[0].equals, "1");
    CHECK_STR(e->routes[0].to.ref, "beta");
    CHECK_EQ_INT(e->routes[1].weight, 90);
    CHECK(e->routes[1].header == NULL);
    CHECK_EQ_INT(e->routes[2].weight, 10);
    CHECK_EQ_U64(e->timeout_ms, 200);
    CHECK_EQ_INT(e->retries, 2);
    CHECK_EQ_INT(e->retry_on, MXU_RETRY_ERROR | MXU_RETRY_429);
    CHECK_EQ_U64(e->backoff_ms, 50);
    CHECK_EQ_U64(e->backoff_max_ms, 2000);
    CHECK_EQ_INT(e->breaker_failures, 5);
    CHECK_EQ_U64(e->breaker_open_ms, 60000);
    CHECK_STR(e->fallback->text, "pricing-static");
    CHECK_EQ_U64(e->rate, 100);
    CHECK_EQ_U64(e->rate_period_ms, 1000);
    CHECK_EQ_INT(v[2].kind, MXU_STEP_PARALLEL);
    CHECK_STR(v[2].id, "parallel");
    CHECK_EQ_INT(v[2].join, MXU_JOIN_OBJECT);
    CHECK_EQ_INT(v[2].branches.n, 2);
    CHECK_STR(v[2].branches.v[0].id, "stock");
    CHECK_EQ_INT(v[2].branches.v[1].kind, MXU_STEP_GROUP);
    /* the same function twice: the second one's id gets -2 */
    CHECK_STR(v[2].branches.v[1].steps.v[1].id, "json-pick");
    CHECK_STR(v[2].branches.v[1].steps.v[2].id, "json-pick-2");
    CHECK_EQ_INT(v[3].kind, MXU_STEP_SWITCH);
    CHECK_EQ_INT(v[3].on, MXU_SWITCH_JSON);
    CHECK_STR(v[3].on_arg, "/customer/tier");
    CHECK_EQ_INT(v[3].ncases, 2);
    CHECK_STR(v[3].cases[1].equals[1], "3");
    CHECK_EQ_INT(v[3].cases[1].steps.n, 0);
    CHECK(v[3].has_default);
    CHECK_STR(v[3].otherwise.v[0].id, "basic");
    CHECK_EQ_INT(v[4].on, MXU_SWITCH_STATUS);
    CHECK_EQ_INT(v[4].cases[0].status[0][0], 404);
    CHECK_EQ_INT(v[4].cases[0].status[1][0], 500);
    CHECK_EQ_INT(v[4].cases[0].status[1][1], 599);
    CHECK_STR(v[4].cases[0].steps.v[0].id, "stock-2");
    /* indexes: depth first, unique, below nsteps */
    CHECK_EQ_INT(v[0].index, 0);
    CHECK_EQ_INT(v[1].index, 1);
    CHECK_EQ_INT(v[2].index, 2);
    CHECK_EQ_INT(v[2].branches.v[0].index, 3);
    CHECK_EQ_INT(v[4].cases[0].steps.v[0].index, 12);

    /* Stored as its text, loaded back the same. */
    json_t *j = mxu_manifest_to_json(m);
    CHECK_STR(json_string_value(json_object_get(j, "kind")), "service");
    CHECK_STR(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "steps"), 1), "id")),
        "price");
    mxu_manifest *m2 = NULL;
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_manifest_from_json(j, &m2, &err), 0);
    json_t *j2 = mxu_manifest_to_json(m2);
    CHECK(json_equal(j, j2));
    json_decref(j);
    json_decref(j2);
    mxu_manifest_free(m);
    mxu_manifest_free(m2);

    /* A function's input/output types. */
    m = parse_ok("name: p\nruntime: exec\ncommand: ./p\ninput: json\noutput: binary\n");
    CHECK_EQ_INT(m->input, MXU_CT_JSON);
    CHECK_EQ_INT(m->output, MXU_CT_BINARY);
    CHECK(m->service == NULL);
    j = mxu_manifest_to_json(m);
    CHECK_EQ_INT(mxu_manifest_from_json(j, &m2, &err), 0);
    CHECK_EQ_INT(m2->output, MXU_CT_BINARY);
    json_decref(j);
    mxu_manifest_free(m);
    mxu_manifest_free(m2);
}

#define SVC "kind: service\nname: s\n"
static void test_service_errors(void)
{
    EXPECT_ERR(SVC, FILE_NAME ":1: steps: ", "required field is missing");
    EXPECT_ERR(SVC "steps: []\n", FILE_NAME ":3: steps: ", "at least one step");
    EXPECT_ERR(SVC "runtime: c\nsteps: [a]\n", FILE_NAME ":3: runtime: ", "does not apply");
    EXPECT_ERR(SVC "memory: 64Mi\nsteps: [a]\n", FILE_NAME ":3: memory: ", "does not apply");
    EXPECT_ERR("name: f\nruntime: exec\ncommand: ./x\nsteps: [a]\n",
               FILE_NAME ":4: steps: ", "add kind: service");
    EXPECT_ERR("kind: servce\nname: s\n", FILE_NAME ":1: kind: ", "not a kind");
    EXPECT_ERR(SVC "steps: [Bad]\n", FILE_NAME ":3: steps[0]: ", "not a function reference");
    EXPECT_ERR(SVC "steps: [acme/x]\n", FILE_NAME ":3: steps[0]: ", "own tenant");
    EXPECT_ERR(SVC "steps: [x@0]\n", FILE_NAME ":3: steps[0]: ", "version");
    EXPECT_ERR(SVC "steps:\n  - {call: a, retries: 11}\n",
               FILE_NAME ":4: steps[0].retries: ", "above the maximum of 10");
    EXPECT_ERR(SVC "steps:\n  - {call: a, retires: 1}\n",
               FILE_NAME ":4: steps[0]: ", "did you mean 'retries'?");
    EXPECT_ERR(SVC "steps:\n  - {call: a, parallel: [b]}\n",
               FILE_NAME ":4: steps[0]: ", "has both call and parallel");
    EXPECT_ERR(SVC "steps:\n  - {id: x}\n", FILE_NAME ":4: steps[0]: ", "needs one of call");
    EXPECT_ERR(SVC "steps:\n  - {parallel: [a], retries: 1}\n",
               FILE_NAME ":4: steps[0]: ", "'retries' does not apply to a parallel step");
    EXPECT_ERR(SVC "steps:\n  - {call: a, join: array}\n",
               FILE_NAME ":4: steps[0]: ", "join goes with parallel");
    EXPECT_ERR(SVC "steps:\n  - {parallel: [a], join: merge}\n",
               FILE_NAME ":4: steps[0].join: ", "not a join");
    EXPECT_ERR(SVC "steps:\n  - {parallel: []}\n",
               FILE_NAME ":4: steps[0].parallel: ", "at least one branch");
    EXPECT_ERR(SVC "steps:\n  - routes: [{header: x, equals: \"1\", call: b}]\n",
               FILE_NAME ":4: steps[0].routes: ", "at least one weighted route");
    EXPECT_ERR(SVC "steps:\n  - routes: [{call: b}]\n",
               FILE_NAME ":4: steps[0].routes[0]: ", "needs weight");
    EXPECT_ERR(SVC "steps:\n  - routes: [{call: b, weight: 0}]\n",
               FILE_NAME ":4: steps[0].routes[0].weight: ", "below the minimum of 1");
    EXPECT_ERR(SVC "steps:\n  - routes: [{call: b, weight: 1, header: x, equals: y}]\n",
               FILE_NAME ":4: steps[0].routes[0]: ", "a header route has no weight");
    EXPECT_ERR(SVC "steps:\n  - routes: [{call: b, weight: 1}, {header: \"a b\", equals: y, "
                   "call: c}]\n",
               FILE_NAME ":4: steps[0].routes[1].header: ", "not a header name");
    EXPECT_ERR(SVC "steps:\n  - {call: a, retry_on: [timeout]}\n",
               FILE_NAME ":4: steps[0].retry_on: ", "not a failure kind");
    EXPECT_ERR(SVC "steps:\n  - {call: a, breaker: {open_for: 1s}}\n",
               FILE_NAME ":4: steps[0].breaker: ", "needs failures");
    EXPECT_ERR(SVC "steps:\n  - {call: a, backoff: 1s, backoff_max: 10ms}\n",
               FILE_NAME ":4: steps[0].backoff_max: ", "shorter than backoff");
    EXPECT_ERR(SVC "steps:\n  - {switch: json tier, cases: []}\n",
               FILE_NAME ":4: steps[0].switch: ", "not a JSON pointer");
    EXPECT_ERR(SVC "steps:\n  - {switch: color, cases: []}\n",
               FILE_NAME ":4: steps[0].switch: ", "write json /field, header NAME or status");
    EXPECT_ERR(SVC "steps:\n  - {switch: status}\n", FILE_NAME ":4: steps[0]: ", "needs cases");
    EXPECT_ERR(SVC "steps:\n  - {switch: status, cases: [{when: 700, steps: []}]}\n",
               FILE_NAME ":4: steps[0].cases[0].when: ", "not a status");
    EXPECT_ERR(SVC "steps:\n  - {switch: status, cases: [{steps: []}]}\n",
               FILE_NAME ":4: steps[0].cases[0]: ", "needs when");
    EXPECT_ERR(SVC "steps:\n  - {id: a, call: x}\n  - {id: a, call: y}\n",
               FILE_NAME ":5: id: ", "already the id of the step on line 4");
    EXPECT_ERR(SVC "timeout: 20m\nsteps: [a]\n", FILE_NAME ":3: timeout: ", "above the maximum");
    EXPECT_ERR("name: f\nruntime: exec\ncommand: ./x\ninput: xml\n",
               FILE_NAME ":4: input: ", "not a content type");
}

MXU_TESTS(TEST(test_service_full), TEST(test_service_errors), TEST(test_full_c),
          TEST(test_defaults_exec), TEST(test_command_forms), TEST(test_sizes_and_durations),
          TEST(test_anchors_and_comments), TEST(test_err_memory),
          TEST(test_err_durations_and_numbers), TEST(test_err_required),
          TEST(test_err_runtime_rules), TEST(test_err_executor), TEST(test_err_unknown_field),
          TEST(test_err_duplicate_key), TEST(test_err_syntax), TEST(test_err_encoding_and_empty),
          TEST(test_err_types), TEST(test_err_env), TEST(test_resource_limits),
          TEST(test_err_resources), TEST(test_err_paths_and_flags), TEST(test_json_roundtrip),
          TEST(test_json_errors))
