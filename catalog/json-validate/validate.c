/*
 * json-validate — a catalogue block (docs/catalog.md): checks the JSON body
 * against the schema in SCHEMA, a subset of JSON Schema (draft 2020-12
 * wording), and answers with the body unchanged when it is valid, so that it
 * can stand first in a pipeline; else 422 with every violation (at most
 * MAX_VIOLATIONS), each naming the JSON pointer of the value at fault.
 *
 * Keywords: type, enum, const, properties, required, additionalProperties,
 * items, minItems, maxItems, uniqueItems, minLength, maxLength, pattern
 * (POSIX extended regular expressions, unanchored), minimum, maximum,
 * exclusiveMinimum, exclusiveMaximum, multipleOf. Annotations ($schema, $id,
 * title, description, default, examples, $comment, format) are accepted and
 * ignored. Any other keyword makes the schema refused when the instance
 * starts, rather than silently not enforced: a validator that skips a rule
 * it does not know lets through what its author meant to stop.
 *
 * The schema is parsed and checked once, in mxu_init(); a bad schema does not
 * stop the instance but makes every request answer 500 naming the problem
 * (a deploy-time mistake should be readable by whoever invokes).
 */
#include <mxu/fn.h>

#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VIOLATIONS 100
#define MAX_DEPTH      64

static json_t *schema;           /* NULL when SCHEMA is missing or bad */
static char schema_problem[512]; /* why, for the 500 */
static int output_result;        /* OUTPUT=result */

/* ---- checking the schema itself -------------------------------------------- */

static const char *const type_names[] = {"null",   "boolean", "object", "array",
                                         "number", "integer", "string"};

static int known_type(const char *t)
{
    for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
        if (strcmp(t, type_names[i]) == 0)
            return 1;
    return 0;
}

static int is_count(json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0;
}

/* Check one schema node; `where` names it for messages ("#/properties/a"). */
static int schema_check(json_t *s, const char *where, int depth)
{
    char *p = schema_problem;
    size_t n = sizeof(schema_problem);
    if (depth > MAX_DEPTH)
        return snprintf(p, n, "%s: nested deeper than %d", where, MAX_DEPTH), -1;
    if (json_is_boolean(s))
        return 0; /* true accepts everything, false nothing */
    if (!json_is_object(s))
        return snprintf(p, n, "%s: a schema is an object or a boolean", where), -1;
    const char *k;
    json_t *v;
    char sub[512];
    json_object_foreach(s, k, v)
    {
        if (strcmp(k, "type") == 0) {
            if (json_is_string(v)) {
                if (!known_type(json_string_value(v)))
                    return snprintf(p, n, "%s/type: unknown type '%s'", where,
                                    json_string_value(v)),
                           -1;
            } else if (json_is_array(v) && json_array_size(v) > 0) {
                size_t i;
                json_t *t;
                json_array_foreach(
                    v, i, t) if (!json_is_string(t) ||
                                 !known_type(json_string_value(
                                     t))) return snprintf(p, n, "%s/type/%zu: not a type name",
                                                          where, i),
                    -1;
            } else {
                return snprintf(p, n, "%s/type: a type name or a list of them", where), -1;
            }
        } else if (strcmp(k, "enum") == 0) {
            if (!json_is_array(v))
                return snprintf(p, n, "%s/enum: expected an array", where), -1;
        } else if (strcmp(k, "properties") == 0) {
            if (!json_is_object(v))
                return snprintf(p, n, "%s/properties: expected an object", where), -1;
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv)
            {
                snprintf(sub, sizeof(sub), "%s/properties/%s", where, pk);
                if (schema_check(pv, sub, depth + 1) < 0)
                    return -1;
            }
        } else if (strcmp(k, "required") == 0) {
            size_t i;
            json_t *r;
            if (!json_is_array(v))
                return snprintf(p, n, "%s/required: expected an array of names", where), -1;
            json_array_foreach(v, i,
                               r) if (!json_is_string(r)) return snprintf(p, n,
                                                                          "%s/required/%zu: not a "
                                                                          "string",
                                                                          where, i),
                -1;
        } else if (strcmp(k, "additionalProperties") == 0 || strcmp(k, "items") == 0) {
            snprintf(sub, sizeof(sub), "%s/%s", where, k);
            if (schema_check(v, sub, depth + 1) < 0)
                return -1;
        } else if (strcmp(k, "minItems") == 0 || strcmp(k, "maxItems") == 0 ||
                   strcmp(k, "minLength") == 0 || strcmp(k, "maxLength") == 0) {
            if (!is_count(v))
                return snprintf(p, n, "%s/%s: expected a non-negative integer", where, k), -1;
        } else if (strcmp(k, "uniqueItems") == 0) {
            if (!json_is_boolean(v))
                return snprintf(p, n, "%s/uniqueItems: expected true or false", where), -1;
        } else if (strcmp(k, "minimum") == 0 || strcmp(k, "maximum") == 0 ||
                   strcmp(k, "exclusiveMinimum") == 0 || strcmp(k, "exclusiveMaximum") == 0) {
            if (!json_is_number(v))
                return snprintf(p, n, "%s/%s: expected a number", where, k), -1;
        } else if (strcmp(k, "multipleOf") == 0) {
            if (!json_is_number(v) || json_number_value(v) <= 0)
                return snprintf(p, n, "%s/multipleOf: expected a number > 0", where), -1;
        } else if (strcmp(k, "pattern") == 0) {
            regex_t re;
            if (!json_is_string(v) || regcomp(&re, json_string_value(v), REG_EXTENDED | REG_NOSUB))
                return snprintf(p, n, "%s/pattern: not a POSIX extended regular expression", where),
                       -1;
            regfree(&re);
        } else if (strcmp(k, "const") == 0 || strcmp(k, "$schema") == 0 || strcmp(k, "$id") == 0 ||
                   strcmp(k, "title") == 0 || strcmp(k, "description") == 0 ||
                   strcmp(k, "default") == 0 || strcmp(k, "examples") == 0 ||
                   strcmp(k, "$comment") == 0 || strcmp(k, "format") == 0) {
            /* const is checked when validating; the others are annotations */
        } else {
            return snprintf(p, n,
                            "%s: keyword '%s' is not supported by this block (docs: "
                            "catalog/json-validate/README.md)",
                            where, k),
                   -1;
        }
    }
    return 0;
}

int mxu_init(void)
{
    const char *out = mxu_config("OUTPUT");
    output_result = out && strcmp(out, "result") == 0;
    const char *text = mxu_config("SCHEMA");
    if (!text || !*text) {
        snprintf(schema_problem, sizeof(schema_problem),
                 "json-validate has no schema: set SCHEMA (mxu catalog deploy json-validate "
                 "--env SCHEMA='{\"type\":\"object\"}')");
        return 0;
    }
    json_error_t je;
    schema = json_loads(text, JSON_DECODE_ANY, &je);
    if (!schema) {
        snprintf(schema_problem, sizeof(schema_problem), "SCHEMA is not JSON: column %d: %s",
                 je.column, je.text);
    } else if (schema_check(schema, "SCHEMA#", 0) < 0) {
        json_decref(schema);
        schema = NULL;
    }
    if (!schema)
        mxu_log(MXU_ERROR, "%s", schema_problem);
    return 0;
}

/* ---- validating ------------------------------------------------------------ */

typedef struct ctx {
    json_t *violations;
    char ptr[4096]; /* the JSON pointer of the value being checked */
    size_t len;
    int truncated; /* more than MAX_VIOLATIONS */
} ctx;

static void violation(ctx *c, const char *keyword, const char *fmt, ...) MXU_FN_PRINTF(3, 4);
static void violation(ctx *c, const char *keyword, const char *fmt, ...)
{
    if (json_array_size(c->violations) >= MAX_VIOLATIONS) {
        c->truncated = 1;
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *v = json_pack("{ssssss}", "pointer", c->ptr, "keyword", keyword, "message", msg);
    if (!v) /* a message quoting bytes jansson refuses */
        v = json_pack("{ssssss}", "pointer", c->ptr, "keyword", keyword, "message", keyword);
    json_array_append_new(c->violations, v);
}

/* Append "/token" (escaped per RFC 6901) to the pointer; returns the length
 * to restore. A pointer too long for the buffer ends in "/...", cut before
 * a UTF-8 character that did not fit whole: json_pack refuses a string
 * holding part of one, which would drop the violation. */
static size_t push(ctx *c, const char *tok)
{
    size_t saved = c->len;
    size_t room = sizeof(c->ptr) - 8;
    if (c->len < room)
        c->ptr[c->len++] = '/';
    for (const char *t = tok; *t && c->len < room; t++) {
        if (*t == '~' || *t == '/') {
            c->ptr[c->len++] = '~';
            c->ptr[c->len++] = *t == '~' ? '0' : '1';
        } else {
            c->ptr[c->len++] = *t;
        }
    }
    if (c->len >= room) {
        size_t cut = room, lead = room;
        while (lead > saved && ((unsigned char)c->ptr[lead - 1] & 0xC0) == 0x80)
            lead--;
        if (lead > saved) {
            unsigned char b = (unsigned char)c->ptr[lead - 1];
            size_t want = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
            if (room - (lead - 1) < want)
                cut = lead - 1;
        }
        memcpy(c->ptr + cut, "/...", 4);
        c->len = cut + 4;
    }
    c->ptr[c->len] = '\0';
    return saved;
}

static void pop(ctx *c, size_t saved)
{
    c->len = saved;
    c->ptr[saved] = '\0';
}

static const char *type_of(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    default:
        return "null";
    }
}

static int has_type(json_t *v, const char *t)
{
    const char *actual = type_of(v);
    if (strcmp(t, actual) == 0)
        return 1;
    if (strcmp(t, "number") == 0 && json_is_integer(v))
        return 1;
    /* 1.0 is an integer in JSON Schema */
    if (strcmp(t, "integer") == 0 && json_is_real(v)) {
        double d = json_real_value(v);
        return isfinite(d) && floor(d) == d;
    }
    return 0;
}

/* Characters of a UTF-8 string (jansson has checked that it is UTF-8). */
static size_t utf8_length(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            count++;
    return count;
}

static void validate(ctx *c, json_t *s, json_t *v, int depth);

static void check_object(ctx *c, json_t *s, json_t *v, int depth)
{
    json_t *props = json_object_get(s, "properties");
    json_t *addl = json_object_get(s, "additionalProperties");
    json_t *req = json_object_get(s, "required");
    size_t i;
    json_t *r;
    json_array_foreach(req, i, r) if (!json_object_get(v, json_string_value(r)))
        violation(c, "required", "missing required property '%s'", json_string_value(r));
    const char *k;
    json_t *pv;
    json_object_foreach(v, k, pv)
    {
        json_t *ps = json_object_get(props, k);
        size_t saved = push(c, k);
        if (ps)
            validate(c, ps, pv, depth + 1);
        else if (json_is_false(addl))
            violation(c, "additionalProperties", "property '%s' is not allowed", k);
        else if (json_is_object(addl))
            validate(c, addl, pv, depth + 1);
        pop(c, saved);
    }
}

static void check_array(ctx *c, json_t *s, json_t *v, int depth)
{
    size_t n = json_array_size(v);
    json_t *lim;
    if ((lim = json_object_get(s, "minItems")) && n < (size_t)json_integer_value(lim))
        violation(c, "minItems", "has %zu items, at least %lld required", n,
                  (long long)json_integer_value(lim));
    if ((lim = json_object_get(s, "maxItems")) && n > (size_t)json_integer_value(lim))
        violation(c, "maxItems", "has %zu items, at most %lld allowed", n,
                  (long long)json_integer_value(lim));
    if (json_is_true(json_object_get(s, "uniqueItems"))) {
        /* Quadratic: bounded so that a large body cannot make it slow. */
        for (size_t i = 0; i < n && i < 2000; i++)
            for (size_t j = i + 1; j < n && j < 2000; j++)
                if (json_equal(json_array_get(v, i), json_array_get(v, j))) {
                    violation(c, "uniqueItems", "items %zu and %zu are equal", i, j);
                    i = j = n;
                }
    }
    json_t *items = json_object_get(s, "items");
    if (items) {
        for (size_t i = 0; i < n; i++) {
            char idx[24];
            snprintf(idx, sizeof(idx), "%zu", i);
            size_t saved = push(c, idx);
            validate(c, items, json_array_get(v, i), depth + 1);
            pop(c, saved);
        }
    }
}

static void check_string(ctx *c, json_t *s, json_t *v)
{
    size_t n = utf8_length(json_string_value(v), json_string_length(v));
    json_t *lim;
    if ((lim = json_object_get(s, "minLength")) && n < (size_t)json_integer_value(lim))
        violation(c, "minLength", "is %zu characters, at least %lld required", n,
                  (long long)json_integer_value(lim));
    if ((lim = json_object_get(s, "maxLength")) && n > (size_t)json_integer_value(lim))
        violation(c, "maxLength", "is %zu characters, at most %lld allowed", n,
                  (long long)json_integer_value(lim));
    json_t *pat = json_object_get(s, "pattern");
    if (pat) {
        regex_t re;
        /* Checked in mxu_init; compiled per use (schemas are small). A string
         * with a NUL cannot be matched by regexec: it fails the pattern. */
        if (regcomp(&re, json_string_value(pat), REG_EXTENDED | REG_NOSUB) == 0) {
            if (strlen(json_string_value(v)) != json_string_length(v) ||
                regexec(&re, json_string_value(v), 0, NULL, 0) != 0)
                violation(c, "pattern", "does not match the pattern %s", json_string_value(pat));
            regfree(&re);
        }
    }
}

static void check_number(ctx *c, json_t *s, json_t *v)
{
    double d = json_number_value(v);
    json_t *lim;
    if ((lim = json_object_get(s, "minimum")) && d < json_number_value(lim))
        violation(c, "minimum", "%g is less than the minimum %g", d, json_number_value(lim));
    if ((lim = json_object_get(s, "maximum")) && d > json_number_value(lim))
        violation(c, "maximum", "%g is more than the maximum %g", d, json_number_value(lim));
    if ((lim = json_object_get(s, "exclusiveMinimum")) && d <= json_number_value(lim))
        violation(c, "exclusiveMinimum", "%g is not more than %g", d, json_number_value(lim));
    if ((lim = json_object_get(s, "exclusiveMaximum")) && d >= json_number_value(lim))
        violation(c, "exclusiveMaximum", "%g is not less than %g", d, json_number_value(lim));
    if ((lim = json_object_get(s, "multipleOf"))) {
        double q = d / json_number_value(lim);
        if (!isfinite(q) || fabs(q - nearbyint(q)) > 1e-9 * fmax(1.0, fabs(q)))
            violation(c, "multipleOf", "%g is not a multiple of %g", d, json_number_value(lim));
    }
}

static void validate(ctx *c, json_t *s, json_t *v, int depth)
{
    if (json_is_true(s))
        return;
    if (json_is_false(s)) {
        violation(c, "false", "no value is allowed here");
        return;
    }
    if (depth > MAX_DEPTH)
        return; /* the schema is at most MAX_DEPTH deep, so this is never reached */
    json_t *t = json_object_get(s, "type");
    if (t) {
        int ok = 0;
        if (json_is_string(t)) {
            ok = has_type(v, json_string_value(t));
        } else {
            size_t i;
            json_t *e;
            json_array_foreach(t, i, e) ok = ok || has_type(v, json_string_value(e));
        }
        if (!ok) {
            char *want = json_dumps(t, JSON_COMPACT | JSON_ENCODE_ANY);
            violation(c, "type", "is %s, expected %s", type_of(v), want ? want : "another type");
            free(want);
            return; /* the other keywords would only repeat it */
        }
    }
    json_t *e = json_object_get(s, "enum");
    if (e) {
        int found = 0;
        size_t i;
        json_t *x;
        json_array_foreach(e, i, x) found = found || json_equal(x, v);
        if (!found)
            violation(c, "enum", "is not one of the allowed values");
    }
    json_t *k = json_object_get(s, "const");
    if (k && !json_equal(k, v))
        violation(c, "const", "is not the required value");
    if (json_is_object(v))
        check_object(c, s, v, depth);
    else if (json_is_array(v))
        check_array(c, s, v, depth);
    else if (json_is_string(v))
        check_string(c, s, v);
    else if (json_is_number(v))
        check_number(c, s, v);
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    if (!schema)
        return mxu_res_error(res, 500, "not_configured", "%s", schema_problem);
    size_t len;
    const char *body = mxu_req_body(req, &len);
    json_error_t je;
    json_t *doc = json_loadb(body, len, JSON_DECODE_ANY, &je);
    if (!doc)
        return mxu_res_error(res, 400, "invalid_json",
                             "the body is not JSON: line %d column %d: %s", je.line, je.column,
                             je.text);
    ctx *c = mxu_alloc(req, sizeof(*c));
    if (!c) {
        json_decref(doc);
        return mxu_res_error(res, 500, "no_memory", "out of memory");
    }
    c->violations = json_array();
    c->len = 0;
    c->ptr[0] = '\0';
    c->truncated = 0;
    validate(c, schema, doc, 0);
    size_t n = json_array_size(c->violations);
    if (n) {
        json_t *first = json_array_get(c->violations, 0);
        char msg[1024];
        snprintf(msg, sizeof(msg), "%zu%s violation%s of the schema; first: %s: %s", n,
                 c->truncated ? "+" : "", n == 1 ? "" : "s",
                 *json_string_value(json_object_get(first, "pointer"))
                     ? json_string_value(json_object_get(first, "pointer"))
                     : "(the document)",
                 json_string_value(json_object_get(first, "message")));
        json_t *o = json_pack("{s{ssss}sOsb}", "error", "code", "schema_violation", "message", msg,
                              "violations", c->violations, "truncated", c->truncated);
        if (!o)
            o = json_pack("{s{ssss}sO}", "error", "code", "schema_violation", "message",
                          "the body violates the schema", "violations", c->violations);
        char *text = json_dumps(o, JSON_COMPACT);
        mxu_res_status(res, 422);
        mxu_res_header(res, "Content-Type", "application/json");
        if (text)
            mxu_res_printf(res, "%s\n", text);
        free(text);
        json_decref(o);
    } else if (output_result) {
        mxu_res_header(res, "Content-Type", "application/json");
        mxu_res_printf(res, "{\"valid\":true}\n");
    } else {
        mxu_res_header(res, "Content-Type", "application/json");
        mxu_res_set_body(res, body, len);
    }
    json_decref(c->violations);
    json_decref(doc);
    return 0;
}
