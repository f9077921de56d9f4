/*
 * policy — who may do what on a node, and how fast (docs/policy.md):
 * authentication and the role matrix (tenants, API keys, "may this key do
 * this action on this tenant's function"), traffic shaping (token-bucket
 * rates and concurrency caps per tenant, key, function and link; priority
 * classes), monthly quotas per tenant, and policy documents: versioned
 * YAML rules over the three kinds of link (client -> function, unit -> unit,
 * unit -> resource), compiled into lookup tables.
 *
 * Keys look like `mxu_<id>_<secret>`: 16 hex digits of id, by which a key is
 * found, and 64 hex digits (32 random bytes) of secret, of which only a
 * BLAKE2b hash is stored. They live in the node's state database (tables
 * `tenants` and `api_keys`) and are mirrored in memory, so authenticating a
 * request is a hash lookup and one hash of 32 bytes, never a query; a
 * revocation changes the mirror in the same call, so it takes effect at once.
 *
 * Everything runs on the loop thread. Principals (what an authenticated key
 * is) stay valid until mxu_policy_close(): revoked keys are marked, never
 * freed, so a request in flight never holds a dangling pointer.
 */
#ifndef MXU_POLICY_H
#define MXU_POLICY_H

#include "core/core.h"
#include "meter/meter.h"

#include <jansson.h>

/* ---- names, roles, key text ------------------------------------------------ */

/* The tenant that exists from the first start and owns everything made
 * before tenants existed; its admins are the node's operators. */
#define MXU_TENANT_DEFAULT "default"

/* Tenant names: [a-z][a-z0-9-]{0,31}, no trailing '-'. */
bool mxu_tenant_name_valid(const char *s);

enum mxu_role {
    MXU_ROLE_ADMIN,    /* everything in its tenant; in tenant default: the node */
    MXU_ROLE_DEPLOYER, /* deploy, delete, alias, invoke, read functions in scope */
    MXU_ROLE_INVOKER,  /* invoke functions in scope */
    MXU_ROLE_VIEWER,   /* read functions in scope: versions, logs, instances */
};
const char *mxu_role_name(enum mxu_role r);
/* "admin" → MXU_ROLE_ADMIN; -1 (EINVAL, the message lists the roles) if unknown. */
int mxu_role_parse(const char *s, enum mxu_role *out, mxu_err *err);

/* A scope is an fnmatch(3) glob over function names ("*", "web-*",
 * "api-[ab]"): at most 64 bytes of name characters and * ? [ ] !. */
bool mxu_scope_valid(const char *s);
bool mxu_scope_match(const char *scope, const char *function);

#define MXU_KEY_ID_HEX     16 /* 8 random bytes */
#define MXU_KEY_SECRET_HEX 64 /* 32 random bytes */
#define MXU_KEY_TEXT_LEN   (4 + MXU_KEY_ID_HEX + 1 + MXU_KEY_SECRET_HEX)

/* Split "mxu_<id>_<secret>" into the id (MXU_KEY_ID_HEX + 1 bytes) and the
 * secret's 32 bytes. -1 with EINVAL and a message saying what is wrong with
 * the shape (never quoting the secret). */
int mxu_key_parse(const char *text, char *id, unsigned char secret[32], mxu_err *err);
/* The stored form of a secret: BLAKE2b-256 over the id and the secret. */
void mxu_key_hash(const char *id, const unsigned char secret[32], unsigned char hash[32]);

/* "30d", "12h", "90s", "500ms" → milliseconds (days on top of the durations
 * core knows). */
int mxu_expiry_parse(const char *s, uint64_t *ms, mxu_err *err);

/* ---- the policy store ------------------------------------------------------ */

typedef struct mxu_policy mxu_policy;
typedef struct mxu_principal mxu_principal;

typedef struct mxu_policy_config {
    const char *data_dir; /* holds state.db; must exist */
    /* false: every request is the node admin, no key is asked for (for
     * benchmarks comparing on and off; the node warns loudly). */
    bool auth;
} mxu_policy_config;

/* Open the tables (creating them, and tenant default, on first start) and
 * load tenants and keys into memory. */
int mxu_policy_open(const mxu_policy_config *cfg, mxu_policy **out, mxu_err *err);
void mxu_policy_close(mxu_policy *p);
bool mxu_policy_auth_enabled(const mxu_policy *p);

/* ---- tenants ---- */

bool mxu_policy_tenant_exists(const mxu_policy *p, const char *name);
/* EINVAL bad name, EEXIST exists. Durable before it returns. */
int mxu_policy_tenant_create(mxu_policy *p, const char *name, mxu_err *err);
/* Delete a tenant and revoke its keys. EPERM for tenant default, ENOENT if
 * there is none. The caller checks first that the tenant owns nothing. */
int mxu_policy_tenant_delete(mxu_policy *p, const char *name, mxu_err *err);
/* [{"name", "created", "keys": N (live)}], sorted by name. */
json_t *mxu_policy_tenants_json(const mxu_policy *p);

/* ---- keys ---- */

typedef struct mxu_key_spec {
    const char *tenant;
    enum mxu_role role;
    const char *scope;   /* NULL = "*" */
    uint64_t expires_ms; /* wall clock; 0 = never */
    const char *note;    /* free text shown in listings; NULL = "" */
} mxu_key_spec;

/* Make a key. *text_out (caller frees, MXU_KEY_TEXT_LEN chars) is the only
 * time the secret exists outside the caller's memory; *info_out is the key's
 * JSON (as in listings). ENOENT no such tenant, EINVAL bad scope. */
int mxu_policy_key_create(mxu_policy *p, const mxu_key_spec *spec, char **text_out,
                          json_t **info_out, mxu_err *err);
/* Revoke at once (memory and disk). ENOENT unknown id. Revoking twice is fine. */
int mxu_policy_key_revoke(mxu_policy *p, const char *id, mxu_err *err);
/* The tenant a key id belongs to, or NULL if there is no such key. */
const char *mxu_policy_key_tenant(const mxu_policy *p, const char *id);
/* [{"id", "tenant", "role", "scope", "created", "expires", "revoked", "note",
 * "state": "active"|"revoked"|"expired"}] of one tenant (or all: NULL), by
 * creation. Never a secret or a hash. */
json_t *mxu_policy_keys_json(const mxu_policy *p, const char *tenant);

/* ---- authentication ---- */

/* Turn an Authorization header value (NULL if the request had none) into a
 * principal. On failure -1 and err->code says which case it is, the message
 * what to do:
 *   ENOKEY       no header
 *   EINVAL       not "Bearer mxu_<id>_<secret>"
 *   ENOENT       no such key, or the secret does not match (the same answer
 *                for both, so the answer tells nothing about which ids exist)
 *   EKEYREVOKED  revoked (or its tenant was deleted)
 *   EKEYEXPIRED  past its expiry
 * With authentication off, always succeeds with the node admin. */
int mxu_policy_authenticate(mxu_policy *p, const char *authorization, const mxu_principal **out,
                            mxu_err *err);

/* The same, remembering per connection what the last success proved. A
 * client on a keep-alive connection sends the same key with every request:
 * a value equal byte for byte to the one `*memo` proved skips parsing and
 * hashing the key (~0.4 µs of a ~10 µs warm invocation); revocation and
 * expiry are checked every time. The memo holds that value (zeroed when
 * freed) and is only ever compared with what the same connection sends.
 * Free it with mxu_auth_memo_free. */
typedef struct mxu_auth_memo mxu_auth_memo;
int mxu_policy_authenticate_memo(mxu_policy *p, const char *authorization, mxu_auth_memo **memo,
                                 const mxu_principal **out, mxu_err *err);
void mxu_auth_memo_free(void *memo);
/* Is this header value an mxu key at all (so the node, not the function it
 * is addressed to, is its recipient)? */
bool mxu_policy_is_key_header(const char *authorization);

const char *mxu_principal_tenant(const mxu_principal *who);
enum mxu_role mxu_principal_role(const mxu_principal *who);
const char *mxu_principal_key_id(const mxu_principal *who); /* "" with auth off */
const char *mxu_principal_scope(const mxu_principal *who);
/* Admin of tenant default: the node's operator. */
bool mxu_principal_is_node_admin(const mxu_principal *who);

/* ---- authorization: the role matrix (docs/policy.md) ---- */

enum mxu_action {
    MXU_ACT_INVOKE,     /* ANY /fn/NAME */
    MXU_ACT_FN_READ,    /* GET function, versions, aliases, logs, instances; list */
    MXU_ACT_FN_WRITE,   /* deploy, delete function or version, set or delete alias */
    MXU_ACT_KEYS,       /* create, list, revoke keys of the tenant */
    MXU_ACT_NODE_READ,  /* node-wide views: all instances, the whole resource map */
    MXU_ACT_NODE_ADMIN, /* tenants, prices */
    MXU_ACT_RESOURCES,  /* the tenant's entries of the resource map: list, set, reset, move */
    MXU_ACT_USAGE,      /* read the tenant's usage records and bills */
    MXU_ACT_POLICY,     /* apply and read the tenant's policy documents */
};

/* May `who` do `act` on function `function` (NULL for actions that name
 * none) of tenant `tenant`? 0 if so; else -1 with EACCES and a message that
 * names the rule that denied it ("role invoker of tenant acme may not deploy
 * functions"). */
int mxu_policy_check(const mxu_principal *who, enum mxu_action act, const char *tenant,
                     const char *function, mxu_err *err);

/* ---- bootstrap: the first admin key ---- */

/* At start: if tenant default has no live admin key, make one and write it
 * to <data_dir>/admin.key (0600). Then, if admin.key holds a live key, put it
 * into the CLI credentials file for `url` (see mxu_credentials_path). Says
 * what it did in the node's log. Failing to write the credentials file is a
 * warning, not an error (a node may run as a user without a home). */
int mxu_policy_bootstrap(mxu_policy *p, const char *url, mxu_err *err);

/* The CLI's credentials file: $XDG_CONFIG_HOME/mxu/credentials, else
 * ~/.config/mxu/credentials. One line per node, "URL KEY"; mode 0600.
 * Caller frees; NULL if neither variable is set. */
char *mxu_credentials_path(void);
/* The key stored for `url` (trailing '/' ignored), or NULL; caller frees. */
char *mxu_credentials_lookup(const char *path, const char *url);
/* Set the line for `url`, keeping the others; written atomically, 0600. */
int mxu_credentials_store(const char *path, const char *url, const char *key, mxu_err *err);

/* ---- traffic shaping (policy-shape.c; docs/policy.md "Traffic shaping") ---- */

/* Priority classes. Under saturation the scheduler's queue serves critical
 * before default before batch, and sheds batch before default before
 * critical. DEFAULT is 0 so that a zeroed request is of the default class;
 * compare classes with mxu_priority_rank(). */
enum mxu_priority {
    MXU_PRIO_DEFAULT = 0,
    MXU_PRIO_CRITICAL = 1,
    MXU_PRIO_BATCH = 2,
};
/* batch 0 < default 1 < critical 2. */
static inline int mxu_priority_rank(enum mxu_priority p)
{
    return p == MXU_PRIO_CRITICAL ? 2 : p == MXU_PRIO_BATCH ? 0 : 1;
}
const char *mxu_priority_name(enum mxu_priority p);
/* "critical" | "default" | "batch"; -1 (EINVAL) otherwise. */
int mxu_priority_parse(const char *s, enum mxu_priority *out, mxu_err *err);

/* Limits of one shaped thing (a tenant, a key, a function, a link). */
typedef struct mxu_limits {
    uint64_t rate;        /* requests per period_ms; 0 = no rate limit */
    uint64_t period_ms;   /* 1000, 60000 or 3600000 */
    uint32_t burst;       /* requests allowed at once; 0 = mxu_limits_burst()'s default */
    uint32_t concurrency; /* running at once; 0 = no cap */
} mxu_limits;

static inline bool mxu_limits_any(const mxu_limits *l)
{
    return l->rate != 0 || l->concurrency != 0;
}
/* The burst in force: `burst`, or one second's worth of the rate (at least 1). */
uint32_t mxu_limits_burst(const mxu_limits *l);
/* "100/s, burst 20, concurrency 50" (the parts that are set). */
void mxu_limits_describe(const mxu_limits *l, char *out, size_t outlen);
/* {"rate": "100/s"|null, "burst": N|null, "concurrency": N|null}. */
json_t *mxu_limits_json(const mxu_limits *l);
/* The same form (rate also as {"rate": "100/s"}); a field left out or null
 * is unset. EINVAL with a message naming the field. */
int mxu_limits_from_json(json_t *j, mxu_limits *out, mxu_err *err);

/* A token bucket in its GCRA form: one number, the theoretical arrival time
 * of the next request. A request at `now` is allowed when it would not put
 * the bucket more than `burst` emission intervals ahead of now. Pure (time
 * is given), so it is tested without a clock. */
typedef struct mxu_bucket {
    uint64_t tat_ns;
} mxu_bucket;
/* May one request pass at now_ns? If so, *next is the bucket's state after
 * it (store it to take the token); if not, *retry_ns is how long until it
 * would pass. A limit without a rate always passes. */
bool mxu_bucket_check(const mxu_bucket *b, const mxu_limits *l, uint64_t now_ns, mxu_bucket *next,
                      uint64_t *retry_ns);

/* Why a request was refused (429): a code ("rate_limited",
 * "concurrency_limited", "quota_exceeded"), the seconds after which it may
 * pass (Retry-After, >= 1), and a sentence naming the limit ("rate limit of
 * function hello: 100/s, burst 20"). */
typedef struct mxu_shape_denial {
    const char *code;
    uint32_t retry_after_s;
    char message[256];
} mxu_shape_denial;

/* What an admitted request holds: the concurrency slots it took, given back
 * by mxu_shape_release() when it ends. Zero-initialise. */
typedef struct mxu_shape_ticket {
    void *held[4];
    uint32_t n;
} mxu_shape_ticket;

/* Limits of a tenant and of a key, kept in state.db (table shape_limits)
 * and applied at once. `lim` NULL or all zero removes them. EINVAL, ENOENT. */
int mxu_policy_tenant_limits_set(mxu_policy *p, const char *tenant, const mxu_limits *lim,
                                 mxu_err *err);
int mxu_policy_key_limits_set(mxu_policy *p, const char *id, const mxu_limits *lim, mxu_err *err);
/* A key's priority class (default: MXU_PRIO_DEFAULT). ENOENT unknown key. */
int mxu_policy_key_priority_set(mxu_policy *p, const char *id, enum mxu_priority prio,
                                mxu_err *err);
enum mxu_priority mxu_principal_priority(const mxu_principal *who);
/* {"tenant", "limits": {...}, "quotas": {...}, "usage": {...}} */
json_t *mxu_policy_tenant_limits_json(mxu_policy *p, const char *tenant);
/* {"id", "limits": {...}, "priority"} */
json_t *mxu_policy_key_limits_json(mxu_policy *p, const char *id);

/* Admit one invocation of `tenant`'s `function` by `who` (NULL: no key, a
 * public function) under the key's, the tenant's and the function's limits
 * (`fn`: from its manifest; NULL = none). All are checked before any token
 * or slot is taken, so a refusal costs no limit anything. 0 and a ticket, or
 * -1 and the denial of the limit that waits longest. Loop thread only. */
int mxu_shape_admit(mxu_policy *p, const mxu_principal *who, const char *tenant,
                    const char *function, const mxu_limits *fn, uint64_t now_ns,
                    mxu_shape_ticket *t, mxu_shape_denial *d);
/* A link: `caller` (a function of `tenant`) calling through its descriptor
 * `desc` under the descriptor's limits. */
int mxu_shape_admit_link(mxu_policy *p, const char *tenant, const char *caller, const char *desc,
                         const mxu_limits *lim, uint64_t now_ns, mxu_shape_ticket *t,
                         mxu_shape_denial *d);
/* Give back the ticket's concurrency slots (idempotent: the ticket is cleared). */
void mxu_shape_release(mxu_shape_ticket *t);

/* ---- quotas (policy-quota.c; docs/policy.md "Quotas") ---- */

/* Per tenant per calendar month (UTC); 0 = unlimited. */
typedef struct mxu_quota {
    uint64_t invocations;
    uint64_t gb_seconds; /* GB = 2^30 bytes of configured memory, as the bill counts */
    uint64_t bytes_out;
} mxu_quota;

/* Set (replace) a tenant's quotas; durable before it returns, in force at once. */
int mxu_policy_quota_set(mxu_policy *p, const char *tenant, const mxu_quota *q, mxu_err *err);
/* Count this month's usage of every tenant from the meter's records (at
 * start), and from then on count each record as it is handed to the meter. */
int mxu_policy_quota_attach(mxu_policy *p, mxu_meter *m, mxu_err *err);
/* Reserve one invocation of `tenant` (O(1)): 0 when reserved (give it back
 * with mxu_quota_release), -1 with the denial if a quota
 * of the month is reached, counting invocations in flight, so concurrent
 * requests never run more than the quota. Without a meter attached, quotas
 * are not enforced (there is nothing to count them from). */
int mxu_quota_reserve(mxu_policy *p, const char *tenant, uint64_t now_ms, mxu_shape_denial *d);
/* Give the reservation back: after the invocation's record was handed to the
 * meter (which counted it), or when it will have none. */
void mxu_quota_release(mxu_policy *p, const char *tenant);

/* ---- policy documents and link rules (policy-doc.c, policy-links.c;
 * docs/policy.md "Policy documents") ---- */

enum mxu_link_kind {
    MXU_LINK_CLIENT,   /* client -> function: an invocation over HTTP */
    MXU_LINK_UNIT,     /* unit -> unit: an svc: call */
    MXU_LINK_RESOURCE, /* unit -> resource: a kv, blob or queue operation */
};
#define MXU_LINK_KINDS 3

/* One parsed, validated document (pure: no store). */
typedef struct mxu_poldoc mxu_poldoc;

/* Parse a policy document for `tenant`'s scope (NULL: the node's). Errors
 * are "FILE:LINE: FIELD: message", like manifests'. Rules of a tenant's
 * document stay inside the tenant: naming another tenant is an error. */
int mxu_poldoc_parse(const char *text, size_t len, const char *file, const char *tenant,
                     mxu_poldoc **out, mxu_err *err);
void mxu_poldoc_free(mxu_poldoc *d);
size_t mxu_poldoc_nrules(const mxu_poldoc *d);
/* The canonical form: one rule per line, in a fixed field order, tenants
 * left out where implied; it parses back to the same rules. Caller frees. */
char *mxu_poldoc_canonical(const mxu_poldoc *d);
/* A unified diff of two texts, line by line ("" when equal). Caller frees. */
char *mxu_text_diff(const char *a, const char *b, const char *name_a, const char *name_b);

/* The largest document accepted, in bytes. */
#define MXU_POLDOC_MAX_BYTES (4u << 20)

/* Validate `text` for the scope of `tenant` (NULL: the node), store it as
 * the scope's next version (durable before it returns), and put the scope's
 * rules into force at once (a new compiled table, swapped in whole). A
 * document that does not validate changes nothing (EINVAL, the error names
 * the line and field). *info: {"version", "tenant", "rules", "diff"}. */
int mxu_policy_doc_apply(mxu_policy *p, const char *tenant, const char *text, size_t len,
                         const char *file, const char *by, json_t **info, mxu_err *err);
/* The versions of a scope: [{"version", "tenant", "created", "by", "file",
 * "rules", "active"}], oldest first; all scopes when all is true. */
json_t *mxu_policy_docs_json(mxu_policy *p, const char *tenant, bool all);
/* One version (0: the one in force; {"version": 0, "rules": 0} if none):
 * {"version", "tenant", "created", "by", "file", "rules", "active",
 * "canonical", "document"}. NULL with ENOENT if there is no such version. */
json_t *mxu_policy_doc_json(mxu_policy *p, const char *tenant, uint32_t version, mxu_err *err);
/* Unified diff of the canonical forms of versions a and b of a scope. */
int mxu_policy_doc_diff(mxu_policy *p, const char *tenant, uint32_t a, uint32_t b, char **out,
                        mxu_err *err);

/* A link to check. Client links name the principal (NULL: a request without
 * a key); the other kinds the calling function (from_tenant, from_fn). The
 * target is to_tenant's function or resource to_name; resources also give
 * their kind ("kv", "blob", "queue") and the operation ("get", "put", ...). */
typedef struct mxu_policy_link {
    enum mxu_link_kind kind;
    const mxu_principal *who;
    const char *from_tenant, *from_fn;
    const char *to_tenant, *to_name;
    const char *res_kind, *op;
} mxu_policy_link;

/* The policy's verdict on a link, in this order (docs/policy.md):
 *   1. a matching deny rule, in any document that applies: denied, naming
 *      the first such rule ("policy v3 rule 2 (deny unit->resource payments
 *      -> kv:orders put)");
 *   2. else a matching allow rule: allowed;
 *   3. else the default: allowed if `open` (a same-tenant link, or a public
 *      callee), denied otherwise ("no policy rule allows ...").
 * 0 if allowed; -1 with EACCES and the message if denied. *by_rule (may be
 * NULL) says whether an allow rule decided. Loop thread only. */
int mxu_policy_link_check(const mxu_policy *p, const mxu_policy_link *l, bool open, bool *by_rule,
                          mxu_err *err);
/* Does any rule of this kind exist at all (the callers' fast path)? */
bool mxu_policy_has_link_rules(const mxu_policy *p, enum mxu_link_kind kind);

#endif
