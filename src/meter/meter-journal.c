/*
 * The usage journal: where every usage record is before its answer leaves
 * (docs/metering.md, "Durability").
 *
 * The journal is one file, DIR/usage.ring: a 32-byte header ("mxuring1",
 * the ring's size, its first lap), then a data area used as a ring. The
 * node maps it shared and stores records into it; the writer thread copies
 * them into usage.db, and the space they took is used again on the next lap
 * once usage.db holds them. A ring, not a file per stretch of records: on
 * this kind of machine (a paravirtualized guest) every page a process maps
 * for the first time costs ~4-6 us, so fresh files cost ~100 ns per record
 * to make ready; the ring's pages stay mapped and cost nothing.
 *
 * Records are framed:
 *
 *     u32 word | u32 check | payload (len bytes)
 *
 * where the payload is a record's packed form (meter-record.c), len is the
 * word without its flag bits, and check is the low 32 bits of XXH3-64 of
 * the payload seeded with the word and, for FRAME_LAP frames, the lap of
 * the ring the frame was written in. The lap is what tells a frame of this
 * lap from a stale one of the lap before at the same place (records of the
 * same size line up exactly): after a power loss, the bytes after the last
 * record written may be a stale frame, and only its check, seeded with
 * another lap, shows it is not new. A wrap marker (FRAME_WRAP, no payload)
 * says the ring goes on at its start with the next lap; so does an end
 * closer than 8 bytes.
 *
 * FRAME_COMPACT says the payload is the compact packed form (varints), else
 * the older fixed layout. Older nodes wrote segment files,
 * DIR/usage.journal.<gen> (16-byte header "mxujrnl2" or "mxujrnl1" and the
 * gen, then frames without FRAME_LAP; crc32 checks when FRAME_XXH is not
 * set); they are still replayed at start, and their frames are in batch
 * rows of usage.db. A node older than the ring would not read it: going
 * back to such a node needs an empty journal (stop the node cleanly first:
 * it ingests everything). Integers are in the host's byte order: a journal
 * is read back only by the node that wrote it, on the same machine.
 *
 * The checksum is what makes the tail trustworthy: after a power loss the
 * end of the data may hold a half-written frame, zeros, old blocks or stale
 * frames. A scan stops at the first frame whose length is implausible,
 * whose bytes run past the end, whose checksum fails or whose record does
 * not decode. Folding the length into the checksum means a run of zeros is
 * never a valid (empty) frame.
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
static const char ring_magic[8] = {'m', 'x', 'u', 'r', 'i', 'n', 'g', '1'};
#define JOURNAL_PREFIX "usage.journal."
#define RING_NAME      "usage.ring"
/* In a frame's first word: the check is XXH3's, not crc32's; */
#define FRAME_XXH 0x80000000u
/* the record is in the compact packed form (meter-record.c); */
#define FRAME_COMPACT 0x40000000u
/* the check is seeded with the ring's lap too; */
#define FRAME_LAP 0x20000000u
/* a wrap marker (no payload): the ring goes on at its start, next lap. */
#define FRAME_WRAP  0x10000000u
#define FRAME_FLAGS (FRAME_XXH | FRAME_COMPACT | FRAME_LAP | FRAME_WRAP)
#define WRAP_WORD   (FRAME_XXH | FRAME_LAP | FRAME_WRAP)

_Static_assert(MXU_JOURNAL_FRAME_MAX < FRAME_WRAP, "frame lengths must leave the flag bits free");

static uint32_t frame_check(uint32_t word, uint64_t lap, const void *payload, uint32_t len)
{
    if (word & FRAME_XXH) { /* the word seeds the hash: a changed length is caught too */
        uint64_t seed = word;
        if (word & FRAME_LAP)
            seed |= (uint64_t)(uint32_t)lap << 32;
        return (uint32_t)XXH3_64bits_withSeed(payload, len, seed);
    }
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, (const Bytef *)&word, sizeof(word));
    return (uint32_t)crc32(c, payload, len);
}

void mxu_journal_append(mxu_buf *out, const mxu_usage_record *r, uint64_t lap)
{
    /* Pack straight into the batch behind a placeholder header, then fill
     * it in: no copy of the record. */
    size_t at = out->len;
    uint32_t hdr[2] = {0, 0};
    mxu_buf_append(out, hdr, sizeof(hdr));
    mxu_usage_record_encode(r, out);
    uint32_t len = (uint32_t)(out->len - at - sizeof(hdr));
    hdr[0] = len | FRAME_XXH | FRAME_COMPACT | FRAME_LAP;
    hdr[1] = frame_check(hdr[0], lap, out->data + at + sizeof(hdr), len);
    memcpy(out->data + at, hdr, sizeof(hdr));
}

size_t mxu_journal_frame_size(const void *frame)
{
    uint32_t word;
    memcpy(&word, frame, sizeof(word));
    return 8 + (word & ~FRAME_FLAGS);
}

void mxu_journal_reseal(void *frame, uint64_t lap)
{
    uint32_t hdr[2];
    memcpy(hdr, frame, sizeof(hdr));
    hdr[1] = frame_check(hdr[0], lap, (const char *)frame + 8, hdr[0] & ~FRAME_FLAGS);
    memcpy(frame, hdr, sizeof(hdr));
}

void mxu_journal_wrap_marker(void *out, uint64_t lap)
{
    uint32_t hdr[2] = {WRAP_WORD, frame_check(WRAP_WORD, lap, "", 0)};
    memcpy(out, hdr, sizeof(hdr));
}

bool mxu_journal_is_wrap(const void *data, size_t len, uint64_t lap)
{
    uint32_t hdr[2];
    if (len < sizeof(hdr))
        return false;
    memcpy(hdr, data, sizeof(hdr));
    return hdr[0] == WRAP_WORD && hdr[1] == frame_check(WRAP_WORD, lap, "", 0);
}

size_t mxu_journal_scan(const void *data, size_t len, uint64_t lap, bool verify,
                        mxu_journal_each_fn each, void *ud)
{
    const char *p = data;
    size_t off = 0;
    while (len - off >= 8) {
        uint32_t hdr[2];
        memcpy(hdr, p + off, sizeof(hdr));
        uint32_t flen = hdr[0] & ~FRAME_FLAGS;
        if (flen == 0 || flen > MXU_JOURNAL_FRAME_MAX || flen > len - off - 8 ||
            (hdr[0] & FRAME_WRAP))
            break;
        const char *payload = p + off + 8;
        if (verify && frame_check(hdr[0], lap, payload, flen) != hdr[1])
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

char *mxu_ring_path(const char *dir)
{
    return mxu_path_join(dir, RING_NAME);
}

/* An existing ring: its header read and checked, mapped. */
static int ring_open_existing(const char *path, int fd, mxu_ring *ring, mxu_err *err)
{
    char hdr[MXU_RING_HDR];
    struct stat st;
    if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) || fstat(fd, &st) < 0 ||
        memcmp(hdr, ring_magic, 8) != 0)
        return mxu_err_set(err, EINVAL, "%s: not a usage journal of this format (bad header)",
                           path);
    memcpy(&ring->size, hdr + 8, 8);
    memcpy(&ring->first_lap, hdr + 16, 8);
    if (ring->size < MXU_RING_MIN || ring->size > ((uint64_t)1 << 40) ||
        (uint64_t)st.st_size < ring->size)
        return mxu_err_set(err, EINVAL,
                           "%s: the header says %llu bytes, the file has %llu: not a usage "
                           "journal this node wrote",
                           path, (unsigned long long)ring->size, (unsigned long long)st.st_size);
    return 0;
}

int mxu_ring_open(const char *dir, uint64_t size, uint64_t first_lap, mxu_ring *ring, bool *created,
                  mxu_err *err)
{
    _cleanup_free_ char *path = mxu_ring_path(dir);
    *ring = (mxu_ring){.fd = -1};
    *created = false;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        if (ring_open_existing(path, fd, ring, err) < 0) {
            close(fd);
            return -1;
        }
    } else if (errno == ENOENT) {
        /* Made under a temporary name, complete (space reserved, header
         * written, fsynced), then renamed: a ring file always has its header. */
        _cleanup_free_ char *tmp = mxu_path_join(dir, RING_NAME ".new");
        fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            return mxu_err_set(err, errno, "cannot create %s: %s", tmp, strerror(errno));
        char hdr[MXU_RING_HDR] = {0};
        memcpy(hdr, ring_magic, 8);
        memcpy(hdr + 8, &size, 8);
        memcpy(hdr + 16, &first_lap, 8);
        /* The blocks are reserved now (glibc writes zeros where the file
         * system cannot reserve): a full disk shows here, never as a SIGBUS
         * when a record is stored into the mapping. */
        int e = posix_fallocate(fd, 0, (off_t)size);
        if (e == 0 && (mxu_write_all(fd, hdr, sizeof(hdr)) < 0 || fdatasync(fd) < 0))
            e = errno;
        if (e == 0 && rename(tmp, path) < 0)
            e = errno;
        if (e) {
            close(fd);
            unlink(tmp);
            return mxu_err_set(err, e, "cannot make %s: %s", path, strerror(e));
        }
        if (mxu_fsync_dir(dir, err) < 0) {
            close(fd);
            return -1;
        }
        ring->size = size;
        ring->first_lap = first_lap;
        *created = true;
    } else {
        return mxu_err_set(err, errno, "cannot open %s: %s", path, strerror(errno));
    }
    ring->fd = fd;
    /* Without a mapping (mmap refused) records go in with pwrite(2). */
    void *p = mmap(NULL, ring->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED)
        ring->map = p;
    return 0;
}

void mxu_ring_prefault(const mxu_ring *ring)
{
#ifdef MADV_POPULATE_WRITE
    if (ring->map)
        madvise(ring->map, ring->size, MADV_POPULATE_WRITE); /* best effort (Linux >= 5.14) */
#else
    (void)ring;
#endif
}

void mxu_ring_close(mxu_ring *ring)
{
    if (ring->map)
        munmap(ring->map, ring->size);
    if (ring->fd >= 0)
        close(ring->fd);
    *ring = (mxu_ring){.fd = -1};
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
