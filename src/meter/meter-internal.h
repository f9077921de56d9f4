/* Shared inside src/meter. */
#ifndef MXU_METER_INTERNAL_H
#define MXU_METER_INTERNAL_H

#include "meter/meter.h"

/* An invocation id as the 16 hex digits clients see. */
void mxu_usage_id_hex(uint64_t id, char out[17]);

/* The UTC month holding `ms`: [start_ms, end_ms). -1 past the year 9999. */
int mxu_month_of(uint64_t ms, uint64_t *start_ms, uint64_t *end_ms);

/* ---- the journal (meter-journal.c) ---- */

/* A segment's header: magic and generation. */
#define MXU_JOURNAL_HDR 16
/* No packed record comes near this (five strings of at most 1 KiB); a
 * larger length is a torn or foreign frame. */
#define MXU_JOURNAL_FRAME_MAX 65536u

/* Append `r` as one frame (length, checksum, packed record) to out. */
void mxu_journal_append(mxu_buf *out, const mxu_usage_record *r);

/* Called for each valid frame's record (strings point into the scanned
 * bytes); returning -1 stops the scan before that frame. */
typedef int (*mxu_journal_each_fn)(void *ud, const mxu_usage_record *r);
/* Walk the frames of data[0, len): returns the length of the valid prefix,
 * i.e. where the first torn, corrupt or foreign frame (or the end) is.
 * `verify` checks each frame's checksum: for bytes read back from a file;
 * the writer thread skips it for the bytes the loop framed in memory (the
 * record decoding still checks every length). */
size_t mxu_journal_scan(const void *data, size_t len, bool verify, mxu_journal_each_fn each,
                        void *ud);

/* DIR/usage.journal.<gen>; caller frees. */
char *mxu_journal_path(const char *dir, uint64_t gen);
/* Create segment `gen` with its header, durably (file and directory entry
 * fsynced), open for appending: *fd. */
int mxu_journal_create(const char *dir, uint64_t gen, int *fd, mxu_err *err);
/* The generations of the segments in `dir`, ascending (*gens: caller frees). */
int mxu_journal_list(const char *dir, uint64_t **gens, size_t *n, mxu_err *err);
/* A whole segment into out, header included; EINVAL if the header is not
 * that of segment `gen`. */
int mxu_journal_read(const char *dir, uint64_t gen, mxu_buf *out, mxu_err *err);

#endif
