/*
 * json-pick — a catalogue block (docs/catalog.md): answers with a new JSON
 * object made of selected fields of the JSON request body, each found by a
 * JSON pointer (RFC 6901) and stored under a name of your choice.
 *
 *     FIELDS="id=/order/id,/customer/email,/contact/phone=/customer/phone"
 *     {"order":{"id":7},"customer":{"email":"a@b","phone":"1"}}
 *  -> {"id":7,"email":"a@b","contact":{"phone":"1"}}
 *
 * A field is `POINTER` (stored under the pointer's last token) or
 * `OUT=POINTER`, where OUT is a plain name or itself a pointer ("/a/b": nested
 * objects are made as needed). FIELDS may also be JSON: an array of pointers
 * or an object {"OUT": "POINTER"}, for names that hold ',' or '='.
 *
 * JSON goes through jansson (the project's JSON library; linked with
 * `libs: [jansson]`), never by hand: the body is untrusted.
 */
#include <mxu/fn.h>

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 256

/* Resolve an RFC 6901 pointer: "" is the whole document; "~1" is '/', "~0"
 * is '~'; array indexes are decimal without leading zeros. NULL when absent. */
static json_t *pointer_get(json_t *doc, const char *ptr)
{
    if (*ptr == '\0')
        return doc;
    if (*ptr != '/')
        return NULL;
    json_t *cur = doc;
    char tok[1024];
    while (*ptr == '/' && cur) {
        ptr++;
        size_t n = 0;
        for (; *ptr && *ptr != '/'; ptr++) {
            char c = *ptr;
            if (c == '~') {
                if (ptr[1] == '0')
                    c = '~';
                else if (ptr[1] == '1')
                    c = '/';
                else
                    return NULL;
                ptr++;
            }
            if (n + 1 >= sizeof(tok))
                return NULL;
            tok[n++] = c;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            if (n == 0 || n > 9 || (n > 1 && tok[0] == '0') || strspn(tok, "0123456789") != n)
                return NULL;
            cur = json_array_get(cur, strtoul(tok, NULL, 10));
        } else {
            return NULL;
        }
    }
    return cur;
}

/* Store `val` at pointer `ptr` of object `out`, making objects on the way.
 * Returns -1 when a step is already taken by something that is not an object.
 *
 * An object already on the way may be a value picked from the body (OUT
 * "/x" for POINTER "/order", then OUT "/x/id"): it is shared with the body,
 * so it is replaced by a shallow copy before anything goes into it. Writing
 * into it would change the body, and later fields would read what earlier
 * ones put there, or, when a field picks that very object, make a cycle
 * that jansson can neither print nor free. */
static int pointer_set(json_t *out, const char *ptr, json_t *val)
{
    json_t *cur = out;
    char tok[1024];
    while (*ptr == '/') {
        ptr++;
        size_t n = 0;
        for (; *ptr && *ptr != '/'; ptr++) {
            char c = *ptr;
            if (c == '~' && (ptr[1] == '0' || ptr[1] == '1'))
                c = *++ptr == '0' ? '~' : '/';
            if (n + 1 >= sizeof(tok))
                return -1;
            tok[n++] = c;
        }
        tok[n] = '\0';
        if (*ptr == '\0')
            return json_object_set(cur, tok, val);
        json_t *next = json_object_get(cur, tok);
        if (next && !json_is_object(next))
            return -1;
        next = next ? json_copy(next) : json_object();
        if (json_object_set_new(cur, tok, next) < 0)
            return -1;
        cur = next;
    }
    return -1;
}

typedef struct field {
    char *out; /* a name, or a pointer when it starts with '/' */
    char *ptr;
} field;

typedef struct spec {
    field f[MAX_FIELDS];
    size_t n;
} spec;

static void spec_free(spec *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->f[i].out);
        free(s->f[i].ptr);
    }
    s->n = 0;
}

/* The output name of a bare pointer: its last token, unescaped. */
static char *last_token(const char *ptr)
{
    const char *slash = strrchr(ptr, '/');
    const char *t = slash ? slash + 1 : ptr;
    size_t n = strlen(t);
    char *s = malloc(n + 1), *o = s;
    if (!s)
        return NULL;
    for (; *t; t++) {
        if (*t == '~' && (t[1] == '0' || t[1] == '1'))
            *o++ = *++t == '0' ? '~' : '/';
        else
            *o++ = *t;
    }
    *o = '\0';
    return s;
}

static int add(spec *s, const char *out, size_t outlen, const char *ptr, size_t ptrlen, char *err,
               size_t errlen)
{
    if (s->n == MAX_FIELDS) {
        snprintf(err, errlen, "more than %d fields", MAX_FIELDS);
        return -1;
    }
    if (ptrlen > 0 && ptr[0] != '/') {
        snprintf(err, errlen, "'%.*s' is not a JSON pointer (it must start with '/')", (int)ptrlen,
                 ptr);
        return -1;
    }
    field *f = &s->f[s->n];
    f->ptr = strndup(ptr, ptrlen);
    f->out = out ? strndup(out, outlen) : last_token(f->ptr);
    if (!f->ptr || !f->out) {
        free(f->ptr);
        free(f->out);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (f->out[0] == '\0' && f->ptr[0] == '\0') {
        free(f->ptr);
        free(f->out);
        snprintf(err, errlen, "the whole document (\"\") needs an output name: NAME=");
        return -1;
    }
    s->n++;
    return 0;
}

/* Parse FIELDS / ?fields= into `s`. */
static int spec_parse(const char *text, spec *s, char *err, size_t errlen)
{
    while (*text == ' ')
        text++;
    if (*text == '[' || *text == '{') {
        json_error_t je;
        json_t *j = json_loads(text, 0, &je);
        if (!j) {
            snprintf(err, errlen, "fields are not valid JSON: %s", je.text);
            return -1;
        }
        int rc = 0;
        size_t i;
        json_t *v;
        const char *k;
        if (json_is_array(j)) {
            json_array_foreach(j, i, v)
            {
                if (!json_is_string(v)) {
                    snprintf(err, errlen, "fields[%zu] is not a string", i);
                    rc = -1;
                } else if (rc == 0) {
                    rc = add(s, NULL, 0, json_string_value(v), json_string_length(v), err, errlen);
                }
            }
        } else {
            json_object_foreach(j, k, v)
            {
                if (!json_is_string(v)) {
                    snprintf(err, errlen, "fields.%s is not a string", k);
                    rc = -1;
                } else if (rc == 0) {
                    rc = add(s, k, strlen(k), json_string_value(v), json_string_length(v), err,
                             errlen);
                }
            }
        }
        json_decref(j);
        return rc;
    }
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        const char *item = p, *end = p + len;
        while (item < end && *item == ' ')
            item++;
        while (end > item && end[-1] == ' ')
            end--;
        if (end > item) {
            const char *eq = memchr(item, '=', (size_t)(end - item));
            int rc =
                eq ? add(s, item, (size_t)(eq - item), eq + 1, (size_t)(end - eq - 1), err, errlen)
                   : add(s, NULL, 0, item, (size_t)(end - item), err, errlen);
            if (rc < 0)
                return -1;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    if (s->n == 0) {
        snprintf(err, errlen, "no fields to pick");
        return -1;
    }
    return 0;
}

/* Pick from one document into a new object; missing pointers are appended to
 * `missing` (an array) when it is not NULL. Returns NULL on a clash of output
 * names (`clash` says which). */
static json_t *pick(json_t *doc, const spec *s, int missing_null, json_t *missing,
                    const char **clash)
{
    json_t *out = json_object();
    for (size_t i = 0; out && i < s->n; i++) {
        json_t *v = pointer_get(doc, s->f[i].ptr);
        if (!v) {
            if (missing)
                json_array_append_new(missing, json_string(s->f[i].ptr));
            if (!missing_null)
                continue;
            v = json_null();
        }
        int rc = s->f[i].out[0] == '/' ? pointer_set(out, s->f[i].out, v)
                                       : json_object_set(out, s->f[i].out, v);
        if (rc < 0) {
            *clash = s->f[i].out;
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *fields = mxu_req_query_param(req, "fields");
    int from_query = fields && *fields;
    if (!from_query)
        fields = mxu_config("FIELDS");
    if (!fields || !*fields)
        return mxu_res_error(
            res, 500, "not_configured",
            "json-pick has no fields: set FIELDS (mxu catalog deploy json-pick --env "
            "FIELDS=/a,/b) or pass ?fields=");
    const char *missing_mode = mxu_req_query_param(req, "missing");
    if (!missing_mode || !*missing_mode)
        missing_mode = mxu_config("MISSING");
    if (!missing_mode || !*missing_mode)
        missing_mode = "omit";
    int want_null = strcmp(missing_mode, "null") == 0,
        want_error = strcmp(missing_mode, "error") == 0;
    if (!want_null && !want_error && strcmp(missing_mode, "omit") != 0)
        return mxu_res_error(res, 400, "invalid_setting",
                             "missing is '%s'; use omit, null or error", missing_mode);
    const char *each_s = mxu_req_query_param(req, "each");
    if (!each_s || !*each_s)
        each_s = mxu_config("EACH");
    int each = each_s && (strcmp(each_s, "true") == 0 || strcmp(each_s, "1") == 0);

    spec s = {0};
    char err[512];
    if (spec_parse(fields, &s, err, sizeof(err)) < 0) {
        spec_free(&s);
        return from_query ? mxu_res_error(res, 400, "invalid_fields", "?fields=: %s", err)
                          : mxu_res_error(res, 500, "not_configured", "FIELDS: %s", err);
    }
    size_t len;
    const char *body = mxu_req_body(req, &len);
    json_error_t je;
    json_t *doc = json_loadb(body, len, JSON_DECODE_ANY, &je);
    if (!doc) {
        spec_free(&s);
        return mxu_res_error(res, 400, "invalid_json",
                             "the body is not JSON: line %d column %d: %s", je.line, je.column,
                             je.text);
    }
    if (each && !json_is_array(doc)) {
        json_decref(doc);
        spec_free(&s);
        return mxu_res_error(res, 422, "not_an_array",
                             "EACH is set, so the body must be a JSON array");
    }
    json_t *missing = want_error ? json_array() : NULL;
    const char *clash = NULL;
    json_t *out;
    if (each) {
        out = json_array();
        size_t i;
        json_t *el;
        json_array_foreach(doc, i, el)
        {
            json_t *o = pick(el, &s, want_null, missing, &clash);
            if (!o) {
                json_decref(out);
                out = NULL;
                break;
            }
            json_array_append_new(out, o);
        }
    } else {
        out = pick(doc, &s, want_null, missing, &clash);
    }
    int rc = 0;
    if (!out) {
        rc = mxu_res_error(res, from_query ? 400 : 500,
                           from_query ? "invalid_fields" : "not_configured",
                           "output '%s' clashes with another field's output", clash);
    } else if (missing && json_array_size(missing) > 0) {
        json_t *e = json_pack("{s{ssss}sO}", "error", "code", "missing_fields", "message",
                              "fields the body lacks (MISSING=error)", "missing", missing);
        char *text = json_dumps(e, JSON_COMPACT);
        mxu_res_status(res, 422);
        mxu_res_header(res, "Content-Type", "application/json");
        if (text)
            mxu_res_printf(res, "%s\n", text);
        free(text);
        json_decref(e);
    } else {
        char *text = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text) {
            rc = mxu_res_error(res, 500, "no_memory", "the answer did not fit in memory");
        } else {
            mxu_res_header(res, "Content-Type", "application/json");
            mxu_res_printf(res, "%s\n", text);
            free(text);
        }
    }
    json_decref(out);
    json_decref(missing);
    json_decref(doc);
    spec_free(&s);
    return rc;
}
