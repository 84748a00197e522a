/*
 * http — a small HTTP/1.1 server inside the libuv loop: libmicrohttpd without a thread of its
 * own (MHD_USE_EPOLL, external polling), its epoll fd watched by a uv_poll and its connection
 * timeouts by a uv_timer. Loop thread only.
 *
 * The caller gives a table of routes (a path, or a path prefix ending in '/') and their
 * handlers; a handler fills an http_reply_t synchronously. Only GET and HEAD are served (405
 * otherwise); an unknown path is 404. Bodies are small (metrics, JSON), built per request.
 */
#ifndef METERD_HTTP_H
#define METERD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "log.h"

typedef struct http http_t;

typedef struct {
    int status;               /* default 200 */
    const char *content_type; /* default text/plain; charset=utf-8 */
    char *body;               /* heap, owned by http after the handler returns; may be NULL */
    size_t len;
} http_reply_t;

/* path: the request's (decoded) path; for a prefix route, rest is what follows the prefix. */
typedef void (*http_handler_fn)(void *arg, const char *path, const char *rest, http_reply_t *reply);

typedef struct {
    const char *path; /* exact, or a prefix when it ends in '/' */
    http_handler_fn fn;
    void *arg;
} http_route_t;

/* Listens on `listen` ("host:port", "[v6]:port") and serves the routes (copied). On error
 * returns NULL with a message in err. */
http_t *http_new(uv_loop_t *loop, log_t *log, const char *name, const char *listen,
                 const http_route_t *routes, size_t nroutes, char *err, size_t errlen);

/* Stops listening and closes its handles; h is freed once the loop has closed them. */
void http_close(http_t *h);

/* Sets a reply's body to a copy of text (NUL-terminated). Returns 0, -1 when out of memory. */
int http_reply_text(http_reply_t *r, int status, const char *content_type, const char *text);

#endif
