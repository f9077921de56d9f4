/* Shared by the compose files. */
#ifndef MXU_COMPOSE_INTERNAL_H
#define MXU_COMPOSE_INTERNAL_H

#include "compose/compose.h"

/* ---- breakers (compose.c): one per (tenant, service, step id) ---- */

typedef struct breaker_entry {
    struct breaker_entry *next;
    mxu_breaker b;
    char key[]; /* "tenant/service/step" */
} breaker_entry;

/* ---- traces (compose-trace.c) ---- */

/* One call a step made (an attempt, or its fallback). */
typedef struct trace_call {
    char fn[136]; /* "pricing@2" */
    uint64_t start_us, dur_us;
    int status;    /* HTTP status it answered or failed with; 0 = never answered */
    char *error;   /* NULL if it succeeded */
    bool fallback; /* the step's fallback */
} trace_call;

/* One step of a run, as its trace shows it. */
typedef struct trace_row {
    char *id;
    const char *kind; /* "call", "parallel", "switch", "group", "on_error" */
    char *route;      /* the route taken: "pricing@beta", "case gold", "default" */
    char *why;        /* "header x-beta=1", "weight 10/100 (draw 93)", ... */
    char fn[136];     /* the function@version that gave the step's answer */
    uint64_t start_us, dur_us;
    int status;
    char *error;
    trace_call *calls;
    size_t ncalls, cap;
    bool open; /* not finished yet (a cancelled branch) */
} trace_row;

typedef struct trace_store trace_store;
trace_store *trace_store_new(size_t max_runs, size_t max_bytes);
void trace_store_free(trace_store *ts);
/* What a listing shows of a run without reading its whole trace. */
typedef struct trace_summary {
    uint64_t run; /* the run's invocation id */
    uint32_t version;
    int status;
    uint64_t start_ms, duration_us;
} trace_summary;
/* Keep one run's trace (the JSON text is taken). Evicts the tenant's oldest
 * runs past its bounds. */
void trace_store_add(trace_store *ts, const char *tenant, const char *service,
                     const uint8_t trace_id[16], const trace_summary *sum, char *json, size_t len);
json_t *trace_store_list(trace_store *ts, const char *tenant, const char *service, size_t limit,
                         bool (*allow)(void *ud, const char *tenant, const char *service),
                         void *ud);
json_t *trace_store_get(trace_store *ts, const char *tenant, const uint8_t trace_id[16]);
bool trace_store_owner(trace_store *ts, const uint8_t trace_id[16], char *tenant, size_t tlen,
                       char *service, size_t slen);

struct mxu_compose {
    uv_loop_t *loop;
    mxu_compose_config cfg;
    uint64_t rng; /* xorshift64* state: draws and span ids, nothing secret */
    breaker_entry **breakers;
    size_t nbuckets, nbreakers;
    trace_store *traces;
    mxu_compose_run *runs; /* every run not yet freed (destroy cancels them) */
    bool attached;         /* runs the scheduler's svc: calls to services */
};

uint64_t compose_rand(mxu_compose *c);
/* Cancel every run still going (destroy). */
void compose_cancel_all(mxu_compose *c);
/* The breaker of a step (made closed on first use). */
mxu_breaker *compose_breaker(mxu_compose *c, const char *tenant, const char *service,
                             const char *step);

#endif
