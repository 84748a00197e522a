/*
 * http — libmicrohttpd driven by the libuv loop. See http.h.
 *
 * DESIGN. MHD runs with MHD_USE_EPOLL and no polling thread: it keeps every socket in one epoll
 * set whose fd becomes readable when any of them is ready. A uv_poll on that fd calls MHD_run,
 * and after every run the uv_timer is re-armed with MHD_get_timeout so that idle connections
 * time out. Requests are answered from the access handler at once (no upload bodies).
 */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"

struct http {
    uv_loop_t *loop;
    log_t *log;
    char name[32];
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    int handles_open;
    http_route_t *routes;
    size_t nroutes;
};

int http_reply_text(http_reply_t *r, int status, const char *content_type, const char *text)
{
    size_t n = strlen(text);
    char *b = malloc(n ? n : 1);
    if (!b)
        return -1;
    memcpy(b, text, n);
    free(r->body);
    r->body = b;
    r->len = n;
    r->status = status;
    r->content_type = content_type;
    return 0;
}

static enum MHD_Result respond(struct MHD_Connection *c, int status, const char *type, char *body,
                               size_t len)
{
    struct MHD_Response *resp =
        body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            type ? type : "text/plain; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    http_t *h = cls;
    (void)version;
    (void)upload_data;
    if (*req_cls == NULL) { /* first call: headers only */
        *req_cls = h;
        return MHD_YES;
    }
    if (*upload_data_size) { /* a body we do not read */
        *upload_data_size = 0;
        return MHD_YES;
    }
    bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    if (!head && strcmp(method, MHD_HTTP_METHOD_GET) != 0) {
        char *b = strdup("method not allowed: GET or HEAD\n");
        return respond(c, MHD_HTTP_METHOD_NOT_ALLOWED, NULL, b, b ? strlen(b) : 0);
    }
    for (size_t i = 0; i < h->nroutes; i++) {
        const http_route_t *r = &h->routes[i];
        size_t n = strlen(r->path);
        bool prefix = n && r->path[n - 1] == '/';
        if (prefix ? strncmp(url, r->path, n) != 0 : strcmp(url, r->path) != 0)
            continue;
        http_reply_t reply = {.status = 200};
        r->fn(r->arg, url, url + (prefix ? n : strlen(url)), &reply);
        if (head) {
            free(reply.body);
            reply.body = NULL;
            reply.len = 0;
        }
        return respond(c, reply.status, reply.content_type, reply.body, reply.len);
    }
    char *b = head ? NULL : strdup("not found\n");
    return respond(c, MHD_HTTP_NOT_FOUND, NULL, b, b ? strlen(b) : 0);
}

static void on_timer(uv_timer_t *t);

static void run(http_t *h)
{
    MHD_run(h->mhd);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(h->mhd, &ms) == MHD_YES)
        uv_timer_start(&h->timer, on_timer, ms, 0);
    else
        uv_timer_stop(&h->timer);
}

static void on_timer(uv_timer_t *t)
{
    run(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run(p->data);
}

static void on_mhd_log(void *arg, const char *fmt, va_list ap)
{
    http_t *h = arg;
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    LOG_WARN(h->log, "http", LS("server", h->name), LS("error", msg));
}

static void free_http(http_t *h)
{
    free(h->routes);
    free(h);
}

static void on_closed(uv_handle_t *hd)
{
    http_t *h = hd->data;
    if (--h->handles_open == 0)
        free_http(h);
}

http_t *http_new(uv_loop_t *loop, log_t *log, const char *name, const char *listen,
                 const http_route_t *routes, size_t nroutes, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (config_parse_hostport(listen, host, sizeof(host), &port) < 0) {
        snprintf(err, errlen, "%s: \"%s\" is not host:port", name, listen);
        return NULL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *ai = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai != 0 || !ai) {
        snprintf(err, errlen, "%s: cannot resolve \"%s\": %s", name, host, gai_strerror(gai));
        return NULL;
    }
    http_t *h = calloc(1, sizeof(*h));
    if (!h || !(h->routes = calloc(nroutes ? nroutes : 1, sizeof(*routes)))) {
        free(h);
        freeaddrinfo(ai);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(h->routes, routes, nroutes * sizeof(*routes));
    h->nroutes = nroutes;
    h->loop = loop;
    h->log = log;
    snprintf(h->name, sizeof(h->name), "%s", name);
    unsigned flags = MHD_USE_EPOLL | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    h->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, h,
                              MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
                              (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->mhd) {
        snprintf(err, errlen, "%s: cannot listen on %s (in use, or not an address here)", name,
                 listen);
        free_http(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || uv_poll_init(loop, &h->poll, info->epoll_fd) < 0) {
        snprintf(err, errlen, "%s: cannot watch the server's epoll fd", name);
        MHD_stop_daemon(h->mhd);
        free_http(h);
        return NULL;
    }
    uv_timer_init(loop, &h->timer);
    h->poll.data = h->timer.data = h;
    h->handles_open = 2;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    LOG_INFO(log, "http listening", LS("server", name), LS("address", listen));
    return h;
}

void http_close(http_t *h)
{
    if (!h)
        return;
    uv_poll_stop(&h->poll);
    uv_timer_stop(&h->timer);
    MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
    uv_close((uv_handle_t *)&h->poll, on_closed);
    uv_close((uv_handle_t *)&h->timer, on_closed);
}
