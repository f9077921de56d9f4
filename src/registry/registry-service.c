/*
 * Services (`kind: service`): the steps of a service manifest → mxu_service,
 * and the checks a service gets at deploy, against what the tenant has
 * deployed: every reference names something that exists, no service calls
 * itself (directly or through others), and the body each step produces is
 * one the next step takes (docs/services.md).
 *
 * The YAML is parsed with the shared helpers of registry-yaml.c, so errors
 * read like every other manifest error: "checkout/mxu.yaml:12: steps[2].retries:
 * 11 is above the maximum of 10". A service is stored as its manifest text
 * (mxu_manifest.source) and parsed again when the node loads it: one parser,
 * no second format to keep in step.
 *
 * Divisions: references and values; steps (call, parallel, switch, group);
 * ids; the deploy checks; JSON for the API; freeing.
 */
#include "registry-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_STEPS     1000 /* every step of a service, nested ones included */
#define MAX_DEPTH     16   /* nesting of parallel / switch / group */
#define MAX_ROUTES    64
#define MAX_WHEN      256
#define MAX_RETRIES   10
#define MAX_WEIGHT    10000
#define MAX_FAILURES  1000
#define MAX_TIMEOUT   (15 * 60 * 1000ull)
#define BACKOFF_DEF   50ull
#define BACKOFF_MAX   2000ull
#define OPEN_FOR_DEF  30000ull
#define MAX_SVC_DEPTH 8 /* services calling services, for the deploy checks */

typedef struct sparse {
    reg_yaml *y;
    mxu_service *svc;
    size_t nsteps;
} sparse;

const char *mxu_ctype_name(enum mxu_ctype t)
{
    switch (t) {
    case MXU_CT_JSON:
        return "json";
    case MXU_CT_TEXT:
        return "text";
    case MXU_CT_BINARY:
        return "binary";
    case MXU_CT_ANY:
        break;
    }
    return "any";
}

int reg_ctype_parse(const char *s, enum mxu_ctype *out)
{
    static const enum mxu_ctype all[] = {MXU_CT_ANY, MXU_CT_JSON, MXU_CT_TEXT, MXU_CT_BINARY};
    for (size_t i = 0; i < MXU_ARRAY_LEN(all); i++) {
        if (strcmp(s, mxu_ctype_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

/* ---- references and values ------------------------------------------------- */

/* "name", "name@3" or "name@alias" of the service's own tenant. NULL if fine,
 * else why not (to follow the quoted value). */
static const char *fnref_problem(const char *s)
{
    if (strchr(s, '/'))
        return "names another tenant's function; a service calls functions and services of "
               "its own tenant";
    const char *at = strchr(s, '@');
    size_t nl = at ? (size_t)(at - s) : strlen(s);
    char name[64];
    if (nl >= sizeof(name))
        return "is not a function name (at most 63 characters)";
    memcpy(name, s, nl);
    name[nl] = '\0';
    if (!mxu_name_valid(name))
        return "is not a function reference (write name, name@3 or name@alias; names are "
               "lowercase letters, digits, '-' and '_', starting with a letter)";
    if (at) {
        const char *ref = at + 1;
        uint64_t num;
        if (ref[0] >= '0' && ref[0] <= '9') {
            if (mxu_parse_u64(ref, &num) < 0 || num < 1 || num > UINT32_MAX)
                return "has a version that is not a number from 1 (write name@3)";
        } else if (!mxu_name_valid(ref)) {
            return "has an alias that is not a name (write name@prod)";
        }
    }
    return NULL;
}

static void fnref_set(mxu_fnref *r, const char *s, int line)
{
    const char *at = strchr(s, '@');
    r->text = mxu_strdup(s);
    r->name = at ? mxu_strndup(s, (size_t)(at - s)) : mxu_strdup(s);
    r->ref = mxu_strdup(at ? at + 1 : "");
    r->line = line;
}

static int y_fnref(sparse *sp, yaml_node_t *n, const char *field, mxu_fnref *out)
{
    char qbuf[80];
    _cleanup_free_ char *s = NULL;
    if (reg_y_string(sp->y, n, field, &s) < 0)
        return -1;
    const char *why = fnref_problem(s);
    if (why)
        return reg_fail(sp->y->file, reg_node_line(n), field, sp->y->err, "'%s' %s", Q(s), why);
    fnref_set(out, s, reg_node_line(n));
    return 0;
}

static void fnref_clear(mxu_fnref *r)
{
    free(r->name);
    free(r->text);
    free(r->ref);
}

static void fnref_free(mxu_fnref *r)
{
    if (r) {
        fnref_clear(r);
        free(r);
    }
}

/* A header name as a request carries it: an HTTP token, kept lowercase. */
static int y_header_name(sparse *sp, yaml_node_t *n, const char *field, char **out)
{
    char qbuf[80];
    if (reg_y_string(sp->y, n, field, out) < 0)
        return -1;
    char *s = *out;
    bool ok = s[0] != '\0' && strlen(s) <= 128;
    for (char *c = s; ok && *c; c++) {
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
        ok = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || strchr("!#$%&'*+-.^_`|~", *c);
    }
    if (!ok)
        return reg_fail(sp->y->file, reg_node_line(n), field, sp->y->err,
                        "'%s' is not a header name (letters, digits and -, e.g. x-region)", Q(s));
    return 0;
}

/* A JSON pointer (RFC 6901): "" or "/a/b", '~' only in ~0 and ~1. */
static const char *pointer_problem(const char *s)
{
    if (s[0] != '\0' && s[0] != '/')
        return "is not a JSON pointer (write /field/sub, e.g. /customer/tier)";
    for (const char *c = s; *c; c++) {
        if (*c == '~' && c[1] != '0' && c[1] != '1')
            return "has a '~' that is not ~0 or ~1 (how a JSON pointer writes ~ and /)";
    }
    return NULL;
}

static int y_uint32(sparse *sp, yaml_node_t *n, const char *field, uint64_t min, uint64_t max,
                    uint32_t *out)
{
    uint64_t v;
    if (reg_y_uint(sp->y, n, field, max, &v) < 0)
        return -1;
    if (v < min)
        return reg_fail(sp->y->file, reg_node_line(n), field, sp->y->err,
                        "%llu is below the minimum of %llu", (unsigned long long)v,
                        (unsigned long long)min);
    *out = (uint32_t)v;
    return 0;
}

static int y_ms(sparse *sp, yaml_node_t *n, const char *field, uint64_t min, uint64_t *out)
{
    if (reg_y_duration(sp->y, n, field, out) < 0)
        return -1;
    if (*out < min || *out > MAX_TIMEOUT)
        return reg_fail(sp->y->file, reg_node_line(n), field, sp->y->err,
                        "must be from %llu ms to 15m", (unsigned long long)min);
    return 0;
}

/* A field's name for messages, "steps[2].retries"; cut if very deep
 * (a message, not a key). */
static const char *pathf(char *buf, size_t len, const char *fmt, ...) MXU_PRINTF(3, 4);
static const char *pathf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return buf;
}

static const char *sub(char *buf, size_t len, const char *path, const char *key)
{
    return pathf(buf, len, "%s.%s", path, key);
}

/* ---- steps ------------------------------------------------------------------ */

static int y_steps(sparse *sp, yaml_node_t *n, const char *path, int depth, mxu_steps *out);
static void steps_clear(mxu_steps *s);

static int y_routes(sparse *sp, yaml_node_t *n, const char *path, mxu_edge *e)
{
    static const char *const keys[] = {"call", "weight", "header", "equals"};
    char qbuf[80], hint[64], field[200], f2[240];
    reg_yaml *y = sp->y;
    if (n->type != YAML_SEQUENCE_NODE || n->data.sequence.items.top == n->data.sequence.items.start)
        return reg_fail(y->file, reg_node_line(n), path, y->err,
                        "expected a list of routes ({call: f@1, weight: 90} or {header: x-beta, "
                        "equals: \"1\", call: f@beta}), got %s",
                        n->type == YAML_SEQUENCE_NODE ? "an empty list" : reg_node_what(n));
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count > MAX_ROUTES)
        return reg_fail(y->file, reg_node_line(n), path, y->err, "has %zu routes; at most %d",
                        count, MAX_ROUTES);
    e->routes = mxu_calloc(count, sizeof(*e->routes));
    size_t weighted = 0;
    /* Header routes first, in file order, then the weighted ones: the order
     * the engine tries them in. Two passes over the list keep that simple. */
    for (int pass = 0; pass < 2; pass++) {
        size_t i = 0;
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++, i++) {
            yaml_node_t *r = reg_node_get(y, *it);
            pathf(field, sizeof(field), "%s[%zu]", path, i);
            if (r->type != YAML_MAPPING_NODE)
                return reg_fail(y->file, reg_node_line(r), field, y->err,
                                "expected a route ({call: f@1, weight: 90}), got %s",
                                reg_node_what(r));
            yaml_node_t *call = NULL, *weight = NULL, *header = NULL, *equals = NULL;
            for (yaml_node_pair_t *pr = r->data.mapping.pairs.start; pr < r->data.mapping.pairs.top;
                 pr++) {
                const char *key;
                yaml_node_t *val;
                if (reg_y_map_pair(y, r, pr, field, &key, &val) < 0)
                    return -1;
                if (strcmp(key, "call") == 0)
                    call = val;
                else if (strcmp(key, "weight") == 0)
                    weight = val;
                else if (strcmp(key, "header") == 0)
                    header = val;
                else if (strcmp(key, "equals") == 0)
                    equals = val;
                else
                    return reg_fail(y->file, reg_node_line(reg_node_get(y, pr->key)), field, y->err,
                                    "unknown field '%s'%s (a route has call, and weight "
                                    "or header + equals)",
                                    Q(key), reg_suggest(key, keys, 4, hint, sizeof(hint)));
            }
            bool is_header = header != NULL || equals != NULL;
            if ((pass == 0) != is_header)
                continue;
            if (!call)
                return reg_fail(y->file, reg_node_line(r), field, y->err,
                                "a route needs call: (the function it goes to)");
            mxu_route *rt = &e->routes[e->nroutes];
            if (y_fnref(sp, call, sub(f2, sizeof(f2), field, "call"), &rt->to) < 0)
                return -1;
            e->nroutes++;
            if (is_header) {
                if (weight)
                    return reg_fail(y->file, reg_node_line(weight), field, y->err,
                                    "a header route has no weight (it is taken whenever the "
                                    "header matches)");
                if (!header || !equals)
                    return reg_fail(y->file, reg_node_line(r), field, y->err,
                                    "a header route needs both header: and equals:");
                if (y_header_name(sp, header, sub(f2, sizeof(f2), field, "header"), &rt->header) <
                        0 ||
                    reg_y_string(y, equals, sub(f2, sizeof(f2), field, "equals"), &rt->equals) < 0)
                    return -1;
            } else {
                if (!weight)
                    return reg_fail(y->file, reg_node_line(r), field, y->err,
                                    "a route needs weight: (its share, e.g. 90) or header: + "
                                    "equals:");
                if (y_uint32(sp, weight, sub(f2, sizeof(f2), field, "weight"), 1, MAX_WEIGHT,
                             &rt->weight) < 0)
                    return -1;
                weighted++;
            }
        }
    }
    if (weighted == 0)
        return reg_fail(y->file, reg_node_line(n), path, y->err,
                        "needs at least one weighted route: where calls go when no header "
                        "route matches");
    return 0;
}

static int y_retry_on(sparse *sp, yaml_node_t *n, const char *field, unsigned *out)
{
    static const char *const names[] = {"error", "5xx", "429"};
    static const unsigned bits[] = {MXU_RETRY_ERROR, MXU_RETRY_5XX, MXU_RETRY_429};
    char qbuf[80], hint[64];
    char **v = NULL;
    size_t nv = 0;
    if (reg_y_string_list(sp->y, n, field, 3, NULL, &v, &nv) < 0)
        return -1;
    *out = 0;
    int rc = 0;
    for (size_t i = 0; i < nv && rc == 0; i++) {
        size_t k = 0;
        while (k < 3 && strcmp(v[i], names[k]) != 0)
            k++;
        if (k == 3)
            rc = reg_fail(sp->y->file, reg_node_line(n), field, sp->y->err,
                          "'%s' is not a failure kind (error, 5xx or 429)%s", Q(v[i]),
                          reg_suggest(v[i], names, 3, hint, sizeof(hint)));
        else
            *out |= bits[k];
    }
    reg_strv_free(v, nv);
    return rc;
}

static int y_breaker(sparse *sp, yaml_node_t *n, const char *field, mxu_edge *e)
{
    static const char *const keys[] = {"failures", "open_for"};
    char qbuf[80], hint[64], f2[240];
    reg_yaml *y = sp->y;
    if (n->type != YAML_MAPPING_NODE)
        return reg_fail(y->file, reg_node_line(n), field, y->err,
                        "expected {failures: 5, open_for: 30s}, got %s", reg_node_what(n));
    e->breaker_open_ms = OPEN_FOR_DEF;
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        const char *key;
        yaml_node_t *val;
        if (reg_y_map_pair(y, n, pr, field, &key, &val) < 0)
            return -1;
        int rc;
        if (strcmp(key, "failures") == 0)
            rc = y_uint32(sp, val, sub(f2, sizeof(f2), field, key), 1, MAX_FAILURES,
                          &e->breaker_failures);
        else if (strcmp(key, "open_for") == 0)
            rc = y_ms(sp, val, sub(f2, sizeof(f2), field, key), 1, &e->breaker_open_ms);
        else
            rc = reg_fail(y->file, reg_node_line(reg_node_get(y, pr->key)), field, y->err,
                          "unknown field '%s'%s (a breaker has failures and open_for)", Q(key),
                          reg_suggest(key, keys, 2, hint, sizeof(hint)));
        if (rc < 0)
            return -1;
    }
    if (e->breaker_failures == 0)
        return reg_fail(y->file, reg_node_line(n), field, y->err,
                        "needs failures: (consecutive failed calls that open it, e.g. 5)");
    return 0;
}

/* `switch: json /a/b`, `switch: header x-region` or `switch: status`. */
static int y_switch_on(sparse *sp, yaml_node_t *n, const char *field, mxu_step *st)
{
    char qbuf[80];
    _cleanup_free_ char *s = NULL;
    if (reg_y_string(sp->y, n, field, &s) < 0)
        return -1;
    const char *why = NULL;
    if (strcmp(s, "status") == 0) {
        st->on = MXU_SWITCH_STATUS;
        return 0;
    }
    if (strncmp(s, "json ", 5) == 0) {
        st->on = MXU_SWITCH_JSON;
        const char *ptr = s + 5;
        while (*ptr == ' ')
            ptr++;
        if ((why = pointer_problem(ptr)) == NULL) {
            st->on_arg = mxu_strdup(ptr);
            return 0;
        }
        return reg_fail(sp->y->file, reg_node_line(n), field, sp->y->err, "'%s' %s", Q(ptr), why);
    }
    if (strncmp(s, "header ", 7) == 0) {
        st->on = MXU_SWITCH_HEADER;
        /* Reuse the header-name check on the part after "header ". */
        yaml_node_t copy = *n;
        const char *name = s + 7;
        while (*name == ' ')
            name++;
        copy.data.scalar.value = (yaml_char_t *)name;
        copy.data.scalar.length = strlen(name);
        return y_header_name(sp, &copy, field, &st->on_arg);
    }
    return reg_fail(sp->y->file, reg_node_line(n), field, sp->y->err,
                    "'%s' is not what a switch can look at (write json /field, header NAME or "
                    "status)",
                    Q(s));
}

/* One `when:` value of a status switch: 404, or a class 2xx..5xx. */
static int status_range(const char *s, uint16_t out[2])
{
    size_t n = strlen(s);
    if (n == 3 && s[0] >= '1' && s[0] <= '5' && s[1] == 'x' && s[2] == 'x') {
        out[0] = (uint16_t)((s[0] - '0') * 100);
        out[1] = (uint16_t)(out[0] + 99);
        return 0;
    }
    uint64_t v;
    if (mxu_parse_u64(s, &v) < 0 || v < 100 || v > 599)
        return -1;
    out[0] = out[1] = (uint16_t)v;
    return 0;
}

static int y_cases(sparse *sp, yaml_node_t *n, const char *path, int depth, mxu_step *st)
{
    static const char *const keys[] = {"when", "steps"};
    char qbuf[80], hint[64], field[200], f2[240];
    reg_yaml *y = sp->y;
    if (n->type != YAML_SEQUENCE_NODE)
        return reg_fail(y->file, reg_node_line(n), path, y->err,
                        "expected a list of cases ({when: gold, steps: [...]}), got %s",
                        reg_node_what(n));
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count > MAX_ROUTES)
        return reg_fail(y->file, reg_node_line(n), path, y->err, "has %zu cases; at most %d", count,
                        MAX_ROUTES);
    st->cases = mxu_calloc(count ? count : 1, sizeof(*st->cases));
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *c = reg_node_get(y, *it);
        pathf(field, sizeof(field), "%s[%zu]", path, st->ncases);
        mxu_case *cs = &st->cases[st->ncases++];
        cs->line = reg_node_line(c);
        if (c->type != YAML_MAPPING_NODE)
            return reg_fail(y->file, reg_node_line(c), field, y->err,
                            "expected a case ({when: gold, steps: [...]}), got %s",
                            reg_node_what(c));
        yaml_node_t *when = NULL, *steps = NULL;
        for (yaml_node_pair_t *pr = c->data.mapping.pairs.start; pr < c->data.mapping.pairs.top;
             pr++) {
            const char *key;
            yaml_node_t *val;
            if (reg_y_map_pair(y, c, pr, field, &key, &val) < 0)
                return -1;
            if (strcmp(key, "when") == 0)
                when = val;
            else if (strcmp(key, "steps") == 0)
                steps = val;
            else
                return reg_fail(y->file, reg_node_line(reg_node_get(y, pr->key)), field, y->err,
                                "unknown field '%s'%s (a case has when and steps)", Q(key),
                                reg_suggest(key, keys, 2, hint, sizeof(hint)));
        }
        if (!when)
            return reg_fail(y->file, cs->line, field, y->err,
                            "a case needs when: (a value, or a list of values)");
        const char *wf = sub(f2, sizeof(f2), field, "when");
        if (when->type == YAML_SEQUENCE_NODE) {
            if (reg_y_string_list(y, when, wf, MAX_WHEN, NULL, &cs->equals, &cs->nequals) < 0)
                return -1;
        } else {
            cs->equals = mxu_calloc(1, sizeof(char *));
            if (reg_y_string(y, when, wf, &cs->equals[0]) < 0)
                return -1;
            cs->nequals = 1;
        }
        if (cs->nequals == 0)
            return reg_fail(y->file, reg_node_line(when), wf, y->err, "is an empty list");
        if (st->on == MXU_SWITCH_STATUS) {
            cs->status = mxu_calloc(cs->nequals, sizeof(*cs->status));
            for (size_t i = 0; i < cs->nequals; i++) {
                if (status_range(cs->equals[i], cs->status[i]) < 0)
                    return reg_fail(y->file, reg_node_line(when), wf, y->err,
                                    "'%s' is not a status (write 404, or a class like 4xx)",
                                    Q(cs->equals[i]));
            }
            cs->nstatus = cs->nequals;
        }
        if (steps &&
            y_steps(sp, steps, sub(f2, sizeof(f2), field, "steps"), depth + 1, &cs->steps) < 0)
            return -1;
    }
    return 0;
}

static const char *const step_keys[] = {
    "id",       "call",    "routes",   "timeout", "retries", "backoff",         "backoff_max",
    "retry_on", "breaker", "fallback", "rate",    "burst",   "max_concurrency", "parallel",
    "join",     "switch",  "cases",    "default", "steps",
};
enum {
    K_ID,
    K_CALL,
    K_ROUTES,
    K_TIMEOUT,
    K_RETRIES,
    K_BACKOFF,
    K_BACKOFF_MAX,
    K_RETRY_ON,
    K_BREAKER,
    K_FALLBACK,
    K_RATE,
    K_BURST,
    K_MAX_CONC,
    K_PARALLEL,
    K_JOIN,
    K_SWITCH,
    K_CASES,
    K_DEFAULT,
    K_STEPS,
    K_COUNT
};

/* Which keys each kind of step may have, besides id. */
static bool key_fits(int k, enum mxu_step_kind kind)
{
    if (k == K_ID)
        return true;
    switch (kind) {
    case MXU_STEP_CALL:
        return k >= K_CALL && k <= K_MAX_CONC;
    case MXU_STEP_PARALLEL:
        return k == K_PARALLEL || k == K_JOIN;
    case MXU_STEP_SWITCH:
        return k == K_SWITCH || k == K_CASES || k == K_DEFAULT;
    case MXU_STEP_GROUP:
        return k == K_STEPS;
    }
    return false;
}

static const char *kind_word(enum mxu_step_kind kind)
{
    return kind == MXU_STEP_CALL       ? "a call"
           : kind == MXU_STEP_PARALLEL ? "a parallel step"
           : kind == MXU_STEP_SWITCH   ? "a switch"
                                       : "a group of steps";
}

static int y_call_field(sparse *sp, int k, yaml_node_t *v, const char *f, mxu_step *st)
{
    mxu_edge *e = &st->call;
    switch (k) {
    case K_CALL:
        e->routes = mxu_calloc(1, sizeof(*e->routes));
        e->nroutes = 1;
        e->routes[0].weight = 1;
        return y_fnref(sp, v, f, &e->routes[0].to);
    case K_ROUTES:
        return y_routes(sp, v, f, e);
    case K_TIMEOUT:
        return y_ms(sp, v, f, 1, &e->timeout_ms);
    case K_RETRIES:
        return y_uint32(sp, v, f, 0, MAX_RETRIES, &e->retries);
    case K_BACKOFF:
        return y_ms(sp, v, f, 0, &e->backoff_ms);
    case K_BACKOFF_MAX:
        return y_ms(sp, v, f, 0, &e->backoff_max_ms);
    case K_RETRY_ON:
        return y_retry_on(sp, v, f, &e->retry_on);
    case K_BREAKER:
        return y_breaker(sp, v, f, e);
    case K_FALLBACK:
        e->fallback = mxu_calloc(1, sizeof(*e->fallback));
        return y_fnref(sp, v, f, e->fallback);
    case K_RATE:
        return reg_y_rate(sp->y, v, f, &e->rate, &e->rate_period_ms);
    case K_BURST:
        return y_uint32(sp, v, f, 0, UINT32_MAX, &e->burst);
    case K_MAX_CONC:
        return y_uint32(sp, v, f, 0, UINT32_MAX, &e->max_concurrency);
    }
    return -1;
}

static int y_step(sparse *sp, yaml_node_t *n, const char *path, int depth, mxu_step *st)
{
    char qbuf[80], hint[64], f[240];
    reg_yaml *y = sp->y;
    st->line = reg_node_line(n);
    if (++sp->nsteps > MAX_STEPS)
        return reg_fail(y->file, st->line, path, y->err, "a service has at most %d steps",
                        MAX_STEPS);
    if (depth > MAX_DEPTH)
        return reg_fail(y->file, st->line, path, y->err, "steps are nested more than %d deep",
                        MAX_DEPTH);
    st->kind = MXU_STEP_CALL;
    /* `- resize@2` is short for `- call: resize@2`. */
    if (n->type == YAML_SCALAR_NODE && !reg_node_is_null(n))
        return y_call_field(sp, K_CALL, n, path, st);
    if (n->type != YAML_MAPPING_NODE)
        return reg_fail(y->file, st->line, path, y->err,
                        "expected a step (a function name, or a mapping with call, routes, "
                        "parallel, switch or steps), got %s",
                        reg_node_what(n));
    /* First find what kind of step this is: the other keys depend on it. */
    int kind_key = -1;
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        const char *key;
        yaml_node_t *val;
        if (reg_y_map_pair(y, n, pr, path, &key, &val) < 0)
            return -1;
        int k = 0;
        while (k < K_COUNT && strcmp(key, step_keys[k]) != 0)
            k++;
        if (k == K_COUNT)
            return reg_fail(y->file, reg_node_line(reg_node_get(y, pr->key)), path, y->err,
                            "unknown field '%s'%s", Q(key),
                            reg_suggest(key, step_keys, K_COUNT, hint, sizeof(hint)));
        if (k != K_CALL && k != K_ROUTES && k != K_PARALLEL && k != K_SWITCH && k != K_STEPS)
            continue;
        if (kind_key >= 0)
            return reg_fail(y->file, reg_node_line(reg_node_get(y, pr->key)), path, y->err,
                            "has both %s and %s; a step is one of call, routes, parallel, "
                            "switch or steps",
                            step_keys[kind_key], key);
        kind_key = k;
    }
    if (kind_key < 0)
        return reg_fail(y->file, st->line, path, y->err,
                        "a step needs one of call, routes, parallel, switch or steps");
    st->kind = kind_key == K_PARALLEL ? MXU_STEP_PARALLEL
               : kind_key == K_SWITCH ? MXU_STEP_SWITCH
               : kind_key == K_STEPS  ? MXU_STEP_GROUP
                                      : MXU_STEP_CALL;
    /* The switch's selector first: its cases are read by it. */
    yaml_node_t *cases = NULL;
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = reg_node_get(y, pr->key), *v = reg_node_get(y, pr->value);
        const char *key = (const char *)kn->data.scalar.value;
        int k = 0;
        while (strcmp(key, step_keys[k]) != 0)
            k++;
        if (!key_fits(k, st->kind))
            return reg_fail(y->file, reg_node_line(kn), path, y->err,
                            "'%s' does not apply to %s (%s)", key, kind_word(st->kind),
                            k <= K_MAX_CONC  ? "link rules go on a call"
                            : k == K_JOIN    ? "join goes with parallel"
                            : k == K_CASES   ? "cases go with switch"
                            : k == K_DEFAULT ? "default goes with switch"
                                             : "one kind per step");
        sub(f, sizeof(f), path, key);
        int rc = 0;
        if (k == K_ID) {
            rc = reg_y_string(y, v, f, &st->id);
            if (rc == 0 && !mxu_name_valid(st->id))
                rc = reg_fail(y->file, reg_node_line(v), f, y->err,
                              "'%s' is not a step id (lowercase letters, digits, '-' and '_', "
                              "starting with a letter)",
                              Q(st->id));
        } else if (k <= K_MAX_CONC) {
            rc = y_call_field(sp, k, v, f, st);
        } else if (k == K_PARALLEL) {
            rc = y_steps(sp, v, f, depth + 1, &st->branches);
            if (rc == 0 && st->branches.n == 0)
                rc = reg_fail(y->file, reg_node_line(v), f, y->err, "needs at least one branch");
        } else if (k == K_JOIN) {
            _cleanup_free_ char *s = NULL;
            rc = reg_y_string(y, v, f, &s);
            if (rc == 0 && strcmp(s, "array") == 0)
                st->join = MXU_JOIN_ARRAY;
            else if (rc == 0 && strcmp(s, "object") == 0)
                st->join = MXU_JOIN_OBJECT;
            else if (rc == 0)
                rc = reg_fail(y->file, reg_node_line(v), f, y->err,
                              "'%s' is not a join (array: outputs in branch order; object: "
                              "keyed by branch id)",
                              Q(s));
        } else if (k == K_SWITCH) {
            rc = y_switch_on(sp, v, f, st);
        } else if (k == K_CASES) {
            cases = v;
        } else if (k == K_DEFAULT) {
            st->has_default = true;
            rc = y_steps(sp, v, f, depth + 1, &st->otherwise);
        } else if (k == K_STEPS) {
            rc = y_steps(sp, v, f, depth + 1, &st->steps);
            if (rc == 0 && st->steps.n == 0)
                rc = reg_fail(y->file, reg_node_line(v), f, y->err, "is an empty list");
        }
        if (rc < 0)
            return -1;
    }
    if (st->kind == MXU_STEP_SWITCH) {
        if (!cases)
            return reg_fail(y->file, st->line, path, y->err,
                            "a switch needs cases: ([{when: gold, steps: [...]}])");
        if (y_cases(sp, cases, sub(f, sizeof(f), path, "cases"), depth, st) < 0)
            return -1;
    }
    if (st->kind == MXU_STEP_CALL) {
        mxu_edge *e = &st->call;
        if (e->retries && e->retry_on == 0)
            e->retry_on = MXU_RETRY_ERROR | MXU_RETRY_5XX;
        if (e->backoff_ms == 0 && e->retries)
            e->backoff_ms = BACKOFF_DEF;
        if (e->backoff_max_ms == 0)
            e->backoff_max_ms = MXU_MAX(BACKOFF_MAX, e->backoff_ms);
        if (e->backoff_max_ms < e->backoff_ms)
            return reg_fail(y->file, st->line, sub(f, sizeof(f), path, "backoff_max"), y->err,
                            "is shorter than backoff");
    }
    return 0;
}

static int y_steps(sparse *sp, yaml_node_t *n, const char *path, int depth, mxu_steps *out)
{
    char field[220];
    if (n->type != YAML_SEQUENCE_NODE)
        return reg_fail(sp->y->file, reg_node_line(n), path, sp->y->err,
                        "expected a list of steps, got %s", reg_node_what(n));
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count > MAX_STEPS)
        return reg_fail(sp->y->file, reg_node_line(n), path, sp->y->err,
                        "a service has at most %d steps", MAX_STEPS);
    out->v = mxu_calloc(count ? count : 1, sizeof(*out->v));
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        pathf(field, sizeof(field), "%s[%zu]", path, out->n);
        mxu_step *st = &out->v[out->n++];
        if (y_step(sp, reg_node_get(sp->y, *it), field, depth, st) < 0)
            return -1;
    }
    return 0;
}

/* ---- ids -------------------------------------------------------------------- */

typedef struct idwalk {
    mxu_step **all; /* every step, depth first */
    size_t n;
} idwalk;

static void collect(idwalk *w, mxu_steps *s)
{
    for (size_t i = 0; i < s->n; i++) {
        mxu_step *st = &s->v[i];
        st->index = (uint32_t)w->n;
        w->all[w->n++] = st;
        collect(w, &st->branches);
        for (size_t c = 0; c < st->ncases; c++)
            collect(w, &st->cases[c].steps);
        collect(w, &st->otherwise);
        collect(w, &st->steps);
    }
}

static bool id_taken(const idwalk *w, const char *id)
{
    for (size_t i = 0; i < w->n; i++) {
        if (w->all[i]->id && strcmp(w->all[i]->id, id) == 0)
            return true;
    }
    return false;
}

/* Ids given by hand must be unique; the others are made from what the step
 * does: the function a call goes to (its first route), else the kind, with
 * -2, -3... where one is taken ("json-pick", "json-pick-2"). */
static int assign_ids(sparse *sp, mxu_service *svc)
{
    idwalk w = {.all = mxu_calloc(sp->nsteps ? sp->nsteps : 1, sizeof(mxu_step *))};
    collect(&w, &svc->steps);
    svc->nsteps = w.n;
    int rc = 0;
    for (size_t i = 0; i < w.n && rc == 0; i++) {
        for (size_t j = 0; j < i; j++) {
            if (w.all[i]->id && w.all[j]->id && strcmp(w.all[i]->id, w.all[j]->id) == 0) {
                rc = reg_fail(sp->y->file, w.all[i]->line, "id", sp->y->err,
                              "'%s' is already the id of the step on line %d; step ids are "
                              "unique in a service",
                              w.all[i]->id, w.all[j]->line);
                break;
            }
        }
    }
    for (size_t i = 0; i < w.n && rc == 0; i++) {
        mxu_step *st = w.all[i];
        if (st->id)
            continue;
        const char *base = st->kind == MXU_STEP_CALL       ? st->call.routes[0].to.name
                           : st->kind == MXU_STEP_PARALLEL ? "parallel"
                           : st->kind == MXU_STEP_SWITCH   ? "switch"
                                                           : "group";
        char id[80];
        snprintf(id, sizeof(id), "%s", base);
        for (unsigned k = 2; id_taken(&w, id); k++)
            snprintf(id, sizeof(id), "%s-%u", base, k);
        st->id = mxu_strdup(id);
    }
    free(w.all);
    return rc;
}

/* ---- the manifest's side ------------------------------------------------------ */

int reg_service_steps(reg_yaml *y, yaml_node_t *n, mxu_service *svc)
{
    sparse sp = {.y = y, .svc = svc};
    if (y_steps(&sp, n, "steps", 0, &svc->steps) < 0)
        return -1;
    if (svc->steps.n == 0)
        return reg_fail(y->file, reg_node_line(n), "steps", y->err,
                        "a service needs at least one step");
    return assign_ids(&sp, svc);
}

int reg_service_on_error(reg_yaml *y, yaml_node_t *n, mxu_service *svc)
{
    sparse sp = {.y = y, .svc = svc};
    svc->on_error = mxu_calloc(1, sizeof(*svc->on_error));
    return y_fnref(&sp, n, "on_error", svc->on_error);
}

/* ---- freeing ---------------------------------------------------------------------- */

static void step_clear(mxu_step *st)
{
    free(st->id);
    for (size_t i = 0; i < st->call.nroutes; i++) {
        fnref_clear(&st->call.routes[i].to);
        free(st->call.routes[i].header);
        free(st->call.routes[i].equals);
    }
    free(st->call.routes);
    fnref_free(st->call.fallback);
    steps_clear(&st->branches);
    free(st->on_arg);
    for (size_t c = 0; c < st->ncases; c++) {
        reg_strv_free(st->cases[c].equals, st->cases[c].nequals);
        free(st->cases[c].status);
        steps_clear(&st->cases[c].steps);
    }
    free(st->cases);
    steps_clear(&st->otherwise);
    steps_clear(&st->steps);
}

static void steps_clear(mxu_steps *s)
{
    for (size_t i = 0; i < s->n; i++)
        step_clear(&s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

void reg_service_free(mxu_service *svc)
{
    if (svc == NULL)
        return;
    steps_clear(&svc->steps);
    fnref_free(svc->on_error);
    free(svc);
}

/* ---- the deploy checks -------------------------------------------------------- */

typedef struct chk {
    mxu_registry *reg;
    const char *tenant;
    const char *file;
    mxu_err *err;
    /* The services being looked into, outermost first: [0] is the one being
     * deployed (by name: it has no version yet). */
    const char *stack[MAX_SVC_DEPTH + 1];
    int depth;
    /* Services already looked into, and what they take and give: each is
     * walked once, not once per path to it (a service of 1,000 steps
     * calling one of 1,000 steps calling one of 1,000 is 1e9 paths). */
    struct seen {
        const char *name, *ref; /* the reference's, borrowed */
        int depth;              /* walked from this depth: reused at it or deeper */
        enum mxu_ctype in, out;
    } * seen;
    size_t nseen, capseen;
} chk;

/* Can a step that takes `in` be given what produces `out`? JSON is text. */
static bool compatible(enum mxu_ctype out, enum mxu_ctype in)
{
    return in == MXU_CT_ANY || out == MXU_CT_ANY || in == out ||
           (in == MXU_CT_TEXT && out == MXU_CT_JSON);
}

static enum mxu_ctype merge(enum mxu_ctype a, enum mxu_ctype b, bool first)
{
    if (first || a == b)
        return b;
    if ((a == MXU_CT_JSON && b == MXU_CT_TEXT) || (a == MXU_CT_TEXT && b == MXU_CT_JSON))
        return MXU_CT_TEXT;
    return MXU_CT_ANY;
}

static int seq_types(chk *c, const mxu_steps *s, enum mxu_ctype in, enum mxu_ctype *out);

/* The service's own errors are reported; inside services it calls, only a
 * cycle is (their other problems are theirs, found when they run). */
static bool strict(const chk *c)
{
    return c->depth == 0;
}

static int ref_types(chk *c, const mxu_fnref *r, const char *what, enum mxu_ctype *in,
                     enum mxu_ctype *out)
{
    *in = *out = MXU_CT_ANY;
    if (strcmp(r->name, c->stack[0]) == 0 ||
        (c->depth > 0 && strcmp(r->name, c->stack[c->depth]) == 0)) {
        char path[400] = "";
        size_t o = 0;
        for (int i = 0; i <= c->depth && o < sizeof(path); i++)
            o += (size_t)snprintf(path + o, sizeof(path) - o, "%s → ", c->stack[i]);
        if (o < sizeof(path))
            snprintf(path + o, sizeof(path) - o, "%s", r->name);
        if (c->depth == 0)
            return reg_fail(c->file, r->line, what, c->err,
                            "'%s' is this service itself: a service cannot call itself", r->text);
        return reg_fail(c->file, r->line, what, c->err,
                        "'%s' leads back to this service (%s): services must not form a cycle",
                        r->text, path);
    }
    mxu_err e = {0};
    mxu_fn_version *v = mxu_registry_resolve(c->reg, c->tenant, r->name, r->ref, &e);
    if (v == NULL) {
        if (!strict(c))
            return 0;
        return reg_fail(c->file, r->line, what, c->err, "'%s': %s (deploy it first)", r->text,
                        e.msg);
    }
    if (v->manifest->service == NULL) {
        *in = v->manifest->input;
        *out = v->manifest->output;
        return 0;
    }
    for (int i = 1; i <= c->depth; i++) {
        if (strcmp(c->stack[i], r->name) == 0)
            return 0; /* a cycle among other services, not through this one: theirs */
    }
    if (c->depth == MAX_SVC_DEPTH)
        return strict(c) ? reg_fail(c->file, r->line, what, c->err,
                                    "'%s' nests services more than %d deep", r->text, MAX_SVC_DEPTH)
                         : 0;
    /* Walked already from as high up or higher: it led back nowhere then
     * (a walk from higher up sees at least as deep). */
    struct seen *sn = NULL;
    for (size_t i = 0; i < c->nseen; i++) {
        if (strcmp(c->seen[i].name, r->name) == 0 && strcmp(c->seen[i].ref, r->ref) == 0) {
            sn = &c->seen[i];
            break;
        }
    }
    if (sn && sn->depth <= c->depth + 1) {
        *in = sn->in;
        *out = sn->out;
        return 0;
    }
    c->stack[++c->depth] = r->name;
    const mxu_service *svc = v->manifest->service;
    enum mxu_ctype first_in = MXU_CT_ANY;
    if (svc->steps.n && svc->steps.v[0].kind == MXU_STEP_CALL)
        first_in = svc->steps.v[0].in;
    int rc = seq_types(c, &svc->steps, first_in, out);
    *in = first_in;
    if (rc == 0) {
        if (sn == NULL) {
            if (c->nseen == c->capseen) {
                c->capseen = c->capseen ? c->capseen * 2 : 16;
                c->seen = mxu_realloc(c->seen, c->capseen * sizeof(*c->seen));
            }
            sn = &c->seen[c->nseen++];
        }
        *sn = (struct seen){r->name, r->ref, c->depth, *in, *out};
    }
    c->depth--;
    return rc;
}

static int step_types(chk *c, const mxu_step *st, enum mxu_ctype in, enum mxu_ctype *out)
{
    char what[120];
    snprintf(what, sizeof(what), "step %s", st->id);
    *out = MXU_CT_ANY;
    switch (st->kind) {
    case MXU_STEP_CALL: {
        size_t n = st->call.nroutes + (st->call.fallback != NULL);
        for (size_t i = 0; i < n; i++) {
            const mxu_fnref *r = i < st->call.nroutes ? &st->call.routes[i].to : st->call.fallback;
            enum mxu_ctype rin, rout;
            if (ref_types(c, r, what, &rin, &rout) < 0)
                return -1;
            if (strict(c) && !compatible(in, rin))
                return reg_fail(c->file, r->line, what, c->err,
                                "'%s' takes %s input, but what reaches it is %s (see its "
                                "manifest's input: and the output: of the step before)",
                                r->text, mxu_ctype_name(rin), mxu_ctype_name(in));
            *out = merge(*out, rout, i == 0);
        }
        return 0;
    }
    case MXU_STEP_PARALLEL:
        for (size_t i = 0; i < st->branches.n; i++) {
            enum mxu_ctype bout;
            if (step_types(c, &st->branches.v[i], in, &bout) < 0)
                return -1;
            if (strict(c) && bout == MXU_CT_BINARY)
                return reg_fail(c->file, st->branches.v[i].line, what, c->err,
                                "branch '%s' outputs binary, but a join builds JSON from its "
                                "branches' outputs",
                                st->branches.v[i].id);
        }
        *out = MXU_CT_JSON;
        return 0;
    case MXU_STEP_SWITCH: {
        if (strict(c) && st->on == MXU_SWITCH_JSON && in != MXU_CT_JSON && in != MXU_CT_ANY)
            return reg_fail(c->file, st->line, what, c->err,
                            "switches on a JSON field, but its input is %s", mxu_ctype_name(in));
        bool first = true;
        for (size_t i = 0; i < st->ncases; i++, first = false) {
            enum mxu_ctype cout;
            if (seq_types(c, &st->cases[i].steps, in, &cout) < 0)
                return -1;
            *out = merge(*out, cout, first);
        }
        enum mxu_ctype dout = in;
        if (st->has_default && seq_types(c, &st->otherwise, in, &dout) < 0)
            return -1;
        *out = merge(*out, dout, first);
        return 0;
    }
    case MXU_STEP_GROUP:
        return seq_types(c, &st->steps, in, out);
    }
    return 0;
}

static int seq_types(chk *c, const mxu_steps *s, enum mxu_ctype in, enum mxu_ctype *out)
{
    enum mxu_ctype cur = in;
    for (size_t i = 0; i < s->n; i++) {
        mxu_step *st = &s->v[i];
        enum mxu_ctype next;
        if (step_types(c, st, cur, &next) < 0)
            return -1;
        if (strict(c)) {
            st->in = cur; /* the service being deployed: not shared yet */
            st->out = next;
        }
        cur = next;
    }
    *out = cur;
    return 0;
}

int reg_service_check(mxu_registry *reg, const char *tenant, const mxu_manifest *m,
                      const char *file, mxu_err *err)
{
    chk c = {.reg = reg, .tenant = tenant, .file = file, .err = err};
    c.stack[0] = m->name;
    enum mxu_ctype out;
    int rc = seq_types(&c, &m->service->steps, MXU_CT_ANY, &out);
    if (rc == 0 && m->service->on_error) {
        enum mxu_ctype in;
        rc = ref_types(&c, m->service->on_error, "on_error", &in, &out);
        if (rc == 0 && !compatible(MXU_CT_JSON, in))
            rc = reg_fail(file, m->service->on_error->line, "on_error", err,
                          "'%s' takes %s input, but an error handler is given the failure as "
                          "JSON",
                          m->service->on_error->text, mxu_ctype_name(in));
    }
    free(c.seen);
    return rc;
}

/* ---- JSON for the API ----------------------------------------------------------- */

static json_t *fnref_json(const mxu_fnref *r)
{
    return r ? json_string(r->text) : json_null();
}

static json_t *steps_json(const mxu_steps *s);

static json_t *step_json(const mxu_step *st)
{
    static const char *const kinds[] = {"call", "parallel", "switch", "group"};
    json_t *j =
        json_pack("{s:s, s:s, s:i, s:s, s:s}", "id", st->id, "kind", kinds[st->kind], "line",
                  st->line, "input", mxu_ctype_name(st->in), "output", mxu_ctype_name(st->out));
    if (st->kind == MXU_STEP_CALL) {
        const mxu_edge *e = &st->call;
        json_t *routes = json_array();
        for (size_t i = 0; i < e->nroutes; i++) {
            const mxu_route *r = &e->routes[i];
            json_t *rj = json_pack("{s:s}", "call", r->to.text);
            if (r->header) {
                json_object_set_new(rj, "header", json_string(r->header));
                json_object_set_new(rj, "equals", json_string(r->equals));
            } else {
                json_object_set_new(rj, "weight", json_integer(r->weight));
            }
            json_array_append_new(routes, rj);
        }
        json_object_set_new(j, "routes", routes);
        json_object_set_new(j, "timeout_ms", json_integer((json_int_t)e->timeout_ms));
        json_object_set_new(j, "retries", json_integer(e->retries));
        if (e->retries) {
            json_object_set_new(j, "backoff_ms", json_integer((json_int_t)e->backoff_ms));
            json_object_set_new(j, "backoff_max_ms", json_integer((json_int_t)e->backoff_max_ms));
            json_t *on = json_array();
            if (e->retry_on & MXU_RETRY_ERROR)
                json_array_append_new(on, json_string("error"));
            if (e->retry_on & MXU_RETRY_5XX)
                json_array_append_new(on, json_string("5xx"));
            if (e->retry_on & MXU_RETRY_429)
                json_array_append_new(on, json_string("429"));
            json_object_set_new(j, "retry_on", on);
        }
        if (e->breaker_failures)
            json_object_set_new(j, "breaker",
                                json_pack("{s:i, s:I}", "failures", e->breaker_failures,
                                          "open_for_ms", (json_int_t)e->breaker_open_ms));
        json_object_set_new(j, "fallback", fnref_json(e->fallback));
    } else if (st->kind == MXU_STEP_PARALLEL) {
        json_object_set_new(j, "branches", steps_json(&st->branches));
        json_object_set_new(j, "join",
                            json_string(st->join == MXU_JOIN_OBJECT ? "object" : "array"));
    } else if (st->kind == MXU_STEP_SWITCH) {
        static const char *const ons[] = {"json", "header", "status"};
        json_object_set_new(j, "on", json_string(ons[st->on]));
        if (st->on_arg)
            json_object_set_new(j, "on_arg", json_string(st->on_arg));
        json_t *cases = json_array();
        for (size_t i = 0; i < st->ncases; i++) {
            json_t *when = json_array();
            for (size_t k = 0; k < st->cases[i].nequals; k++)
                json_array_append_new(when, json_string(st->cases[i].equals[k]));
            json_array_append_new(cases, json_pack("{s:o, s:o}", "when", when, "steps",
                                                   steps_json(&st->cases[i].steps)));
        }
        json_object_set_new(j, "cases", cases);
        json_object_set_new(j, "default",
                            st->has_default ? steps_json(&st->otherwise) : json_null());
    } else {
        json_object_set_new(j, "steps", steps_json(&st->steps));
    }
    return j;
}

static json_t *steps_json(const mxu_steps *s)
{
    json_t *a = json_array();
    for (size_t i = 0; i < s->n; i++)
        json_array_append_new(a, step_json(&s->v[i]));
    return a;
}

json_t *reg_service_json(const mxu_service *svc)
{
    return json_pack("{s:o, s:o}", "steps", steps_json(&svc->steps), "on_error",
                     fnref_json(svc->on_error));
}
