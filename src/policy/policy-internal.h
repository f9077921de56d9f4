/*
 * What the files of src/policy share and nobody else sees:
 *
 *   policy-key.c    names, roles, scopes, the key text and its hash, expiry
 *                   durations, the CLI credentials file (pure: unit-tested
 *                   without a node)
 *   policy-store.c  the tables in state.db and their mirror in memory,
 *                   tenants, keys, authentication
 *   policy-authz.c  the role matrix, and the bootstrap of the first admin key
 *   policy-shape.c  limits, token buckets, concurrency caps, priority classes
 *                   (table shape_limits)
 *   policy-quota.c  monthly quotas per tenant and their counters (table
 *                   tenant_quotas; usage from the meter's records)
 *   policy-doc.c    policy documents: YAML -> validated rules, the canonical
 *                   form, line diffs (pure: unit-tested and fuzzed alone)
 *   policy-links.c  the documents' versions (table policy_docs), the
 *                   compiled lookup tables, and the link checks
 */
#ifndef MXU_POLICY_INTERNAL_H
#define MXU_POLICY_INTERNAL_H

#include "policy.h"

#include <sqlite3.h>
#include <uthash.h>

/* The shaping state of one limited thing: a tenant, a key, a function or a
 * link. Never freed before the policy closes: tickets point at them. */
typedef struct pol_gate {
    mxu_limits lim;
    mxu_bucket bucket;
    uint32_t inflight;
    char what[96]; /* "function hello", "key 3f2a…", for messages */
    char *hkey;    /* functions and links: their hash key */
    UT_hash_handle hh;
    struct pol_gate *next_all; /* every gate, for closing */
} pol_gate;

/* What the policy keeps per tenant for shaping and quotas, apart from
 * pol_tenant (which goes when the tenant is deleted): never freed before
 * the policy closes. */
typedef struct pol_tstate {
    char *name; /* hash key */
    pol_gate *gate;
    mxu_quota quota;
    uint32_t month;       /* year * 12 + month - 1 of the counters below */
    uint64_t used_inv;    /* invocations that were not rejected, this month */
    uint64_t used_mem_ms; /* sum of memory_bytes * billed_ms */
    uint64_t used_out;    /* bytes out */
    uint64_t reserved;    /* invocations admitted, whose record is not counted yet */
    UT_hash_handle hh;
} pol_tstate;

/* A key as the node remembers it. Never freed before the policy closes: a
 * principal is a pointer to one (see policy.h). */
struct mxu_principal {
    char id[MXU_KEY_ID_HEX + 1]; /* hash key */
    char *tenant;
    enum mxu_role role;
    char *scope;
    char *note;
    unsigned char hash[32];
    uint64_t created_ms;
    uint64_t expires_ms; /* 0 = never */
    uint64_t revoked_ms; /* 0 = live */
    uint64_t seq;        /* creation order, for listings */
    pol_gate *gate;      /* its limits, or NULL */
    enum mxu_priority priority;
    UT_hash_handle hh;
};

/* One rule of a policy document (docs/policy.md "Policy documents"). Every
 * name is a glob (fnmatch) unless said otherwise; tenants are filled in
 * where the document left them implied, so matching never guesses. */
typedef struct pol_rule {
    bool deny;
    enum mxu_link_kind kind;
    /* unit and resource links: the calling function */
    char *from_tenant, *from_name;
    /* client links: the key's tenant, role (exact name) and id; NULL = any */
    char *c_tenant, *c_role, *c_key;
    /* the target: a function, or a resource of kind res_kind (exact) */
    char *to_tenant, *to_name, *res_kind;
    uint32_t ops; /* resource links: bits of the kind's operations (pol_ops) */
    char *note;
    int line;
    uint32_t index; /* 1-based, in its document */
    char *text;     /* "deny unit->resource payments -> kv:orders put" */
} pol_rule;

struct mxu_poldoc {
    char *tenant; /* NULL: the node's document */
    pol_rule *rules;
    size_t n;
};

/* policy-doc.c: a resource kind's operations, in bit order; NULL-terminated.
 * NULL for a kind that is not kv, blob or queue. */
const char *const *pol_ops(const char *res_kind);
bool pol_is_glob(const char *s);

/* policy-links.c */
typedef struct pol_compiled pol_compiled;
int pol_links_open(mxu_policy *p, mxu_err *err);
void pol_links_close(mxu_policy *p);
/* A tenant is gone: drop its documents. */
void pol_links_tenant_deleted(mxu_policy *p, const char *tenant);

typedef struct pol_tenant {
    char *name; /* hash key */
    uint64_t created_ms;
    UT_hash_handle hh;
} pol_tenant;

struct mxu_policy {
    char *data_dir;
    bool auth;
    sqlite3 *db;
    pol_tenant *tenants; /* uthash head */
    mxu_principal *keys; /* uthash head, by id */
    uint64_t next_seq;
    mxu_principal node_admin; /* who every request is with auth off */
    pol_gate *gates;          /* functions and links, by hkey */
    pol_gate *all_gates;      /* every gate (next_all) */
    pol_tstate *tstates;      /* by tenant name */
    pol_tstate *tstate_last;  /* the one pol_tstate_get found last (never freed before close) */
    mxu_meter *meter;         /* quotas count its records; NULL = not enforced */
    pol_compiled *links;      /* the rules in force; replaced whole on apply */
    struct pol_scope *scopes; /* the document in force per scope, by tenant ("" = node) */
};

/* policy-key.c */
/* 32 bytes → 64 lowercase hex digits + NUL. */
void pol_hex(const unsigned char *bin, size_t n, char *out);

/* policy-shape.c: create the tables and load limits (after keys). */
int pol_shape_open(mxu_policy *p, mxu_err *err);
void pol_shape_close(mxu_policy *p);
pol_tstate *pol_tstate_get(mxu_policy *p, const char *tenant);
pol_tstate *pol_tstate_find(const mxu_policy *p, const char *tenant);
pol_gate *pol_gate_new(mxu_policy *p, const char *what);

/* policy-quota.c */
int pol_quota_load(mxu_policy *p, mxu_err *err);
json_t *pol_quota_json(mxu_policy *p, pol_tstate *ts, uint64_t now_ms);

/* policy-store.c */
mxu_principal *pol_key_find(const mxu_policy *p, const char *id);
bool pol_key_live(const mxu_principal *k, uint64_t now_ms);

#endif
