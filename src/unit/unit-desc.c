/*
 * Descriptor tables: what a unit declared, bound to backends, and the checks
 * every operation from an instance passes. The instance is not trusted:
 * every count, length and number in a RES_OP is checked here before any
 * backend sees it, and anything undeclared or beyond the declared access is
 * refused with a reason (the scheduler logs it as a policy denial).
 */
#include "unit/unit.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define KV_KEY_MAX   512
#define BLOB_KEY_MAX 1024
#define CHUNK_MAX    (1u << 20)
#define LIST_MAX     (MXU_RES_MAX_ARGS - 1) /* keys + the cursor fit one reply */
#define LEASE_MAX_MS (12ull * 3600 * 1000)
#define RECEIPT_MAX  256

typedef struct desc {
    const mxu_resource_decl *decl;
    mxu_binding *binding; /* NULL for svc */
    /* token bucket, in thousandths of an operation */
    uint64_t tokens_milli;
    uint64_t refilled_ns;
} desc;

struct mxu_desc_table {
    desc *descs;
    size_t n;
    bool has_blob; /* whether an ended invocation may have left an upload */
};

int mxu_desc_table_create(const mxu_manifest *m, mxu_resolver *r, const char *tenant,
                          mxu_desc_table **out, mxu_err *err)
{
    mxu_desc_table *t = mxu_calloc(1, sizeof(*t));
    t->descs = mxu_calloc(m->nresources ? m->nresources : 1, sizeof(desc));
    for (size_t i = 0; i < m->nresources; i++) {
        const mxu_resource_decl *d = &m->resources[i];
        desc *e = &t->descs[t->n];
        e->decl = d;
        e->tokens_milli = (uint64_t)d->ops_per_second * 1000;
        e->refilled_ns = mxu_now_ns();
        if (strcmp(d->kind, "svc") != 0) {
            if (r == NULL) {
                mxu_desc_table_free(t);
                return mxu_err_set(err, EINVAL, "resource %s: no resolver on this node", d->uri);
            }
            t->has_blob |= strcmp(d->kind, "blob") == 0;
            /* kv:acme/orders is tenant acme's kv:orders. Binding it does
             * not reach it: each operation passes the policy first, which
             * denies a cross-tenant resource unless a rule allows it. */
            const char *slash = strchr(d->target, '/');
            if (slash) {
                _cleanup_free_ char *owner = mxu_strndup(d->target, (size_t)(slash - d->target));
                _cleanup_free_ char *uri = mxu_asprintf("%s:%s", d->kind, slash + 1);
                e->binding = mxu_resolver_bind(r, owner, uri, err);
            } else {
                e->binding = mxu_resolver_bind(r, tenant, d->uri, err);
            }
            if (e->binding == NULL) {
                mxu_err_prefix(err, "resource %s (%s)", d->name, d->uri);
                mxu_desc_table_free(t);
                return -1;
            }
        }
        t->n++;
    }
    *out = t;
    return 0;
}

void mxu_desc_table_free(mxu_desc_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        mxu_binding_unref(t->descs[i].binding);
    free(t->descs);
    free(t);
}

static desc *find(const mxu_desc_table *t, mxu_slice name)
{
    for (size_t i = 0; i < t->n; i++) {
        const char *dn = t->descs[i].decl->name;
        if (strlen(dn) == name.len && memcmp(dn, name.ptr, name.len) == 0)
            return &t->descs[i];
    }
    return NULL;
}

const mxu_resource_decl *mxu_desc_find(const mxu_desc_table *t, mxu_slice name)
{
    desc *d = find(t, name);
    return d ? d->decl : NULL;
}

/* Which access mode allows op, for the descriptor's kind; NULL = wrong kind. */
static bool access_allows(const char *kind, const char *access, uint32_t op, bool *wrong_kind)
{
    bool read = false, write = false;
    *wrong_kind = false;
    if (strcmp(kind, "kv") == 0 || strcmp(kind, "blob") == 0) {
        bool kv = kind[0] == 'k';
        read = kv ? (op == MXU_RES_KV_GET || op == MXU_RES_KV_LIST)
                  : (op == MXU_RES_BLOB_READ || op == MXU_RES_BLOB_STAT || op == MXU_RES_BLOB_LIST);
        write = kv ? (op == MXU_RES_KV_PUT || op == MXU_RES_KV_DELETE || op == MXU_RES_KV_CAS)
                   : (op == MXU_RES_BLOB_WRITE || op == MXU_RES_BLOB_DELETE);
        if (!read && !write) {
            *wrong_kind = true;
            return false;
        }
        return strcmp(access, "read-write") == 0 || (read && strcmp(access, "read") == 0) ||
               (write && strcmp(access, "write") == 0);
    }
    if (strcmp(kind, "queue") == 0) {
        bool pub = op == MXU_RES_QUEUE_PUBLISH;
        bool con = op == MXU_RES_QUEUE_CONSUME || op == MXU_RES_QUEUE_ACK;
        if (!pub && !con) {
            *wrong_kind = true;
            return false;
        }
        return strcmp(access, "publish-consume") == 0 || (pub && strcmp(access, "publish") == 0) ||
               (con && strcmp(access, "consume") == 0);
    }
    if (op != MXU_RES_SVC_CALL) {
        *wrong_kind = true;
        return false;
    }
    return true; /* svc: invoke is the only mode */
}

static bool key_ok(mxu_slice k, size_t max, bool allow_empty)
{
    if ((k.len == 0 && !allow_empty) || k.len > max)
        return false;
    return memchr(k.ptr, '\0', k.len) == NULL && mxu_utf8_valid(k.ptr, k.len);
}

const char *mxu_desc_op_name(uint32_t op)
{
    switch (op) {
    case MXU_RES_KV_GET:
        return "get";
    case MXU_RES_KV_PUT:
        return "put";
    case MXU_RES_KV_DELETE:
    case MXU_RES_BLOB_DELETE:
        return "delete";
    case MXU_RES_KV_CAS:
        return "cas";
    case MXU_RES_KV_LIST:
    case MXU_RES_BLOB_LIST:
        return "list";
    case MXU_RES_BLOB_READ:
        return "read";
    case MXU_RES_BLOB_WRITE:
        return "write";
    case MXU_RES_BLOB_STAT:
        return "stat";
    case MXU_RES_QUEUE_PUBLISH:
        return "publish";
    case MXU_RES_QUEUE_CONSUME:
        return "consume";
    case MXU_RES_QUEUE_ACK:
        return "ack";
    case MXU_RES_SVC_CALL:
        return "call";
    }
    return "unknown operation";
}

/* In messages, compare-and-set is spelled out. */
static const char *op_name(uint32_t op)
{
    return op == MXU_RES_KV_CAS ? "compare-and-set" : mxu_desc_op_name(op);
}

#define REFUSE(st, ...)                     \
    do {                                    \
        snprintf(why, whylen, __VA_ARGS__); \
        return (st);                        \
    } while (0)

/* Shape and sizes of each op (frame.h's table). */
static enum mxu_res_status check_shape(const desc *d, const mxu_res_op_msg *op, char *why,
                                       size_t whylen)
{
    const mxu_resource_decl *decl = d->decl;
    const char *n = decl->name;
    uint32_t na = op->nargs;
    switch (op->op) {
    case MXU_RES_KV_GET:
    case MXU_RES_KV_DELETE:
    case MXU_RES_BLOB_STAT:
    case MXU_RES_BLOB_DELETE:
    case MXU_RES_BLOB_READ:
        if (na != 1)
            REFUSE(MXU_RES_INVALID, "%s: %s takes a key", n, op_name(op->op));
        break;
    case MXU_RES_KV_PUT:
    case MXU_RES_KV_CAS:
    case MXU_RES_BLOB_WRITE:
        if (na != 2)
            REFUSE(MXU_RES_INVALID, "%s: %s takes a key and a value", n, op_name(op->op));
        break;
    case MXU_RES_KV_LIST:
    case MXU_RES_BLOB_LIST:
        if (na != 2)
            REFUSE(MXU_RES_INVALID, "%s: list takes a prefix and a cursor", n);
        if (op->n1 == 0 || op->n1 > LIST_MAX)
            REFUSE(MXU_RES_INVALID, "%s: list pages hold 1 to %d keys", n, LIST_MAX);
        break;
    case MXU_RES_QUEUE_PUBLISH:
        if (na != 1)
            REFUSE(MXU_RES_INVALID, "%s: publish takes a message", n);
        if (op->args[0].len > decl->max_value)
            REFUSE(MXU_RES_TOO_LARGE, "%s: message of %u bytes is over the %llu byte limit", n,
                   op->args[0].len, (unsigned long long)decl->max_value);
        return MXU_RES_OK;
    case MXU_RES_QUEUE_CONSUME:
        if (na != 0 || op->n1 == 0 || op->n1 > LEASE_MAX_MS)
            REFUSE(MXU_RES_INVALID, "%s: consume takes a lease of 1 ms to 12 h", n);
        return MXU_RES_OK;
    case MXU_RES_QUEUE_ACK:
        if (na != 1 || !key_ok(op->args[0], RECEIPT_MAX, false))
            REFUSE(MXU_RES_INVALID, "%s: ack takes the receipt consume gave", n);
        return MXU_RES_OK;
    case MXU_RES_SVC_CALL:
        if (na < 4 || (na - 4) % 2 != 0)
            REFUSE(MXU_RES_INVALID, "%s: a call is method, path, query, body and headers", n);
        if (op->args[3].len > decl->max_value)
            REFUSE(MXU_RES_TOO_LARGE, "%s: body of %u bytes is over the %llu byte limit", n,
                   op->args[3].len, (unsigned long long)decl->max_value);
        return MXU_RES_OK;
    default:
        REFUSE(MXU_RES_INVALID, "%s: unknown operation %u", n, op->op);
    }
    /* kv and blob: a key first */
    bool blob = decl->kind[0] == 'b';
    bool list = op->op == MXU_RES_KV_LIST || op->op == MXU_RES_BLOB_LIST;
    size_t kmax = blob ? BLOB_KEY_MAX : KV_KEY_MAX;
    if (!key_ok(op->args[0], kmax, list))
        REFUSE(op->args[0].len > kmax ? MXU_RES_TOO_LARGE : MXU_RES_INVALID,
               "%s: a %s is 1 to %zu bytes of UTF-8 without NUL", n, list ? "prefix" : "key", kmax);
    if (list && !key_ok(op->args[1], kmax, true))
        REFUSE(MXU_RES_INVALID, "%s: bad list cursor", n);
    if (op->op == MXU_RES_KV_PUT || op->op == MXU_RES_KV_CAS) {
        if (op->args[1].len > decl->max_value)
            REFUSE(MXU_RES_TOO_LARGE, "%s: value of %u bytes is over the %llu byte limit", n,
                   op->args[1].len, (unsigned long long)decl->max_value);
    }
    if (op->op == MXU_RES_BLOB_READ && (op->n2 == 0 || op->n2 > CHUNK_MAX))
        REFUSE(MXU_RES_INVALID, "%s: reads are 1 byte to 1 MiB at a time", n);
    if (op->op == MXU_RES_BLOB_WRITE) {
        if (op->args[1].len > CHUNK_MAX)
            REFUSE(MXU_RES_TOO_LARGE, "%s: chunks are at most 1 MiB", n);
        if (op->n2 & ~(uint64_t)(MXU_RES_BLOB_FIRST | MXU_RES_BLOB_LAST))
            REFUSE(MXU_RES_INVALID, "%s: unknown chunk flags", n);
        if (op->n1 > decl->max_value || op->args[1].len > decl->max_value - op->n1)
            REFUSE(MXU_RES_TOO_LARGE, "%s: objects are limited to %llu bytes", n,
                   (unsigned long long)decl->max_value);
    }
    return MXU_RES_OK;
}

/* Token bucket: ops_per_second per second, bursts of one second's worth. */
static bool take_token(desc *d)
{
    uint32_t rate = d->decl->ops_per_second;
    if (rate == 0)
        return true;
    uint64_t now = mxu_now_ns();
    uint64_t cap = (uint64_t)rate * 1000;
    uint64_t add = (now - d->refilled_ns) * rate / 1000000; /* thousandths */
    if (add > 0) {
        d->tokens_milli = MXU_MIN(cap, d->tokens_milli + add);
        d->refilled_ns = now;
    }
    if (d->tokens_milli < 1000)
        return false;
    d->tokens_milli -= 1000;
    return true;
}

enum mxu_res_status mxu_desc_check(mxu_desc_table *t, const mxu_res_op_msg *op, char *why,
                                   size_t whylen)
{
    desc *d = find(t, op->name);
    if (d == NULL)
        REFUSE(MXU_RES_DENIED, "no descriptor '%.*s' is declared in the manifest",
               (int)MXU_MIN(op->name.len, 63u), op->name.ptr);
    bool wrong_kind;
    if (!access_allows(d->decl->kind, d->decl->access, op->op, &wrong_kind)) {
        if (wrong_kind)
            REFUSE(MXU_RES_INVALID, "%s is a %s resource; %s does not apply", d->decl->name,
                   d->decl->kind, op_name(op->op));
        REFUSE(MXU_RES_DENIED, "%s (%s) is declared '%s': %s is not allowed", d->decl->name,
               d->decl->uri, d->decl->access, op_name(op->op));
    }
    enum mxu_res_status st = check_shape(d, op, why, whylen);
    if (st != MXU_RES_OK)
        return st;
    if (!take_token(d))
        REFUSE(MXU_RES_RATE_LIMITED, "%s: over its budget of %u operations per second",
               d->decl->name, d->decl->ops_per_second);
    return MXU_RES_OK;
}

void mxu_desc_run(mxu_desc_table *t, const mxu_res_op_msg *op, uint64_t owner, mxu_res_cb cb,
                  void *ud)
{
    desc *d = find(t, op->name);
    /* Keys travel without a terminator; drivers want C strings. */
    char key[BLOB_KEY_MAX + 1], cursor[BLOB_KEY_MAX + 1];
    mxu_res_call c = {.op = (enum mxu_res_op)op->op, .owner = owner, .n1 = op->n1, .n2 = op->n2};
    if (op->nargs >= 1 && op->op != MXU_RES_QUEUE_PUBLISH) {
        size_t n = MXU_MIN(op->args[0].len, (uint32_t)BLOB_KEY_MAX);
        memcpy(key, op->args[0].ptr, n);
        key[n] = '\0';
        c.key = key;
    }
    switch (op->op) {
    case MXU_RES_KV_PUT:
    case MXU_RES_KV_CAS:
    case MXU_RES_BLOB_WRITE:
        c.data = op->args[1].ptr;
        c.len = op->args[1].len;
        break;
    case MXU_RES_KV_LIST:
    case MXU_RES_BLOB_LIST: {
        size_t n = MXU_MIN(op->args[1].len, (uint32_t)BLOB_KEY_MAX);
        memcpy(cursor, op->args[1].ptr, n);
        cursor[n] = '\0';
        c.cursor = cursor;
        break;
    }
    case MXU_RES_QUEUE_PUBLISH:
        c.data = op->args[0].ptr;
        c.len = op->args[0].len;
        break;
    default:
        break;
    }
    mxu_binding_call(d->binding, &c, cb, ud);
}

void mxu_desc_release(mxu_desc_table *t, uint64_t owner)
{
    if (t == NULL || !t->has_blob)
        return;
    for (size_t i = 0; i < t->n; i++)
        if (t->descs[i].decl->kind[0] == 'b')
            mxu_binding_abandon(t->descs[i].binding, owner);
}
