/*
 * The usage journal: append-only segment files in the data directory that
 * hold every usage record before its answer leaves (docs/metering.md,
 * "Durability").
 *
 * A segment is DIR/usage.journal.<gen> (gen a decimal number that only
 * grows): a 16-byte header ("mxujrnl2" and the gen, so a file that is not a
 * journal of this format is never misread), then frames. A frame is
 *
 *     u32 word | u32 check | payload (len bytes)
 *
 * where the payload is a record's packed form (meter-record.c), len is
 * word without its two flag bits, and check is the low 32 bits of XXH3-64
 * of the payload seeded with the word when word has FRAME_XXH, else zlib's
 * crc32 over the same bytes. FRAME_COMPACT says the payload is the compact
 * packed form (varints), else the older fixed layout. Frames are written
 * with XXH3 (about 15 ns for a record, crc32 was 170 ns: an eighth of what
 * metering cost a warm no-op) and the compact form (half the bytes); crc32
 * frames are those of "mxujrnl1" segments and of batch rows in usage.db
 * written before, and are still read, as is the fixed form. A node older
 * than the compact form would take a compact frame for a torn one: going
 * back to such a node needs an empty journal (stop the node cleanly first:
 * it ingests everything). Integers are in the host's byte order: a
 * journal is read back only by the node that wrote it, on the same machine,
 * and a changed packed form gets a new flag.
 *
 * The checksum is what makes the tail trustworthy: after a power loss the
 * end of a segment may hold a half-written frame, zeros, or old blocks. A
 * scan stops at the first frame whose length is implausible, whose bytes run
 * past the end, whose checksum fails or whose record does not decode; what
 * follows is cut. Folding the length into the checksum means a run of zeros
 * is never a valid (empty) frame.
 *
 * Everything here is plain functions on buffers and files, shared by the
 * writer thread, the replay at start and the unit tests.
 */
#include "meter-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>

static const char journal_magic[8] = {'m', 'x', 'u', 'j', 'r', 'n', 'l', '2'};
/* The magic of segments whose frames all have crc32 checks; still read. */
static const char journal_magic_v1[8] = {'m', 'x', 'u', 'j', 'r', 'n', 'l', '1'};
#define JOURNAL_PREFIX "usage.journal."
/* In a frame's first word: the check is XXH3's, not crc32's. */
#define FRAME_XXH 0x80000000u
/* ... and the record is in the compact packed form (meter-record.c). */
#define FRAME_COMPACT 0x40000000u
#define FRAME_FLAGS   (FRAME_XXH | FRAME_COMPACT)

_Static_assert(MXU_JOURNAL_FRAME_MAX < FRAME_COMPACT,
               "frame lengths must leave the flag bits free");

static uint32_t frame_check(uint32_t word, const void *payload, uint32_t len)
{
    if (word & FRAME_XXH) /* the word seeds the hash: a changed length is caught too */
        return (uint32_t)XXH3_64bits_withSeed(payload, len, word);
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, (const Bytef *)&word, sizeof(word));
    return (uint32_t)crc32(c, payload, len);
}

void mxu_journal_append(mxu_buf *out, const mxu_usage_record *r)
{
    /* Pack straight into the batch behind a placeholder header, then fill
     * it in: no copy of the record. */
    size_t at = out->len;
    uint32_t hdr[2] = {0, 0};
    mxu_buf_append(out, hdr, sizeof(hdr));
    mxu_usage_record_encode(r, out);
    uint32_t len = (uint32_t)(out->len - at - sizeof(hdr));
    hdr[0] = len | FRAME_XXH | FRAME_COMPACT;
    hdr[1] = frame_check(hdr[0], out->data + at + sizeof(hdr), len);
    memcpy(out->data + at, hdr, sizeof(hdr));
}

size_t mxu_journal_scan(const void *data, size_t len, bool verify, mxu_journal_each_fn each,
                        void *ud)
{
    const char *p = data;
    size_t off = 0;
    while (len - off >= 8) {
        uint32_t hdr[2];
        memcpy(hdr, p + off, sizeof(hdr));
        uint32_t flen = hdr[0] & ~FRAME_FLAGS;
        if (flen == 0 || flen > MXU_JOURNAL_FRAME_MAX || flen > len - off - 8)
            break;
        const char *payload = p + off + 8;
        if (verify && frame_check(hdr[0], payload, flen) != hdr[1])
            break;
        mxu_usage_record r;
        if (mxu_usage_record_decode_form(payload, flen, (hdr[0] & FRAME_COMPACT) != 0, &r) < 0)
            break;
        if (each && each(ud, &r) < 0)
            break;
        off += 8 + (size_t)flen;
    }
    return off;
}

char *mxu_journal_path(const char *dir, uint64_t gen)
{
    char name[64];
    snprintf(name, sizeof(name), JOURNAL_PREFIX "%llu", (unsigned long long)gen);
    return mxu_path_join(dir, name);
}

int mxu_journal_create(const char *dir, uint64_t gen, size_t prealloc, mxu_journal_seg *seg,
                       mxu_err *err)
{
    _cleanup_free_ char *path = mxu_journal_path(dir, gen);
    *seg = (mxu_journal_seg){.fd = -1};
    /* O_EXCL: a generation is used once; an existing file would mean two
     * writers. The old one is removed only if it holds nothing but a header
     * (a spare made just before a crash; with its preallocated zeros). */
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        _cleanup_buf_ mxu_buf old = {0};
        mxu_err rerr;
        struct stat st;
        bool empty = stat(path, &st) == 0 && st.st_size <= MXU_JOURNAL_HDR;
        if (!empty && mxu_journal_read(dir, gen, &old, &rerr) == 0)
            empty = mxu_journal_data_end(old.data, old.len) <= MXU_JOURNAL_HDR;
        if (empty && unlink(path) == 0)
            fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        else
            errno = EEXIST;
    }
    if (fd < 0)
        return mxu_err_set(err, errno, "cannot create %s: %s", path, strerror(errno));
    char hdr[MXU_JOURNAL_HDR];
    memcpy(hdr, journal_magic, sizeof(journal_magic));
    memcpy(hdr + 8, &gen, sizeof(gen));
    /* The blocks are reserved now (a full disk shows here, off the loop
     * thread, not as a SIGBUS when a record is stored into the mapping);
     * then the header is made durable, and the file's name with it, before
     * any record goes in: a segment that holds records always has a valid
     * header after a power loss. A file system that cannot preallocate gets
     * a segment without mapping: records go in with pwrite(2). */
    int e = mxu_write_all(fd, hdr, sizeof(hdr)) < 0 ? errno : 0;
    bool map = prealloc > MXU_JOURNAL_HDR && e == 0;
    if (map) {
        int rc = posix_fallocate(fd, 0, (off_t)prealloc);
        if (rc == EOPNOTSUPP || rc == EINVAL || rc == ENOSYS)
            map = false;
        else
            e = rc;
    }
    if (e == 0 && fdatasync(fd) < 0)
        e = errno;
    if (e) {
        close(fd);
        unlink(path);
        return mxu_err_set(err, e, "cannot write %s: %s", path, strerror(e));
    }
    if (mxu_fsync_dir(dir, err) < 0) {
        close(fd);
        unlink(path);
        return -1;
    }
    seg->fd = fd;
    if (map) {
        void *p = mmap(NULL, prealloc, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
            seg->map = p;
            seg->map_len = prealloc;
        }
    }
    return 0;
}

void mxu_journal_seg_prefault(const mxu_journal_seg *seg)
{
#ifdef MADV_POPULATE_WRITE
    if (seg->map)
        madvise(seg->map, seg->map_len, MADV_POPULATE_WRITE); /* best effort (Linux >= 5.14) */
#else
    (void)seg;
#endif
}

void mxu_journal_seg_close(mxu_journal_seg *seg)
{
    if (seg->map)
        munmap(seg->map, seg->map_len);
    if (seg->fd >= 0)
        close(seg->fd);
    *seg = (mxu_journal_seg){.fd = -1};
}

size_t mxu_journal_data_end(const void *data, size_t len)
{
    const char *p = data;
    while (len > MXU_JOURNAL_HDR && p[len - 1] == 0)
        len--;
    return len;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int mxu_journal_list(const char *dir, uint64_t **gens, size_t *n, mxu_err *err)
{
    *gens = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return mxu_err_sys(err, errno, "cannot list %s", dir);
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, JOURNAL_PREFIX, strlen(JOURNAL_PREFIX)) != 0)
            continue;
        uint64_t g;
        if (mxu_parse_u64(e->d_name + strlen(JOURNAL_PREFIX), &g) < 0)
            continue; /* not ours (e.g. an editor's backup) */
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *gens = mxu_realloc(*gens, cap * sizeof(**gens));
        }
        (*gens)[(*n)++] = g;
    }
    closedir(d);
    if (*n)
        qsort(*gens, *n, sizeof(**gens), cmp_u64);
    return 0;
}

int mxu_journal_read(const char *dir, uint64_t gen, mxu_buf *out, mxu_err *err)
{
    _cleanup_free_ char *path = mxu_journal_path(dir, gen);
    mxu_buf_reset(out);
    if (mxu_read_file(path, SIZE_MAX / 2, out, err) < 0)
        return -1;
    uint64_t hgen;
    if (out->len < MXU_JOURNAL_HDR ||
        (memcmp(out->data, journal_magic, 8) != 0 && memcmp(out->data, journal_magic_v1, 8) != 0) ||
        (memcpy(&hgen, out->data + 8, sizeof(hgen)), hgen != gen))
        return mxu_err_set(err, EINVAL, "%s: not a usage journal of this format (bad header)",
                           path);
    return 0;
}
