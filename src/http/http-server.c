/*
 * http-server.c — the listening side: bind and accept, the set of open
 * connections, the cached Date line, resuming connections whose pipelined
 * input waited for an answer, and orderly shutdown.
 *
 * Lifetime: the server counts in `live` everything that must be closed before
 * it can be freed — the listener, the resume handle, every connection (until
 * its close callback) and every refused socket. mxu_http_server_close() closes
 * them all; the last close callback frees the server and calls done(ud), so
 * done always runs from the loop. Requests still out with the handler are on
 * the `detached` list and are told that their server is gone.
 */
#include "http-internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* ---- Date ------------------------------------------------------------------------ */

const char *http_server_date(mxu_http_server *srv, size_t *len)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    /* time() is a vDSO read; formatting happens once a second. Names are
     * spelled out rather than strftime'd so no locale can change them. */
    time_t now = time(NULL);
    if (now != srv->date_sec || srv->date_len == 0) {
        struct tm tm;
        gmtime_r(&now, &tm);
        int n =
            snprintf(srv->date, sizeof(srv->date), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                     days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
        srv->date_len = n > 0 ? MXU_MIN((size_t)n, sizeof(srv->date) - 1) : 0;
        srv->date_sec = now;
    }
    *len = srv->date_len;
    return srv->date;
}

/* ---- resuming parked input ---------------------------------------------------------- */

static void on_resume(uv_idle_t *h)
{
    mxu_http_server *srv = h->data;
    /* Conns answered during this loop are appended and handled here too. */
    while (!http_list_empty(&srv->resume)) {
        http_conn *c = http_container_of(srv->resume.next, http_conn, rlink);
        http_list_remove(&c->rlink);
        http_conn_resume(c);
    }
    uv_idle_stop(&srv->resume_idle);
}

void http_server_schedule_resume(mxu_http_server *srv, http_conn *c)
{
    if (srv->closing || c->rlink.next != &c->rlink)
        return;
    http_list_push(&srv->resume, &c->rlink);
    uv_idle_start(&srv->resume_idle, on_resume);
}

/* ---- lifetime ----------------------------------------------------------------------- */

static void server_free(mxu_http_server *srv)
{
    void (*done)(void *) = srv->done;
    void *done_ud = srv->done_ud;
    while (!http_list_empty(&srv->detached)) {
        mxu_http_req *req = http_container_of(srv->detached.next, mxu_http_req, dlink);
        http_list_remove(&req->dlink);
        req->srv = NULL;
    }
    free(srv->rbuf);
    free(srv->large_body_prefix);
    free(srv);
    if (done)
        done(done_ud);
}

void http_server_unref(mxu_http_server *srv)
{
    if (--srv->live == 0 && srv->closing)
        server_free(srv);
}

static void on_server_handle_closed(uv_handle_t *h)
{
    http_server_unref(h->data);
}

static void on_refused_closed(uv_handle_t *h)
{
    mxu_http_server *srv = h->data;
    free(h);
    http_server_unref(srv);
}

/* The global parse limit of http-parser must not undercut ours; it can only
 * be raised (other servers in the process may rely on the larger value). */
static void raise_parser_header_limit(size_t max_header_bytes)
{
    static size_t current = HTTP_MAX_HEADER_SIZE;
    if (max_header_bytes + 1024 > current && max_header_bytes < UINT32_MAX - 1024) {
        current = max_header_bytes + 1024;
        http_parser_set_max_header_size((uint32_t)current);
    }
}

mxu_http_server *http_server_new(uv_loop_t *loop, const mxu_http_limits *limits,
                                 mxu_http_handler handler, void *ud)
{
    mxu_http_limits def;
    mxu_http_limits_default(&def);
    mxu_http_server *srv = mxu_calloc(1, sizeof(*srv));
    srv->loop = loop;
    srv->limits = def;
    if (limits) {
        /* A zero field means "the default", so callers can set only what
         * they care about. */
        if (limits->max_header_bytes)
            srv->limits.max_header_bytes = limits->max_header_bytes;
        if (limits->max_body_bytes)
            srv->limits.max_body_bytes = limits->max_body_bytes;
        if (limits->idle_timeout_ms)
            srv->limits.idle_timeout_ms = limits->idle_timeout_ms;
        if (limits->read_timeout_ms)
            srv->limits.read_timeout_ms = limits->read_timeout_ms;
        if (limits->max_connections)
            srv->limits.max_connections = limits->max_connections;
        if (limits->large_body_prefix && limits->max_large_body_bytes) {
            srv->large_body_prefix = mxu_strdup(limits->large_body_prefix);
            srv->limits.large_body_prefix = srv->large_body_prefix;
            srv->limits.max_large_body_bytes = limits->max_large_body_bytes;
        }
    }
    raise_parser_header_limit(srv->limits.max_header_bytes);
    srv->handler = handler;
    srv->ud = ud;
    srv->accepting = true;
    http_list_init(&srv->conns);
    http_list_init(&srv->resume);
    http_list_init(&srv->detached);
    srv->rbuf = mxu_malloc(HTTP_READ_BUF_SIZE);
    uv_idle_init(loop, &srv->resume_idle);
    srv->resume_idle.data = srv;
    srv->live = 1;
    return srv;
}

/* ---- accept -------------------------------------------------------------------------- */

static void format_peer(uv_tcp_t *tcp, char *out, size_t outlen)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    snprintf(out, outlen, "?");
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    }
}

static void refuse(mxu_http_server *srv, uv_stream_t *listener)
{
    /* Accept and close at once: leaving it in the backlog would only make
     * the client wait for nothing. */
    uv_tcp_t *t = mxu_malloc(sizeof(*t));
    uv_tcp_init(srv->loop, t);
    t->data = srv;
    srv->live++;
    if (uv_accept(listener, (uv_stream_t *)t) != 0)
        mxu_debug("http: accept failed while refusing a connection");
    uv_close((uv_handle_t *)t, on_refused_closed);
}

static void on_connection(uv_stream_t *listener, int status)
{
    mxu_http_server *srv = listener->data;
    if (status < 0) {
        mxu_warn("http: accept: %s", uv_strerror(status));
        return;
    }
    if (!srv->accepting || srv->nconns >= srv->limits.max_connections) {
        refuse(srv, listener);
        return;
    }
    http_conn *c = http_conn_new(srv, &http_tcp_transport, NULL, NULL);
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    int r = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (r != 0) {
        mxu_debug("http: accept: %s", uv_strerror(r));
        http_conn_close(c);
        return;
    }
    /* Small answers must leave now, not after Nagle's 40 ms. */
    uv_tcp_nodelay(&c->tcp, 1);
    format_peer(&c->tcp, c->peer, sizeof(c->peer));
    http_tcp_start(c);
}

/* Bind and listen with plain calls first, so that a failure (port in use,
 * bad address) leaves nothing behind that needs the loop to be closed. */
static int open_listen_socket(const struct sockaddr *sa, const char *addr, int port, mxu_err *err)
{
    socklen_t salen =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    _cleanup_close_ int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        return mxu_err_sys(err, errno, "socket");
    /* Restarting a node must not wait out TIME_WAIT. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
        return mxu_err_sys(err, errno, "setsockopt SO_REUSEADDR");
    if (bind(fd, sa, salen) != 0)
        return mxu_err_sys(err, errno, "bind %s port %d", addr, port);
    if (listen(fd, 1024) != 0)
        return mxu_err_sys(err, errno, "listen on %s port %d", addr, port);
    return mxu_steal_fd(&fd);
}

int mxu_http_server_start(uv_loop_t *loop, const char *addr, int port,
                          const mxu_http_limits *limits, mxu_http_handler handler, void *ud,
                          mxu_http_server **out, mxu_err *err)
{
    struct sockaddr_storage ss;
    int r;

    if (addr == NULL || handler == NULL)
        return mxu_err_set(err, EINVAL, "mxu_http_server_start: no address or no handler");
    if (port < 0 || port > 65535)
        return mxu_err_set(err, EINVAL, "port %d out of range", port);
    memset(&ss, 0, sizeof(ss));
    if (strchr(addr, ':'))
        r = uv_ip6_addr(addr, port, (struct sockaddr_in6 *)&ss);
    else
        r = uv_ip4_addr(addr, port, (struct sockaddr_in *)&ss);
    if (r != 0)
        return mxu_err_set(err, EINVAL, "'%s' is not an IP address", addr);
    int fd = open_listen_socket((const struct sockaddr *)&ss, addr, port, err);
    if (fd < 0)
        return -1;

    mxu_http_server *srv = http_server_new(loop, limits, handler, ud);
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    srv->listening = true;
    srv->live++;
    r = uv_tcp_open(&srv->listener, fd);
    if (r != 0)
        close(fd); /* not adopted by the handle */
    else
        r = uv_listen((uv_stream_t *)&srv->listener, 1024, on_connection);
    if (r != 0) {
        mxu_err_set(err, -r, "listen on %s port %d: %s", addr, port, uv_strerror(r));
        /* Handles exist now; they are freed from the loop (no done callback). */
        mxu_http_server_close(srv, NULL, NULL);
        return -1;
    }
    int len = sizeof(ss);
    r = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len);
    if (r == 0)
        srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    *out = srv;
    return 0;
}

int mxu_http_server_port(const mxu_http_server *srv)
{
    return srv->port;
}

size_t mxu_http_server_pending(const mxu_http_server *srv)
{
    return srv->pending;
}

static void close_listener(mxu_http_server *srv)
{
    if (srv->listening) {
        srv->listening = false;
        uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
    }
}

void mxu_http_server_stop_accepting(mxu_http_server *srv)
{
    srv->accepting = false;
    close_listener(srv);
    /* Connections between requests would only wait for their idle timeout:
     * end them now. The others end after their current answer. */
    for (http_link *l = srv->conns.next, *next; l != &srv->conns; l = next) {
        next = l->next;
        http_conn *c = http_container_of(l, http_conn, link);
        if (c->state == HTTP_CONN_IDLE && c->in.len == 0 && c->req == NULL)
            http_conn_finish(c);
    }
}

void mxu_http_server_close(mxu_http_server *srv, void (*done)(void *ud), void *ud)
{
    if (srv->closing)
        return;
    srv->closing = true;
    srv->accepting = false;
    srv->done = done;
    srv->done_ud = ud;
    close_listener(srv);
    uv_close((uv_handle_t *)&srv->resume_idle, on_server_handle_closed);
    /* http_conn_close unlinks the connection before calling any abort
     * callback, so whatever those callbacks do, this loop ends. */
    while (!http_list_empty(&srv->conns))
        http_conn_close(http_container_of(srv->conns.next, http_conn, link));
}
