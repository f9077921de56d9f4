/*
 * The host side of the channel: frames over what the executor gave an
 * instance, either one stream socket or a pair of pipes (one each way; the
 * process executor's choice: a pipe round trip costs about half of a unix
 * socket's in the kernel, see docs/protocol.md). Reading keeps one input buffer per channel and
 * hands out every complete frame in place (no copy); writing gathers frames in an output buffer and
 * flushes it from a uv_idle handle, i.e. once per loop iteration, before the loop next waits for
 * I/O: when thirty requests arrive in one turn for the same instance, they cost one write() and one
 * wake-up of the instance, which is most of the cost of a warm invocation. (An idle handle, not a
 * check handle: an active idle handle also keeps the loop from blocking in poll with output still
 * queued, whichever phase queued it.)
 *
 * The instance is not trusted: a header that fails validation, or a frame
 * larger than the channel's maximum, ends the channel with EPROTO.
 */
#include "unit/unit.h"

#include <errno.h>
#include <string.h>

struct mxu_channel {
    uv_loop_t *loop;
    int fd;  /* read from the instance */
    int wfd; /* write to the instance: fd itself for a socket */
    size_t max_payload;
    mxu_channel_cbs cbs;
    void *ud;
    uv_poll_t poll;  /* on fd: readable, and writable when wfd == fd */
    uv_poll_t wpoll; /* on wfd when it is a separate pipe: writable */
    uv_idle_t flush;
    int poll_events;
    int wpoll_events;
    mxu_buf in;
    size_t in_off; /* parsed up to here */
    mxu_buf out;
    size_t out_off; /* written up to here */
    bool ended;     /* on_end was called (or is being called) */
    bool closing;
    bool flush_active;
    int pending_closes;
    int in_callback; /* depth of on_frame/on_end calls: free only at 0 */
};

static void channel_end(mxu_channel *ch, int code, const char *why);
static void on_handle_closed(uv_handle_t *h);

static void channel_update_poll(mxu_channel *ch);

static void channel_try_write(mxu_channel *ch)
{
    while (ch->out_off < ch->out.len) {
        ssize_t n = write(ch->wfd, ch->out.data + ch->out_off, ch->out.len - ch->out_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            channel_end(ch, errno, "write to instance failed");
            return;
        }
        ch->out_off += (size_t)n;
    }
    if (ch->out_off == ch->out.len) {
        mxu_buf_reset(&ch->out);
        ch->out_off = 0;
    }
    channel_update_poll(ch);
}

static void on_flush(uv_idle_t *h)
{
    mxu_channel *ch = h->data;
    uv_idle_stop(&ch->flush);
    ch->flush_active = false;
    if (!ch->ended)
        channel_try_write(ch);
}

/* Is there at least one complete frame (or a bad header) to hand out? */
static bool channel_has_frame(const mxu_channel *ch)
{
    size_t avail = ch->in.len - ch->in_off;
    mxu_frame_hdr h;
    if (avail < MXU_FRAME_HEADER_SIZE)
        return false;
    if (mxu_frame_hdr_decode((const uint8_t *)ch->in.data + ch->in_off, &h) < 0)
        return true;
    return avail >= MXU_FRAME_HEADER_SIZE + (size_t)h.len;
}

static void channel_parse(mxu_channel *ch)
{
    bool batch = ch->cbs.on_batch && channel_has_frame(ch);
    if (batch)
        ch->cbs.on_batch(ch, true, ch->ud);
    ch->in_callback++;
    while (!ch->ended && !ch->closing) {
        size_t avail = ch->in.len - ch->in_off;
        if (avail < MXU_FRAME_HEADER_SIZE)
            break;
        const uint8_t *p = (const uint8_t *)ch->in.data + ch->in_off;
        mxu_frame_hdr h;
        if (mxu_frame_hdr_decode(p, &h) < 0 || h.len > ch->max_payload) {
            channel_end(ch, EPROTO, "instance sent a malformed frame header");
            break;
        }
        if (avail < MXU_FRAME_HEADER_SIZE + (size_t)h.len)
            break;
        ch->in_off += MXU_FRAME_HEADER_SIZE + h.len;
        ch->cbs.on_frame(ch, &h, p + MXU_FRAME_HEADER_SIZE, ch->ud);
    }
    if (batch && !ch->ended && !ch->closing)
        ch->cbs.on_batch(ch, false, ch->ud);
    ch->in_callback--;
    /* Keep only the unparsed tail, once per read rather than per frame. */
    if (ch->in_off > 0) {
        mxu_buf_consume(&ch->in, ch->in_off);
        ch->in_off = 0;
    }
}

static void channel_read(mxu_channel *ch)
{
    for (;;) {
        /* Read at least 64 KiB at a time; more when a big frame is coming. */
        size_t want = 65536;
        if (ch->in.len - ch->in_off >= MXU_FRAME_HEADER_SIZE) {
            mxu_frame_hdr h;
            const uint8_t *p = (const uint8_t *)ch->in.data + ch->in_off;
            if (mxu_frame_hdr_decode(p, &h) == 0 && h.len <= ch->max_payload) {
                size_t need = MXU_FRAME_HEADER_SIZE + h.len - (ch->in.len - ch->in_off);
                if (need > want)
                    want = need;
            }
        }
        mxu_buf_reserve(&ch->in, want);
        ssize_t n = read(ch->fd, ch->in.data + ch->in.len, ch->in.cap - ch->in.len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            channel_end(ch, errno, "read from instance failed");
            return;
        }
        if (n == 0) {
            channel_end(ch, 0, "instance closed the channel");
            return;
        }
        ch->in.len += (size_t)n;
        ch->in.data[ch->in.len] = '\0';
        channel_parse(ch);
        if (ch->ended || ch->closing)
            return;
        if ((size_t)n < want)
            return; /* drained what was there */
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    mxu_channel *ch = h->data;
    if (status < 0) {
        channel_end(ch, EIO, uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE)
        channel_try_write(ch);
    if (!ch->ended && !ch->closing && (events & UV_READABLE))
        channel_read(ch);
}

static void on_wpoll(uv_poll_t *h, int status, int events)
{
    mxu_channel *ch = h->data;
    if (status < 0) {
        channel_end(ch, EIO, uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE)
        channel_try_write(ch);
}

static void channel_update_poll(mxu_channel *ch)
{
    if (ch->ended || ch->closing)
        return;
    int wev = ch->out_off < ch->out.len ? UV_WRITABLE : 0;
    int ev = UV_READABLE | (ch->wfd == ch->fd ? wev : 0);
    if (ev != ch->poll_events) {
        ch->poll_events = ev;
        uv_poll_start(&ch->poll, ev, on_poll);
    }
    if (ch->wfd != ch->fd && wev != ch->wpoll_events) {
        ch->wpoll_events = wev;
        if (wev)
            uv_poll_start(&ch->wpoll, wev, on_wpoll);
        else
            uv_poll_stop(&ch->wpoll);
    }
}

static void channel_end(mxu_channel *ch, int code, const char *why)
{
    if (ch->ended || ch->closing)
        return;
    ch->ended = true;
    uv_poll_stop(&ch->poll);
    if (ch->wfd != ch->fd)
        uv_poll_stop(&ch->wpoll);
    ch->in_callback++;
    ch->cbs.on_end(ch, code, why, ch->ud);
    ch->in_callback--;
}

int mxu_channel_open(uv_loop_t *loop, int fd, int wfd, size_t max_payload,
                     const mxu_channel_cbs *cbs, void *ud, mxu_channel **out, mxu_err *err)
{
    mxu_channel *ch = mxu_calloc(1, sizeof(*ch));
    ch->loop = loop;
    ch->fd = fd;
    ch->wfd = wfd >= 0 ? wfd : fd;
    ch->max_payload = max_payload;
    ch->cbs = *cbs;
    ch->ud = ud;
    int rc = uv_poll_init(loop, &ch->poll, fd);
    if (rc < 0) {
        free(ch);
        return mxu_err_set(err, EIO, "cannot watch channel: %s", uv_strerror(rc));
    }
    ch->poll.data = ch;
    if (ch->wfd != fd) {
        rc = uv_poll_init(loop, &ch->wpoll, ch->wfd);
        if (rc < 0) {
            /* The read poll exists: it must be closed before ch can go. */
            ch->closing = true;
            ch->pending_closes = 1;
            uv_close((uv_handle_t *)&ch->poll, on_handle_closed);
            return mxu_err_set(err, EIO, "cannot watch channel: %s", uv_strerror(rc));
        }
        ch->wpoll.data = ch;
    }
    uv_idle_init(loop, &ch->flush);
    ch->flush.data = ch;
    channel_update_poll(ch);
    *out = ch;
    return 0;
}

uint8_t *mxu_channel_frame(mxu_channel *ch, uint8_t type, uint64_t id, uint32_t len)
{
    mxu_frame_hdr h = {.len = len, .type = type, .id = id};
    mxu_buf_reserve(&ch->out, MXU_FRAME_HEADER_SIZE + (size_t)len);
    uint8_t *p = (uint8_t *)ch->out.data + ch->out.len;
    mxu_frame_hdr_encode(&h, p);
    ch->out.len += MXU_FRAME_HEADER_SIZE + (size_t)len;
    ch->out.data[ch->out.len] = '\0';
    if (!ch->flush_active && !ch->ended && !ch->closing) {
        ch->flush_active = true;
        uv_idle_start(&ch->flush, on_flush);
    }
    return p + MXU_FRAME_HEADER_SIZE;
}

size_t mxu_channel_pending(const mxu_channel *ch)
{
    return ch->out.len - ch->out_off;
}

static void on_handle_closed(uv_handle_t *h)
{
    mxu_channel *ch = h->data;
    if (--ch->pending_closes == 0) {
        mxu_buf_free(&ch->in);
        mxu_buf_free(&ch->out);
        free(ch);
    }
}

void mxu_channel_close(mxu_channel *ch)
{
    if (ch == NULL || ch->closing)
        return;
    ch->closing = true;
    ch->pending_closes = ch->wfd != ch->fd ? 3 : 2;
    /* uv_close stops the polls at once; only then may the fds be closed. */
    uv_close((uv_handle_t *)&ch->poll, on_handle_closed);
    uv_close((uv_handle_t *)&ch->flush, on_handle_closed);
    if (ch->wfd != ch->fd) {
        uv_close((uv_handle_t *)&ch->wpoll, on_handle_closed);
        close(ch->wfd);
    }
    close(ch->fd);
    ch->fd = ch->wfd = -1;
}
