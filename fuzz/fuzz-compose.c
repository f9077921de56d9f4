/*
 * libFuzzer target for what the compose engine reads from clients and
 * functions (src/compose/compose-util.c): a `traceparent` header value (any
 * client may send one) and a step's answer searched with a switch's JSON
 * pointer (a function's output is hostile input).
 *
 * Input: the whole input is tried as a traceparent; a valid one must format
 * back to a header that parses to the same fields. Then the input is split
 * at its first newline: a JSON pointer, and a JSON document that the pointer
 * is looked up in; what it names must be part of the document, and the text
 * a switch compares must be NUL-free where the value is not a string.
 */
#include "compose/compose.h"

#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what)
{
    fprintf(stderr, "fuzz-compose: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    mxu_traceparent tp, again;
    if (mxu_traceparent_parse(s, size, &tp) == 0) {
        char out[64];
        mxu_traceparent_format(&tp, out, sizeof(out));
        if (strlen(out) != 55 || mxu_traceparent_parse(out, 55, &again) < 0 ||
            memcmp(&tp, &again, sizeof(tp)) != 0)
            die("a valid traceparent does not format back to itself");
        if (memcmp(out + 3, s + 3, 52) != 0)
            die("the ids changed on the way");
    }
    const char *nl = memchr(s, '\n', size);
    if (nl == NULL)
        return 0;
    char *ptr = mxu_strndup(s, (size_t)(nl - s));
    json_t *doc = json_loadb(nl + 1, size - (size_t)(nl - s) - 1, JSON_DECODE_ANY, NULL);
    json_t *v = mxu_json_pointer(doc, ptr);
    if (v && doc == NULL)
        die("a pointer named something in no document");
    char *text = mxu_json_case_text(v);
    if (text && !json_is_string(v) && strlen(text) == 0)
        die("an empty text for a non-string value");
    free(text);
    json_decref(doc);
    free(ptr);
    return 0;
}
