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
/* An open segment: records are stored into `map` (the file's first map_len
 * bytes, MAP_SHARED: a store there is in the page cache, so it survives the
 * process being killed, with no system call) and past it, or when there is
 * no mapping, written with pwrite(2). */
typedef struct mxu_journal_seg {
    int fd;
    char *map; /* NULL: pwrite only */
    size_t map_len;
} mxu_journal_seg;

/* Create segment `gen` with its header, durably (file and directory entry
 * fsynced), its first `prealloc` bytes reserved on disk (zeros) and mapped.
 * A file system that cannot preallocate gives a segment without a mapping;
 * a full disk fails. */
int mxu_journal_create(const char *dir, uint64_t gen, size_t prealloc, mxu_journal_seg *seg,
                       mxu_err *err);
/* Fault the whole mapping in, writable, now: a store into a page not yet
 * faulted costs the loop thread ~5 us (the page read as zeros, ext4's
 * page_mkwrite), ~170 ns per record; the writer thread does it instead,
 * ahead of the loop. */
void mxu_journal_seg_prefault(const mxu_journal_seg *seg);
/* Unmap and close (idempotent; seg->fd is -1 after). */
void mxu_journal_seg_close(mxu_journal_seg *seg);
/* A segment's bytes (header included) without the preallocated zeros at
 * its end: where its data ends. */
size_t mxu_journal_data_end(const void *data, size_t len);
/* The generations of the segments in `dir`, ascending (*gens: caller frees). */
int mxu_journal_list(const char *dir, uint64_t **gens, size_t *n, mxu_err *err);
/* A whole segment into out, header included; EINVAL if the header is not
 * that of segment `gen`. */
int mxu_journal_read(const char *dir, uint64_t gen, mxu_buf *out, mxu_err *err);

#endif
