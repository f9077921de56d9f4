/*
 * The compose engine's state that outlives runs: the circuit breakers (a
 * hash table keyed by "tenant/service/step"), the random source for
 * weighted draws and span ids, and the trace store. Runs themselves are in
 * compose-run.c.
 */
#include "compose-internal.h"

#include <sodium.h>
#include <string.h>

int mxu_compose_create(uv_loop_t *loop, const mxu_compose_config *cfg, mxu_compose **out,
                       mxu_err *err)
{
    if (cfg->reg == NULL || cfg->sched == NULL)
        return mxu_err_set(err, EINVAL, "compose: a registry and a scheduler are needed");
    if (sodium_init() < 0)
        return mxu_err_set(err, EIO, "compose: cannot initialise libsodium");
    mxu_compose *c = mxu_calloc(1, sizeof(*c));
    c->loop = loop;
    c->cfg = *cfg;
    if (c->cfg.max_depth == 0)
        c->cfg.max_depth = 8;
    if (c->cfg.trace_max_runs == 0)
        c->cfg.trace_max_runs = 10000;
    if (c->cfg.max_run_steps == 0)
        c->cfg.max_run_steps = 10000;
    if (c->cfg.max_response_bytes == 0)
        c->cfg.max_response_bytes = (size_t)6 << 20;
    if (c->cfg.trace_max_bytes == 0)
        c->cfg.trace_max_bytes = (size_t)64 << 20;
    randombytes_buf(&c->rng, sizeof(c->rng));
    c->rng |= 1; /* xorshift must not start at 0 */
    c->nbuckets = 64;
    c->breakers = mxu_calloc(c->nbuckets, sizeof(*c->breakers));
    c->traces = trace_store_new(c->cfg.trace_max_runs, c->cfg.trace_max_bytes);
    *out = c;
    return 0;
}

static void *svc_invoke(void *ud, mxu_fn_version *v, mxu_invoke_req *req, mxu_invoke_cb cb,
                        void *cb_ud)
{
    return mxu_compose_invoke(ud, v, req, cb, cb_ud);
}

static void svc_cancel_then(void *ud, void *run, void (*gone)(void *gone_ud), void *gone_ud)
{
    MXU_UNUSED(ud);
    mxu_compose_cancel_then(run, gone, gone_ud);
}

void mxu_compose_attach(mxu_compose *c)
{
    mxu_sched_services ops = {.invoke = svc_invoke, .cancel_then = svc_cancel_then, .ud = c};
    mxu_sched_set_services(c->cfg.sched, &ops);
    c->attached = true;
}

void mxu_compose_destroy(mxu_compose *c)
{
    if (c == NULL)
        return;
    if (c->attached)
        mxu_sched_set_services(c->cfg.sched, NULL);
    compose_cancel_all(c);
    for (size_t i = 0; i < c->nbuckets; i++) {
        breaker_entry *e = c->breakers[i];
        while (e) {
            breaker_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(c->breakers);
    trace_store_free(c->traces);
    free(c);
}

uint64_t compose_rand(mxu_compose *c)
{
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

mxu_breaker *compose_breaker(mxu_compose *c, const char *tenant, const char *service,
                             const char *step)
{
    char key[256];
    snprintf(key, sizeof(key), "%s/%s/%s", tenant, service, step);
    uint64_t h = fnv1a(key);
    for (breaker_entry *e = c->breakers[h % c->nbuckets]; e; e = e->next) {
        if (strcmp(e->key, key) == 0)
            return &e->b;
    }
    if (c->nbreakers >= c->nbuckets) { /* grow: keep chains short */
        size_t nb = c->nbuckets * 2;
        breaker_entry **tab = mxu_calloc(nb, sizeof(*tab));
        for (size_t i = 0; i < c->nbuckets; i++) {
            breaker_entry *e = c->breakers[i];
            while (e) {
                breaker_entry *next = e->next;
                size_t j = fnv1a(e->key) % nb;
                e->next = tab[j];
                tab[j] = e;
                e = next;
            }
        }
        free(c->breakers);
        c->breakers = tab;
        c->nbuckets = nb;
    }
    size_t klen = strlen(key) + 1;
    breaker_entry *e = mxu_calloc(1, sizeof(*e) + klen);
    memcpy(e->key, key, klen);
    size_t j = h % c->nbuckets;
    e->next = c->breakers[j];
    c->breakers[j] = e;
    c->nbreakers++;
    return &e->b;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool parse_trace_id(const char *id, uint8_t out[16])
{
    if (id == NULL || strlen(id) != 32)
        return false;
    for (int i = 0; i < 16; i++) {
        int hi = hexval(id[2 * i]), lo = hexval(id[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

json_t *mxu_compose_trace_json(mxu_compose *c, const char *tenant, const char *id, mxu_err *err)
{
    uint8_t tid[16];
    json_t *j = parse_trace_id(id, tid) ? trace_store_get(c->traces, tenant, tid) : NULL;
    if (j == NULL)
        mxu_err_set(err, ENOENT,
                    "no trace '%.40s' is kept (traces are kept for the last %zu runs "
                    "of each tenant)",
                    id ? id : "", c->cfg.trace_max_runs);
    return j;
}

json_t *mxu_compose_traces_json(mxu_compose *c, const char *tenant, const char *service,
                                size_t limit,
                                bool (*allow)(void *ud, const char *tenant, const char *service),
                                void *ud)
{
    return trace_store_list(c->traces, tenant, service, limit, allow, ud);
}
