/*
 * unit — what gets instantiated: a function version bound to its limits (and,
 * from the resources issue on, its descriptor table), plus the host side of
 * the channel protocol that instances speak (frame.h is the wire format).
 */
#ifndef MXU_UNIT_H
#define MXU_UNIT_H

#include "core/core.h"
#include "exec/exec.h"
#include "registry/registry.h"
#include "resolve/resolve.h"
#include "unit/frame.h"

#include <uv.h>

/* ---- units ----------------------------------------------------------------- */

typedef struct mxu_unit mxu_unit;

/* Bind a version into a unit: the program to run, its environment (the
 * manifest's env, a default PATH unless the manifest sets one, MXU_FUNCTION,
 * MXU_VERSION and the node marker `node_env`), limits and executor (the
 * manifest's, else `default_executor`, else "process"). Takes a reference on
 * `v`. */
int mxu_unit_create(mxu_fn_version *v, const char *node_env, const char *default_executor,
                    mxu_unit **out, mxu_err *err);
void mxu_unit_free(mxu_unit *u);

mxu_fn_version *mxu_unit_version(const mxu_unit *u);
const mxu_manifest *mxu_unit_manifest(const mxu_unit *u);
const char *mxu_unit_label(const mxu_unit *u); /* "hello@3" */
const mxu_executor_ops *mxu_unit_executor(const mxu_unit *u);
/* The spawn request for a warm (channel) instance of this unit. */
const mxu_exec_spec *mxu_unit_warm_spec(const mxu_unit *u);
/* The spawn request for one exec-runtime invocation: the unit's environment
 * plus `extra_env` (NULL-terminated "K=V" strings, borrowed). The result
 * lives in `scratch` (freed by the caller with mxu_unit_spec_scratch_free). */
typedef struct mxu_unit_spec_scratch {
    mxu_exec_spec spec;
    const char **envp;
} mxu_unit_spec_scratch;
void mxu_unit_exec_spec(const mxu_unit *u, const char *const *extra_env,
                        mxu_unit_spec_scratch *scratch);
void mxu_unit_spec_scratch_free(mxu_unit_spec_scratch *scratch);

/* ---- descriptor tables --------------------------------------------------------
 * A unit's declared resources, bound through the resolver, and the checks
 * every operation from an instance passes before it reaches a backend: the
 * descriptor is declared, the operation is within its access mode, keys and
 * values are within limits, the descriptor's operations-per-second budget is
 * not spent. All instances of a unit share its table; bindings follow the
 * resource map live, so a re-bound resource needs no restart. */

typedef struct mxu_desc_table mxu_desc_table;

/* Bind every kv/blob/queue descriptor of `m` for `tenant`. svc descriptors
 * are kept for lookup; the scheduler resolves their targets per call. */
int mxu_desc_table_create(const mxu_manifest *m, mxu_resolver *r, const char *tenant,
                          mxu_desc_table **out, mxu_err *err);
void mxu_desc_table_free(mxu_desc_table *t);

/* The declared descriptor called `name`, or NULL. */
const mxu_resource_decl *mxu_desc_find(const mxu_desc_table *t, mxu_slice name);

/* Check an operation against its descriptor (declared, access, shape,
 * sizes, rate). Returns MXU_RES_OK, or the status to answer with and a
 * message in why. Applies to svc calls too (access and body size only). */
enum mxu_res_status mxu_desc_check(mxu_desc_table *t, const mxu_res_op_msg *op, char *why,
                                   size_t whylen);

/* An operation's name as policy documents write it: "get", "put", "cas",
 * "read", "publish", ... ("call" for svc). */
const char *mxu_desc_op_name(uint32_t op);

/* Run a checked kv/blob/queue operation on the descriptor's binding, on
 * behalf of `owner`: the invocation that sent it (its id, unique on the
 * node). Blob uploads belong to their owner, so two invocations writing one
 * key never mix their chunks. The callback runs exactly once, possibly
 * before this returns. */
void mxu_desc_run(mxu_desc_table *t, const mxu_res_op_msg *op, uint64_t owner, mxu_res_cb cb,
                  void *ud);

/* `owner` ended (answered, failed, timed out, or its instance died): drop
 * the blob uploads it left unfinished, with their temporary data, now. The
 * scheduler calls this for every invocation that ran; it costs nothing for
 * a unit without blob descriptors. */
void mxu_desc_release(mxu_desc_table *t, uint64_t owner);

/* ---- channels: frames over a stream socket -------------------------------- */

typedef struct mxu_channel mxu_channel;

typedef struct mxu_channel_cbs {
    /* One complete, header-validated frame. `payload` is valid during the call. */
    void (*on_frame)(mxu_channel *ch, const mxu_frame_hdr *h, const uint8_t *payload, void *ud);
    /* The stream ended (code 0) or failed (errno, or EPROTO for a bad frame).
     * No frame follows; the owner closes the channel. */
    void (*on_end)(mxu_channel *ch, int code, const char *why, void *ud);
    /* Optional: called once per read that brought at least one complete
     * frame, with `begin` before those frames are handed out and without it
     * after the last of them (unless the channel ended or is closing). */
    void (*on_batch)(mxu_channel *ch, bool begin, void *ud);
} mxu_channel_cbs;

/* Take over `fd`, read from, and `wfd`, written to (both non-blocking): a
 * pipe each way, or one stream socket with wfd -1. Frames larger than
 * `max_payload` are a protocol error. */
int mxu_channel_open(uv_loop_t *loop, int fd, int wfd, size_t max_payload,
                     const mxu_channel_cbs *cbs, void *ud, mxu_channel **out, mxu_err *err);

/* Append a frame to the output. Writes are gathered and flushed once per loop
 * iteration (before the loop waits for I/O again), so frames queued for one instance
 * in one turn of the loop go out in one write(). Returns a pointer to the
 * `len` payload bytes to fill in before returning to the loop. */
uint8_t *mxu_channel_frame(mxu_channel *ch, uint8_t type, uint64_t id, uint32_t len);
/* Bytes queued and not yet written. */
size_t mxu_channel_pending(const mxu_channel *ch);
/* Stop reading, drop pending output, close the fd, free (asynchronously).
 * No callback runs after this. */
void mxu_channel_close(mxu_channel *ch);

#endif
