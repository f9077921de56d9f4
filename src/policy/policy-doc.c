/*
 * Policy documents: YAML text -> validated rules (pol_rule), their canonical
 * form, and line diffs between two canonical forms (docs/policy.md, "Policy
 * documents").
 *
 * A document is written by a person and applied to a running node, so it is
 * validated the way manifests are: every error names the file, the line and
 * the field ("policy.yaml:7: rules[2].ops: 'push' is not an operation on
 * queue resources (publish, consume, ack)"), and nothing is guessed: an
 * unknown field, link kind or operation is an error, because a rule that is
 * silently dropped is a hole nobody sees. The text is untrusted (a tenant's
 * admin sends it), so sizes are bounded and it is fuzzed (fuzz/fuzz-policy.c).
 *
 * Divisions: names and globs; one rule; the document; the canonical form;
 * the diff.
 */
#include "policy-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#define MAX_RULES 100000
#define GLOB_MAX  64
#define NOTE_MAX  256

static const char *const link_names[MXU_LINK_KINDS] = {"client->function", "unit->unit",
                                                       "unit->resource"};
static const char *const kv_ops[] = {"get", "put", "delete", "list", "cas", NULL};
static const char *const blob_ops[] = {"read", "write", "stat", "list", "delete", NULL};
static const char *const queue_ops[] = {"publish", "consume", "ack", NULL};

const char *const *pol_ops(const char *res_kind)
{
    if (strcmp(res_kind, "kv") == 0)
        return kv_ops;
    if (strcmp(res_kind, "blob") == 0)
        return blob_ops;
    if (strcmp(res_kind, "queue") == 0)
        return queue_ops;
    return NULL;
}

typedef struct dparse {
    yaml_document_t *doc;
    const char *file;
    const char *tenant; /* NULL: the node's document */
    mxu_err *err;
    char field[48]; /* "rules[2]" while a rule is parsed */
} dparse;

/* "FILE:LINE: FIELD: message"; always -1. Messages quote document text, so
 * control characters are replaced to keep them one line. */
static int dfail(dparse *p, int line, const char *field, const char *fmt, ...) MXU_PRINTF(4, 5);
static int dfail(dparse *p, int line, const char *field, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char where[200];
    if (field && p->field[0])
        snprintf(where, sizeof(where), "%s:%d: %s.%s", p->file, line, p->field, field);
    else if (field || p->field[0])
        snprintf(where, sizeof(where), "%s:%d: %s", p->file, line, field ? field : p->field);
    else
        snprintf(where, sizeof(where), "%s:%d", p->file, line);
    mxu_err_set(p->err, EINVAL, "%s: %s", where, msg);
    if (p->err) {
        /* One line of valid UTF-8 (it goes into JSON): quoted values were
         * cut at a byte count and may hold anything. */
        char *m = p->err->msg;
        size_t len = strlen(m);
        for (size_t i = 0; i < len;) {
            unsigned char c = (unsigned char)m[i];
            size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
            if (c < 0x20 || c == 0x7f ||
                (c >= 0x80 && (i + n > len || !mxu_utf8_valid(m + i, n)))) {
                m[i++] = '?';
                continue;
            }
            i += n;
        }
    }
    return -1;
}

/* ---- names and globs ---------------------------------------------------------- */

bool pol_is_glob(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

/* A glob over names of `alphabet` (plus * ? [ ] !), at most `max` bytes,
 * brackets closed. NULL if fine, else why not. */
static const char *glob_problem(const char *s, const char *alphabet, size_t max)
{
    size_t n = strlen(s);
    if (n == 0)
        return "is empty";
    if (n > max)
        return "is too long";
    bool in_bracket = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '[') {
            if (in_bracket)
                return "has a '[' inside brackets";
            in_bracket = true;
        } else if (c == ']') {
            if (!in_bracket)
                return "has a ']' without its '['";
            if (s[i - 1] == '[' || (s[i - 1] == '!' && s[i - 2] == '['))
                return "has an empty bracket expression";
            in_bracket = false;
        } else if (c == '!') {
            if (!in_bracket || s[i - 1] != '[')
                return "has a '!' outside the start of a bracket expression";
        } else if (c != '*' && c != '?' && !strchr(alphabet, c)) {
            return "has a character that is not in a name or a glob (lowercase letters, "
                   "digits, '-', '_', and * ? [ ])";
        }
    }
    if (in_bracket)
        return "has a '[' that is never closed";
    return NULL;
}

#define NAME_CHARS "abcdefghijklmnopqrstuvwxyz0123456789-_"
#define HEX_CHARS  "0123456789abcdef"

/* A scalar value's text, or NULL after failing (not a string, NUL, too
 * long). */
static const char *scalar(dparse *p, yaml_node_t *n, const char *field, size_t max)
{
    if (n->type != YAML_SCALAR_NODE) {
        dfail(p, (int)n->start_mark.line + 1, field, "expected a string, got %s",
              n->type == YAML_SEQUENCE_NODE ? "a list" : "a mapping");
        return NULL;
    }
    const char *v = (const char *)n->data.scalar.value;
    if (memchr(v, '\0', n->data.scalar.length)) {
        dfail(p, (int)n->start_mark.line + 1, field, "contains a NUL character");
        return NULL;
    }
    if (n->data.scalar.length > max) {
        dfail(p, (int)n->start_mark.line + 1, field, "is longer than %zu bytes", max);
        return NULL;
    }
    return v;
}

/* "[TENANT/]NAME": the tenant (implied: the document's, or default for the
 * node's) and the name, both globs; a tenant's document may name only
 * itself. */
static int split_qualified(dparse *p, int line, const char *field, const char *v, char **tenant,
                           char **name)
{
    const char *slash = strchr(v, '/');
    const char *own = p->tenant ? p->tenant : MXU_TENANT_DEFAULT;
    _cleanup_free_ char *t = slash ? mxu_strndup(v, (size_t)(slash - v)) : mxu_strdup(own);
    const char *nm = slash ? slash + 1 : v;
    const char *why = glob_problem(t, NAME_CHARS, 32);
    if (why)
        return dfail(p, line, field, "'%.80s': the tenant before '/' %s", v, why);
    if (p->tenant && strcmp(t, p->tenant) != 0)
        return dfail(p, line, field,
                     "'%.80s' names tenant %s: rules of tenant %s's document stay inside tenant "
                     "%s (cross-tenant rules are the node admin's)",
                     v, t, p->tenant, p->tenant);
    if ((why = glob_problem(nm, NAME_CHARS, GLOB_MAX)) != NULL)
        return dfail(p, line, field, "'%.80s': the name %s", v, why);
    *tenant = steal_pointer(&t);
    *name = mxu_strdup(nm);
    return 0;
}

/* ---- one rule ----------------------------------------------------------------- */

static int client_from(dparse *p, yaml_node_t *n, pol_rule *r)
{
    int line = (int)n->start_mark.line + 1;
    if (n->type == YAML_SCALAR_NODE) {
        const char *v = scalar(p, n, "from", GLOB_MAX);
        if (v == NULL)
            return -1;
        if (strcmp(v, "*") != 0)
            return dfail(p, line, "from",
                         "'%.80s': client->function rules select keys with a mapping "
                         "({tenant: T, role: R, key: ID}, each optional) or \"*\" (anyone)",
                         v);
        if (p->tenant)
            r->c_tenant = mxu_strdup(p->tenant);
        return 0;
    }
    if (n->type != YAML_MAPPING_NODE)
        return dfail(p, line, "from", "expected a mapping {tenant, role, key} or \"*\"");
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(p->doc, pr->value);
        const char *ks = scalar(p, k, "from", 32);
        if (ks == NULL)
            return -1;
        int vl = (int)v->start_mark.line + 1;
        char f[32];
        snprintf(f, sizeof(f), "from.%s", ks);
        char **slot = strcmp(ks, "tenant") == 0 ? &r->c_tenant
                      : strcmp(ks, "role") == 0 ? &r->c_role
                      : strcmp(ks, "key") == 0  ? &r->c_key
                                                : NULL;
        if (slot == NULL)
            return dfail(p, (int)k->start_mark.line + 1, "from",
                         "unknown field '%.40s' (a client is selected by tenant, role and key)",
                         ks);
        if (*slot)
            return dfail(p, (int)k->start_mark.line + 1, f, "given twice");
        const char *vs = scalar(p, v, f, GLOB_MAX);
        if (vs == NULL)
            return -1;
        const char *why = NULL;
        if (slot == &r->c_tenant) {
            why = glob_problem(vs, NAME_CHARS, 32);
            if (why == NULL && p->tenant && strcmp(vs, p->tenant) != 0)
                return dfail(p, vl, f,
                             "'%.40s': rules of tenant %s's document stay inside tenant %s "
                             "(cross-tenant rules are the node admin's)",
                             vs, p->tenant, p->tenant);
        } else if (slot == &r->c_role) {
            enum mxu_role role;
            if (mxu_role_parse(vs, &role, NULL) < 0)
                return dfail(p, vl, f, "'%.40s' is not a role (admin, deployer, invoker, viewer)",
                             vs);
        } else {
            why = glob_problem(vs, HEX_CHARS, MXU_KEY_ID_HEX);
        }
        if (why)
            return dfail(p, vl, f, "'%.80s' %s", vs, why);
        *slot = mxu_strdup(vs);
    }
    if (p->tenant && r->c_tenant == NULL)
        r->c_tenant = mxu_strdup(p->tenant);
    return 0;
}

static int resource_to(dparse *p, int line, const char *v, pol_rule *r)
{
    const char *colon = strchr(v, ':');
    if (colon == NULL)
        return dfail(p, line, "to",
                     "'%.80s' is not a resource (write KIND:[TENANT/]NAME, e.g. kv:orders, "
                     "blob:acme/img-*)",
                     v);
    _cleanup_free_ char *kind = mxu_strndup(v, (size_t)(colon - v));
    if (pol_ops(kind) == NULL)
        return dfail(p, line, "to",
                     "'%.80s': unknown resource kind '%.20s' (kv, blob or queue; svc: targets "
                     "are unit->unit links)",
                     v, kind);
    if (split_qualified(p, line, "to", colon + 1, &r->to_tenant, &r->to_name) < 0)
        return -1;
    r->res_kind = steal_pointer(&kind);
    return 0;
}

static int rule_ops(dparse *p, yaml_node_t *n, pol_rule *r)
{
    int line = (int)n->start_mark.line + 1;
    const char *const *ops = pol_ops(r->res_kind);
    yaml_node_item_t *start = NULL, *top = NULL;
    yaml_node_item_t one;
    if (n->type == YAML_SEQUENCE_NODE) {
        start = n->data.sequence.items.start;
        top = n->data.sequence.items.top;
        if (start == top)
            return dfail(p, line, "ops", "is empty (leave it out for every operation)");
    } else if (n->type == YAML_SCALAR_NODE) {
        one = (yaml_node_item_t)(n - p->doc->nodes.start + 1);
        start = &one;
        top = &one + 1;
    } else {
        return dfail(p, line, "ops", "expected a list of operations, got a mapping");
    }
    for (yaml_node_item_t *it = start; it < top; it++) {
        yaml_node_t *o = yaml_document_get_node(p->doc, *it);
        const char *os = scalar(p, o, "ops", 32);
        if (os == NULL)
            return -1;
        if (strcmp(os, "*") == 0) {
            for (uint32_t i = 0; ops[i]; i++)
                r->ops |= 1u << i;
            continue;
        }
        uint32_t i = 0;
        while (ops[i] && strcmp(ops[i], os) != 0)
            i++;
        if (ops[i] == NULL) {
            char list[80] = "";
            for (uint32_t j = 0; ops[j]; j++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof(list) - l, "%s%s", j ? ", " : "", ops[j]);
            }
            return dfail(p, (int)o->start_mark.line + 1, "ops",
                         "'%.40s' is not an operation on %s resources (%s)", os, r->res_kind, list);
        }
        r->ops |= 1u << i;
    }
    return 0;
}

static void rule_free(pol_rule *r)
{
    free(r->from_tenant);
    free(r->from_name);
    free(r->c_tenant);
    free(r->c_role);
    free(r->c_key);
    free(r->to_tenant);
    free(r->to_name);
    free(r->res_kind);
    free(r->note);
    free(r->text);
}

/* The rule's parts as the canonical form and messages write them: a tenant
 * is left out where it is the implied one. */
static void put_qualified(mxu_buf *b, const char *doc_tenant, const char *prefix,
                          const char *tenant, const char *name)
{
    const char *own = doc_tenant ? doc_tenant : MXU_TENANT_DEFAULT;
    mxu_buf_puts(b, prefix);
    if (strcmp(tenant, own) != 0) {
        mxu_buf_puts(b, tenant);
        mxu_buf_puts(b, "/");
    }
    mxu_buf_puts(b, name);
}

static void put_from(mxu_buf *b, const char *doc_tenant, const pol_rule *r, bool quoted)
{
    const char *q = quoted ? "\"" : "";
    if (r->kind != MXU_LINK_CLIENT) {
        mxu_buf_puts(b, q);
        put_qualified(b, doc_tenant, "", r->from_tenant, r->from_name);
        mxu_buf_puts(b, q);
        return;
    }
    bool tenant = r->c_tenant && !(doc_tenant && strcmp(r->c_tenant, doc_tenant) == 0);
    if (!tenant && !r->c_role && !r->c_key) {
        mxu_buf_puts(b, "\"*\"");
        return;
    }
    const char *sep = "{";
    const char *names[] = {"tenant", "role", "key"};
    const char *vals[] = {tenant ? r->c_tenant : NULL, r->c_role, r->c_key};
    for (int i = 0; i < 3; i++) {
        if (vals[i] == NULL)
            continue;
        mxu_buf_printf(b, "%s%s: %s%s%s", sep, names[i], q, vals[i], q);
        sep = ", ";
    }
    mxu_buf_puts(b, "}");
}

static void put_to(mxu_buf *b, const char *doc_tenant, const pol_rule *r, bool quoted)
{
    const char *q = quoted ? "\"" : "";
    mxu_buf_puts(b, q);
    if (r->kind == MXU_LINK_RESOURCE) {
        mxu_buf_puts(b, r->res_kind);
        mxu_buf_puts(b, ":");
    }
    put_qualified(b, doc_tenant, "", r->to_tenant, r->to_name);
    mxu_buf_puts(b, q);
}

/* The ops written out, or "" when the rule is about every operation. */
static void put_ops(mxu_buf *b, const pol_rule *r, const char *open, const char *sep,
                    const char *close)
{
    const char *const *ops = pol_ops(r->res_kind);
    uint32_t all = 0, n = 0;
    while (ops[n])
        all |= 1u << n++;
    if (r->ops == all)
        return;
    mxu_buf_puts(b, open);
    const char *s = "";
    for (uint32_t i = 0; i < n; i++) {
        if (r->ops & (1u << i)) {
            mxu_buf_printf(b, "%s%s", s, ops[i]);
            s = sep;
        }
    }
    mxu_buf_puts(b, close);
}

static void rule_text(const char *doc_tenant, pol_rule *r)
{
    mxu_buf b = {0};
    mxu_buf_printf(&b, "%s %s ", r->deny ? "deny" : "allow", link_names[r->kind]);
    put_from(&b, doc_tenant, r, false);
    mxu_buf_puts(&b, " -> ");
    put_to(&b, doc_tenant, r, false);
    if (r->kind == MXU_LINK_RESOURCE)
        put_ops(&b, r, " ", ",", "");
    r->text = mxu_strndup(b.data, b.len);
    mxu_buf_free(&b);
}

static const char *const rule_fields[] = {"allow", "deny", "from", "to", "ops", "note"};

static int parse_rule(dparse *p, yaml_node_t *n, pol_rule *r)
{
    int line = (int)n->start_mark.line + 1;
    r->line = line;
    if (n->type != YAML_MAPPING_NODE)
        return dfail(p, line, NULL,
                     "a rule is a mapping ({deny: unit->resource, from: ..., to: ..., ops: "
                     "[...]}), not %s",
                     n->type == YAML_SEQUENCE_NODE ? "a list" : "a string");
    yaml_node_t *vals[MXU_ARRAY_LEN(rule_fields)] = {0};
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
        const char *ks = scalar(p, k, NULL, 32);
        if (ks == NULL)
            return -1;
        size_t i = 0;
        while (i < MXU_ARRAY_LEN(rule_fields) && strcmp(rule_fields[i], ks) != 0)
            i++;
        if (i == MXU_ARRAY_LEN(rule_fields))
            return dfail(p, (int)k->start_mark.line + 1, NULL,
                         "unknown field '%.40s' (a rule has allow or deny, from, to, ops, note)",
                         ks);
        if (vals[i])
            return dfail(p, (int)k->start_mark.line + 1, ks, "given twice");
        vals[i] = yaml_document_get_node(p->doc, pr->value);
    }
    if ((vals[0] != NULL) == (vals[1] != NULL))
        return dfail(p, line, NULL,
                     "a rule has exactly one of allow: or deny:, naming its link kind "
                     "(client->function, unit->unit, unit->resource)");
    r->deny = vals[1] != NULL;
    const char *effect = r->deny ? "deny" : "allow";
    yaml_node_t *kn = vals[r->deny ? 1 : 0];
    const char *kind = scalar(p, kn, effect, 32);
    if (kind == NULL)
        return -1;
    int k = 0;
    while (k < MXU_LINK_KINDS && strcmp(link_names[k], kind) != 0)
        k++;
    if (k == MXU_LINK_KINDS)
        return dfail(p, (int)kn->start_mark.line + 1, effect,
                     "'%.40s' is not a link kind (client->function, unit->unit, unit->resource)",
                     kind);
    r->kind = (enum mxu_link_kind)k;
    if (vals[2] == NULL || vals[3] == NULL)
        return dfail(p, line, vals[2] ? "to" : "from", "is required");
    int fl = (int)vals[2]->start_mark.line + 1, tl = (int)vals[3]->start_mark.line + 1;
    if (r->kind == MXU_LINK_CLIENT) {
        if (client_from(p, vals[2], r) < 0)
            return -1;
    } else {
        const char *v = scalar(p, vals[2], "from", 100);
        if (v == NULL || split_qualified(p, fl, "from", v, &r->from_tenant, &r->from_name) < 0)
            return -1;
    }
    const char *to = scalar(p, vals[3], "to", 120);
    if (to == NULL)
        return -1;
    if (r->kind == MXU_LINK_RESOURCE) {
        if (resource_to(p, tl, to, r) < 0)
            return -1;
        if (vals[4]) {
            if (rule_ops(p, vals[4], r) < 0)
                return -1;
        } else {
            for (uint32_t i = 0; pol_ops(r->res_kind)[i]; i++)
                r->ops |= 1u << i;
        }
    } else {
        if (strchr(to, ':'))
            return dfail(p, tl, "to",
                         "'%.80s': %s rules name a function ([TENANT/]NAME), not a resource", to,
                         link_names[r->kind]);
        if (split_qualified(p, tl, "to", to, &r->to_tenant, &r->to_name) < 0)
            return -1;
        if (vals[4])
            return dfail(p, (int)vals[4]->start_mark.line + 1, "ops",
                         "only unit->resource rules have operations");
    }
    if (vals[5]) {
        const char *note = scalar(p, vals[5], "note", NOTE_MAX);
        if (note == NULL)
            return -1;
        for (const char *c = note; *c; c++)
            if ((unsigned char)*c < 0x20)
                return dfail(p, (int)vals[5]->start_mark.line + 1, "note",
                             "has a control character");
        if (!mxu_utf8_valid(note, strlen(note)))
            return dfail(p, (int)vals[5]->start_mark.line + 1, "note", "is not UTF-8");
        r->note = mxu_strdup(note);
    }
    rule_text(p->tenant, r);
    return 0;
}

/* ---- the document --------------------------------------------------------------- */

void mxu_poldoc_free(mxu_poldoc *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++)
        rule_free(&d->rules[i]);
    free(d->rules);
    free(d->tenant);
    free(d);
}

size_t mxu_poldoc_nrules(const mxu_poldoc *d)
{
    return d->n;
}

static int parse_root(dparse *p, yaml_node_t *root, mxu_poldoc *d)
{
    int line = (int)root->start_mark.line + 1;
    if (root->type != YAML_MAPPING_NODE)
        return dfail(p, line, NULL, "a policy document is a mapping with a rules: list");
    yaml_node_t *rules = NULL;
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
        const char *ks = scalar(p, k, NULL, 32);
        if (ks == NULL)
            return -1;
        int kl = (int)k->start_mark.line + 1;
        if (strcmp(ks, "rules") != 0)
            return dfail(p, kl, NULL, "unknown field '%.40s' (a policy document has rules:)%s", ks,
                         strcmp(ks, "rule") == 0 ? " (did you mean 'rules'?)" : "");
        if (rules)
            return dfail(p, kl, "rules", "given twice");
        rules = yaml_document_get_node(p->doc, pr->value);
    }
    if (rules == NULL)
        return dfail(p, line, "rules", "is required (rules: [] for a document without rules)");
    if (rules->type != YAML_SEQUENCE_NODE) {
        bool empty = rules->type == YAML_SCALAR_NODE && rules->data.scalar.length == 0;
        if (!empty)
            return dfail(p, (int)rules->start_mark.line + 1, "rules", "expected a list of rules");
        return 0;
    }
    size_t n = (size_t)(rules->data.sequence.items.top - rules->data.sequence.items.start);
    if (n > MAX_RULES)
        return dfail(p, (int)rules->start_mark.line + 1, "rules", "more than %d rules", MAX_RULES);
    d->rules = mxu_calloc(n ? n : 1, sizeof(pol_rule));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *rn = yaml_document_get_node(p->doc, rules->data.sequence.items.start[i]);
        snprintf(p->field, sizeof(p->field), "rules[%zu]", i + 1);
        pol_rule *r = &d->rules[d->n++];
        r->index = (uint32_t)(i + 1);
        if (parse_rule(p, rn, r) < 0)
            return -1;
    }
    return 0;
}

int mxu_poldoc_parse(const char *text, size_t len, const char *file, const char *tenant,
                     mxu_poldoc **out, mxu_err *err)
{
    dparse p = {.file = file ? file : "policy.yaml", .tenant = tenant, .err = err};
    if (text == NULL) /* libyaml asserts on a NULL input */
        text = "", len = 0;
    if (len > MXU_POLDOC_MAX_BYTES)
        return dfail(&p, 1, NULL, "the document is larger than %u MiB", MXU_POLDOC_MAX_BYTES >> 20);
    for (size_t start = 0, line = 1; start < len; line++) {
        const char *nl = memchr(text + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (!mxu_utf8_valid(text + start, end - start) || memchr(text + start, '\0', end - start))
            return dfail(&p, (int)line, NULL, "the file is not valid UTF-8 text");
        start = end + 1;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return mxu_err_set(err, ENOMEM, "%s: cannot initialise the YAML parser", p.file);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    yaml_document_t doc;
    if (!yaml_parser_load(&parser, &doc)) {
        int line = (int)parser.problem_mark.line + 1;
        dfail(&p, line, NULL, "%s", parser.problem ? parser.problem : "cannot parse YAML");
        yaml_parser_delete(&parser);
        return -1;
    }
    p.doc = &doc;
    mxu_poldoc *d = mxu_calloc(1, sizeof(*d));
    d->tenant = tenant ? mxu_strdup(tenant) : NULL;
    int rc = -1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        dfail(&p, 1, NULL, "the document is empty (write rules: [] for one without rules)");
        goto out;
    }
    yaml_document_t doc2;
    if (!yaml_parser_load(&parser, &doc2)) {
        dfail(&p, (int)parser.problem_mark.line + 1, NULL, "%s",
              parser.problem ? parser.problem : "cannot parse YAML");
        goto out;
    }
    bool second = yaml_document_get_root_node(&doc2) != NULL;
    int line2 = second ? (int)yaml_document_get_root_node(&doc2)->start_mark.line + 1 : 0;
    yaml_document_delete(&doc2);
    if (second) {
        dfail(&p, line2, NULL, "a policy is one YAML document; remove the second one");
        goto out;
    }
    rc = parse_root(&p, root, d);
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc < 0) {
        mxu_poldoc_free(d);
        return -1;
    }
    *out = d;
    return 0;
}

/* ---- the canonical form ------------------------------------------------------------ */

char *mxu_poldoc_canonical(const mxu_poldoc *d)
{
    mxu_buf b = {0};
    mxu_buf_printf(&b, "# mxu policy, canonical form: %s%s\n", d->tenant ? "tenant " : "node",
                   d->tenant ? d->tenant : "");
    mxu_buf_puts(&b, d->n ? "rules:\n" : "rules: []\n");
    for (size_t i = 0; i < d->n; i++) {
        const pol_rule *r = &d->rules[i];
        mxu_buf_printf(&b, "  - {%s: %s, from: ", r->deny ? "deny" : "allow", link_names[r->kind]);
        put_from(&b, d->tenant, r, true);
        mxu_buf_puts(&b, ", to: ");
        put_to(&b, d->tenant, r, true);
        if (r->kind == MXU_LINK_RESOURCE)
            put_ops(&b, r, ", ops: [", ", ", "]");
        if (r->note) {
            /* JSON string escapes are YAML double-quoted escapes. */
            json_t *s = json_string(r->note);
            char *q = json_dumps(s, JSON_ENCODE_ANY);
            mxu_buf_printf(&b, ", note: %s", q ? q : "\"\"");
            free(q);
            json_decref(s);
        }
        mxu_buf_puts(&b, "}\n");
    }
    char *out = mxu_strndup(b.data, b.len);
    mxu_buf_free(&b);
    return out;
}

/* ---- the diff --------------------------------------------------------------------- */

typedef struct lines {
    const char **p;
    size_t *len;
    size_t n;
} lines;

static void split_lines(const char *s, lines *l)
{
    size_t cap = 16;
    l->p = mxu_calloc(cap, sizeof(*l->p));
    l->len = mxu_calloc(cap, sizeof(*l->len));
    l->n = 0;
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t n = nl ? (size_t)(nl - s) : strlen(s);
        if (l->n == cap) {
            cap *= 2;
            l->p = mxu_realloc(l->p, cap * sizeof(*l->p));
            l->len = mxu_realloc(l->len, cap * sizeof(*l->len));
        }
        l->p[l->n] = s;
        l->len[l->n++] = n;
        s += n + (nl != NULL);
    }
}

static bool line_eq(const lines *a, size_t i, const lines *b, size_t j)
{
    return a->len[i] == b->len[j] && memcmp(a->p[i], b->p[j], a->len[i]) == 0;
}

/* An edit script: for each output line, ' ', '-' or '+' and the line. */
typedef struct edit {
    char op;
    const char *p;
    size_t len;
    size_t ia, ib; /* line numbers (0-based) in a and b before this edit */
} edit;

/* Longest common subsequence over the middle (common prefix and suffix cut
 * first); a middle too large for the table is shown as removed and added
 * whole, which is still a correct diff. */
static edit *diff_edits(const lines *a, const lines *b, size_t *nout)
{
    size_t pre = 0, suf = 0;
    while (pre < a->n && pre < b->n && line_eq(a, pre, b, pre))
        pre++;
    while (suf < a->n - pre && suf < b->n - pre && line_eq(a, a->n - 1 - suf, b, b->n - 1 - suf))
        suf++;
    size_t ma = a->n - pre - suf, mb = b->n - pre - suf;
    edit *e = mxu_calloc(a->n + b->n + 1, sizeof(*e));
    size_t n = 0, ia = 0, ib = 0;
    for (; ia < pre; ia++, ib++)
        e[n++] = (edit){' ', a->p[ia], a->len[ia], ia, ib};
    if ((uint64_t)(ma + 1) * (mb + 1) <= 4u << 20) {
        /* t[i][j]: LCS length of a[pre+i..] and b[pre+j..] */
        uint32_t *t = mxu_calloc((ma + 1) * (mb + 1), sizeof(*t));
#define T(i, j) t[(i) * (mb + 1) + (j)]
        for (size_t i = ma; i-- > 0;)
            for (size_t j = mb; j-- > 0;)
                T(i, j) = line_eq(a, pre + i, b, pre + j) ? T(i + 1, j + 1) + 1
                                                          : MXU_MAX(T(i + 1, j), T(i, j + 1));
        size_t i = 0, j = 0;
        while (i < ma || j < mb) {
            if (i < ma && j < mb && line_eq(a, pre + i, b, pre + j)) {
                e[n++] = (edit){' ', a->p[pre + i], a->len[pre + i], ia++, ib++};
                i++, j++;
            } else if (i < ma && (j == mb || T(i + 1, j) >= T(i, j + 1))) {
                e[n++] = (edit){'-', a->p[pre + i], a->len[pre + i], ia++, ib};
                i++;
            } else {
                e[n++] = (edit){'+', b->p[pre + j], b->len[pre + j], ia, ib++};
                j++;
            }
        }
#undef T
        free(t);
    } else {
        for (size_t i = 0; i < ma; i++, ia++)
            e[n++] = (edit){'-', a->p[ia], a->len[ia], ia, ib};
        for (size_t j = 0; j < mb; j++, ib++)
            e[n++] = (edit){'+', b->p[ib], b->len[ib], ia, ib};
    }
    for (size_t k = 0; k < suf; k++, ia++, ib++)
        e[n++] = (edit){' ', a->p[ia], a->len[ia], ia, ib};
    *nout = n;
    return e;
}

char *mxu_text_diff(const char *a, const char *b, const char *name_a, const char *name_b)
{
    lines la, lb;
    split_lines(a, &la);
    split_lines(b, &lb);
    size_t n;
    edit *e = diff_edits(&la, &lb, &n);
    mxu_buf out = {0};
    const size_t ctx = 3;
    size_t k = 0;
    while (k < n) {
        while (k < n && e[k].op == ' ')
            k++;
        if (k == n)
            break;
        if (out.len == 0)
            mxu_buf_printf(&out, "--- %s\n+++ %s\n", name_a, name_b);
        /* a hunk: from ctx lines before the change to ctx after the last
         * change that is within 2*ctx of the one before */
        size_t start = k > ctx ? k - ctx : 0, end = k;
        for (size_t j = k; j < n; j++) {
            if (e[j].op != ' ')
                end = j;
            else if (j - end > 2 * ctx)
                break;
        }
        end = MXU_MIN(n, end + ctx + 1);
        size_t na = 0, nb = 0;
        for (size_t j = start; j < end; j++) {
            na += e[j].op != '+';
            nb += e[j].op != '-';
        }
        mxu_buf_printf(&out, "@@ -%zu,%zu +%zu,%zu @@\n", e[start].ia + (na > 0), na,
                       e[start].ib + (nb > 0), nb);
        for (size_t j = start; j < end; j++)
            mxu_buf_printf(&out, "%c%.*s\n", e[j].op, (int)e[j].len, e[j].p);
        k = end;
    }
    free(e);
    free(la.p);
    free(la.len);
    free(lb.p);
    free(lb.len);
    char *s = mxu_strndup(out.data ? out.data : "", out.len);
    mxu_buf_free(&out);
    return s;
}
