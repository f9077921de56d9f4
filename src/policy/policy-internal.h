/*
 * What the files of src/policy share and nobody else sees:
 *
 *   policy-key.c    names, roles, scopes, the key text and its hash, expiry
 *                   durations, the CLI credentials file (pure: unit-tested
 *                   without a node)
 *   policy-store.c  the tables in state.db and their mirror in memory,
 *                   tenants, keys, authentication
 *   policy-authz.c  the role matrix, and the bootstrap of the first admin key
 */
#ifndef MXU_POLICY_INTERNAL_H
#define MXU_POLICY_INTERNAL_H

#include "policy.h"

#include <sqlite3.h>
#include <uthash.h>

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
    UT_hash_handle hh;
};

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
};

/* policy-key.c */
/* 32 bytes → 64 lowercase hex digits + NUL. */
void pol_hex(const unsigned char *bin, size_t n, char *out);

/* policy-store.c */
mxu_principal *pol_key_find(const mxu_policy *p, const char *id);
bool pol_key_live(const mxu_principal *k, uint64_t now_ms);

#endif
