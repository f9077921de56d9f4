/*
 * libFuzzer target for the manifest parser: arbitrary bytes go to
 * mxu_manifest_parse, which must either fail with EINVAL and a one-line,
 * valid UTF-8 message, or return a manifest that survives a round trip
 * through JSON unchanged (to_json → from_json → to_json gives equal JSON, and
 * from_json accepts everything to_json writes). Crashes, leaks, sanitizer
 * reports and failed round trips all abort.
 */
#include "registry/registry.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz-manifest: %s: %s\n", what, detail ? detail : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mxu_manifest *m = NULL;
    mxu_err err = {0};
    if (mxu_manifest_parse((const char *)data, size, "fuzz/mxu.yaml", &m, &err) < 0) {
        if (m != NULL)
            die("parse failed but returned a manifest", err.msg);
        if (err.code != EINVAL)
            die("parse failed without EINVAL", err.msg);
        size_t n = strlen(err.msg);
        if (n == 0 || strchr(err.msg, '\n') || !mxu_utf8_valid(err.msg, n))
            die("bad error message", err.msg);
        return 0;
    }

    json_t *j1 = mxu_manifest_to_json(m);
    if (j1 == NULL)
        die("to_json returned NULL", m->name);
    mxu_manifest *m2 = NULL;
    if (mxu_manifest_from_json(j1, &m2, &err) < 0)
        die("from_json rejected what to_json wrote", err.msg);
    json_t *j2 = mxu_manifest_to_json(m2);
    if (j2 == NULL || !json_equal(j1, j2)) {
        char *a = json_dumps(j1, JSON_COMPACT);
        fprintf(stderr, "first:  %s\n", a ? a : "(null)");
        free(a);
        die("round trip changed the manifest", m->name);
    }
    /* The stored form is text: it must load back the same, too. */
    char *text = json_dumps(j1, JSON_COMPACT);
    json_t *j3 = text ? json_loads(text, 0, NULL) : NULL;
    if (j3 == NULL || !json_equal(j1, j3))
        die("JSON text did not load back equal", text);
    free(text);
    json_decref(j1);
    json_decref(j2);
    json_decref(j3);
    mxu_manifest_free(m);
    mxu_manifest_free(m2);
    return 0;
}
