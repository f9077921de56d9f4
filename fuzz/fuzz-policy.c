/*
 * libFuzzer target for the policy document parser (a tenant's admin sends
 * these documents to the node): arbitrary bytes go to mxu_poldoc_parse, as
 * the node's document and as a tenant's, which must either fail with EINVAL
 * and a one-line, valid UTF-8 message, or return rules whose canonical form
 * parses back to the same canonical form. The diff of the input against
 * the canonical form must not crash either. Anything else aborts.
 */
#include "policy/policy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz-policy: %s: %s\n", what, detail ? detail : "");
    abort();
}

static void one(const char *text, size_t size, const char *tenant)
{
    mxu_poldoc *d = NULL;
    mxu_err err = {0};
    if (mxu_poldoc_parse(text, size, "fuzz/policy.yaml", tenant, &d, &err) < 0) {
        if (d != NULL)
            die("parse failed but returned a document", err.msg);
        if (err.code != EINVAL)
            die("parse failed without EINVAL", err.msg);
        size_t n = strlen(err.msg);
        if (n == 0 || strchr(err.msg, '\n') || !mxu_utf8_valid(err.msg, n))
            die("bad error message", err.msg);
        return;
    }
    char *c1 = mxu_poldoc_canonical(d);
    mxu_poldoc *d2 = NULL;
    if (mxu_poldoc_parse(c1, strlen(c1), "canonical", tenant, &d2, &err) < 0)
        die("the canonical form does not parse", err.msg);
    char *c2 = mxu_poldoc_canonical(d2);
    if (strcmp(c1, c2) != 0 || mxu_poldoc_nrules(d) != mxu_poldoc_nrules(d2))
        die("the canonical form changed on a round trip", c1);
    if (memchr(text, '\0', size) == NULL) {
        char *in = mxu_strndup(text, size);
        char *diff = mxu_text_diff(in, c1, "in", "canonical");
        free(diff);
        free(in);
    }
    free(c1);
    free(c2);
    mxu_poldoc_free(d);
    mxu_poldoc_free(d2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one((const char *)data, size, NULL);
    one((const char *)data, size, "acme");
    return 0;
}
