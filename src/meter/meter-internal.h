/* Shared inside src/meter. */
#ifndef MXU_METER_INTERNAL_H
#define MXU_METER_INTERNAL_H

#include "meter/meter.h"

/* An invocation id as the 16 hex digits clients see. */
void mxu_usage_id_hex(uint64_t id, char out[17]);

/* The UTC month holding `ms`: [start_ms, end_ms). -1 past the year 9999. */
int mxu_month_of(uint64_t ms, uint64_t *start_ms, uint64_t *end_ms);

/* ---- the journal (meter-journal.c) ---- */

/* A legacy segment's header: magic and generation. */
#define MXU_JOURNAL_HDR 16
/* The ring's header: magic, size, first lap, reserved. */
#define MXU_RING_HDR 32
/* The smallest ring (a record is at most ~5.3 KiB packed). */
#define MXU_RING_MIN (64u << 10)
/* No packed record comes near this (five strings of at most 1 KiB); a
 * larger length is a torn or foreign frame. */
#define MXU_JOURNAL_FRAME_MAX 65536u

/* Append `r` as one frame (length, checksum seeded with `lap`, packed
 * record) to out. */
void mxu_journal_append(mxu_buf *out, const mxu_usage_record *r, uint64_t lap);
/* The bytes of the frame at `frame` (header included). */
size_t mxu_journal_frame_size(const void *frame);
/* Compute the frame's check again for another lap (a frame packed before
 * the ring wrapped, stored after). */
void mxu_journal_reseal(void *frame, uint64_t lap);
/* The 8-byte wrap marker of `lap` into out; whether data holds one. */
void mxu_journal_wrap_marker(void *out, uint64_t lap);
bool mxu_journal_is_wrap(const void *data, size_t len, uint64_t lap);

/* Called for each valid frame's record (strings point into the scanned
 * bytes); returning -1 stops the scan before that frame. */
typedef int (*mxu_journal_each_fn)(void *ud, const mxu_usage_record *r);
/* Walk the frames of data[0, len): returns the length of the valid prefix,
 * i.e. where the first torn, corrupt, stale or foreign frame, a wrap marker
 * or the end is. `verify` checks each frame's checksum (lap: the ring's lap
 * they were written in; 0 for legacy segments): for bytes read back from a
 * file; the writer thread skips it for the bytes the loop framed in memory,
 * and queries for the batch rows of usage.db (SQLite's transactions keep
 * those whole; the record decoding still checks every length). */
size_t mxu_journal_scan(const void *data, size_t len, uint64_t lap, bool verify,
                        mxu_journal_each_fn each, void *ud);

/* ---- the ring ---- */

typedef struct mxu_ring {
    int fd;
    char *map;          /* the whole file, MAP_SHARED; NULL: pread/pwrite only */
    uint64_t size;      /* bytes, header included */
    uint64_t first_lap; /* the lap it began with (above every legacy segment's gen) */
} mxu_ring;

/* DIR/usage.ring; caller frees. */
char *mxu_ring_path(const char *dir);
/* Open DIR/usage.ring, or make it (`size` bytes reserved on disk, header
 * with `first_lap`, fsynced, then renamed into place): *created says which.
 * An existing ring keeps its own size. Mapped shared. */
int mxu_ring_open(const char *dir, uint64_t size, uint64_t first_lap, mxu_ring *ring, bool *created,
                  mxu_err *err);
/* Fault the whole mapping in, writable, now (the writer thread, at start):
 * a store into a page not yet faulted costs the loop ~5 us. */
void mxu_ring_prefault(const mxu_ring *ring);
/* Unmap and close (idempotent). */
void mxu_ring_close(mxu_ring *ring);

/* ---- legacy segments (replayed at start, then removed) ---- */

/* DIR/usage.journal.<gen>; caller frees. */
char *mxu_journal_path(const char *dir, uint64_t gen);
/* A segment's bytes (header included) without the zeros at its end (a
 * preallocated segment): where its data ends. */
size_t mxu_journal_data_end(const void *data, size_t len);
/* The generations of the segments in `dir`, ascending (*gens: caller frees). */
int mxu_journal_list(const char *dir, uint64_t **gens, size_t *n, mxu_err *err);
/* A whole segment into out, header included; EINVAL if the header is not
 * that of segment `gen`. */
int mxu_journal_read(const char *dir, uint64_t gen, mxu_buf *out, mxu_err *err);

#endif
