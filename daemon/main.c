/*
 * main — the daemon's lifecycle: configuration, the loop, signals, exit status. Nothing else.
 *
 * Builds one `struct daemon` on the stack and passes pointers; there are no mutable globals.
 * The price and tier tables are read here (their modules are pure and take text). `migrate` runs
 * the store alone until the schema is current. SIGTERM and SIGINT start the meter's graceful
 * stop; a second one exits at once. SIGHUP reloads both tables, or neither.
 *
 * It also serves HTTP (http.h): /metrics, /livez (/healthz), /readyz on http.listen and
 * /admin/orgs/ORG on http.admin_listen; and speaks sd_notify when systemd asks for it: READY=1
 * once the meter is ready, WATCHDOG=1 from a loop timer, RELOADING=1 / READY=1 around SIGHUP,
 * STOPPING=1 on SIGTERM.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "meter.h"
#include "metrics.h"
#include "pricing.h"
#include "store.h"
#include "tiers.h"

struct daemon {
    uv_loop_t loop;
    config_t *cfg;
    log_t *log;
    metrics_t *metrics;
    meter_t *meter;
    store_t *store; /* migrate command only */
    uv_signal_t sig_term, sig_int, sig_hup;
    http_t *http, *admin;
    uv_timer_t notify_timer; /* systemd readiness and watchdog; also keeps /readyz's log */
    bool notified_ready;
    bool was_ready;
    int exit_code;
    int stop_requests;
};

/* Reads and parses one table file; parse is pricing_parse or tiers_parse. */
static int load_table(struct daemon *d, const char *what, const char *path,
                      int (*parse)(const char *, size_t, void **, char *, size_t), void **out)
{
    char *text, err[512];
    size_t len;
    if (config_read_file(path, &text, &len) < 0) {
        LOG_ERROR(d->log, "cannot read a table", LS("table", what), LS("file", path),
                  LS("error", strerror(errno)));
        return -1;
    }
    int rc = parse(text, len, out, err, sizeof(err));
    free(text);
    if (rc < 0) {
        LOG_ERROR(d->log, "invalid table", LS("table", what), LS("file", path), LS("error", err));
        return -1;
    }
    return 0;
}

static int parse_prices(const char *t, size_t n, void **out, char *err, size_t errlen)
{
    return pricing_parse(t, n, (pricing_t **)out, err, errlen);
}

static int parse_tiers(const char *t, size_t n, void **out, char *err, size_t errlen)
{
    return tiers_parse(t, n, (tiers_t **)out, err, errlen);
}

/* Both tables, or neither. */
static int load_tables(struct daemon *d, pricing_t **prices, tiers_t **tiers)
{
    void *p = NULL, *t = NULL;
    if (load_table(d, "prices", d->cfg->prices_file, parse_prices, &p) < 0)
        return -1;
    if (load_table(d, "tiers", d->cfg->tiers_file, parse_tiers, &t) < 0) {
        pricing_free(p);
        return -1;
    }
    *prices = p;
    *tiers = t;
    return 0;
}

static void close_signals(struct daemon *d)
{
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    uv_close((uv_handle_t *)&d->sig_hup, NULL);
}

static void on_meter_done(void *arg, int exit_code)
{
    struct daemon *d = arg;
    if (!d->exit_code) /* a start-up failure (HTTP) already chose its status */
        d->exit_code = exit_code;
    LOG_INFO(d->log, "meterd stopped", LI("exit_code", d->exit_code));
    close_signals(d);
    http_close(d->http);
    http_close(d->admin);
    d->http = d->admin = NULL;
    uv_close((uv_handle_t *)&d->notify_timer, NULL);
}

/* ---- HTTP ---- */

static void route_metrics(void *arg, const char *path, const char *rest, http_reply_t *r)
{
    struct daemon *d = arg;
    (void)path;
    (void)rest;
    meter_update_gauges(d->meter);
    char *text;
    size_t len;
    if (metrics_render(d->metrics, &text, &len) < 0) {
        (void)http_reply_text(r, 500, NULL, "out of memory\n");
        return;
    }
    r->body = text;
    r->len = len;
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

static void route_livez(void *arg, const char *path, const char *rest, http_reply_t *r)
{
    (void)arg;
    (void)path;
    (void)rest;
    (void)http_reply_text(r, 200, NULL, "ok\n"); /* the loop answered: it is alive */
}

static void route_readyz(void *arg, const char *path, const char *rest, http_reply_t *r)
{
    struct daemon *d = arg;
    (void)path;
    (void)rest;
    char why[128], body[160];
    bool ready = meter_ready(d->meter, why, sizeof(why));
    snprintf(body, sizeof(body), "%s\n", why);
    (void)http_reply_text(r, ready ? 200 : 503, NULL, body);
}

static void route_org(void *arg, const char *path, const char *rest, http_reply_t *r)
{
    struct daemon *d = arg;
    (void)path;
    static const char *json = "application/json";
    if (!rest[0] || strchr(rest, '/')) {
        (void)http_reply_text(r, 404, json, "{\"error\":\"use /admin/orgs/ORG\"}\n");
        return;
    }
    size_t cap = 1024;
    for (int tries = 0; tries < 2; tries++) {
        char *buf = malloc(cap);
        if (!buf) {
            (void)http_reply_text(r, 500, json, "{\"error\":\"out of memory\"}\n");
            return;
        }
        int n = meter_describe_org(d->meter, rest, buf, cap);
        if (n < 0) {
            free(buf);
            (void)http_reply_text(r, 404, json,
                                  "{\"error\":\"unknown organization here (it may belong to a "
                                  "partition another instance owns)\"}\n");
            return;
        }
        if ((size_t)n < cap) {
            r->body = buf;
            r->len = (size_t)n;
            r->status = 200;
            r->content_type = json;
            return;
        }
        free(buf);
        cap = (size_t)n + 1;
    }
    (void)http_reply_text(r, 500, json, "{\"error\":\"state changed while read\"}\n");
}

static int start_http(struct daemon *d, char *err, size_t errlen)
{
    if (d->cfg->http_listen[0]) {
        const http_route_t routes[] = {{"/metrics", route_metrics, d},
                                       {"/livez", route_livez, d},
                                       {"/healthz", route_livez, d},
                                       {"/readyz", route_readyz, d}};
        d->http = http_new(&d->loop, d->log, "http.listen", d->cfg->http_listen, routes,
                           sizeof(routes) / sizeof(routes[0]), err, errlen);
        if (!d->http)
            return -1;
    }
    if (d->cfg->http_admin_listen[0]) {
        const http_route_t routes[] = {{"/admin/orgs/", route_org, d}};
        d->admin = http_new(&d->loop, d->log, "http.admin_listen", d->cfg->http_admin_listen,
                            routes, 1, err, errlen);
        if (!d->admin)
            return -1;
    }
    return 0;
}

/* ---- systemd ---- */

static void on_notify_timer(uv_timer_t *t)
{
    struct daemon *d = t->data;
    char why[128];
    bool ready = meter_ready(d->meter, why, sizeof(why));
    if (ready && !d->notified_ready) {
        d->notified_ready = true;
        sd_notify(0, "READY=1\nSTATUS=ready");
    }
    if (ready != d->was_ready) {
        d->was_ready = ready;
        LOG_INFO(d->log, ready ? "ready" : "not ready", LS("reason", why));
        if (d->notified_ready) {
            char status[160];
            snprintf(status, sizeof(status), "STATUS=%s", why);
            sd_notify(0, status);
        }
    }
    sd_notify(0, "WATCHDOG=1"); /* the timer ran: the loop is turning */
}

static void start_notify(struct daemon *d)
{
    uint64_t usec = 0;
    uint64_t every_ms = 1000;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec / 2000 < every_ms)
        every_ms = usec / 2000 ? usec / 2000 : 1;
    uv_timer_init(&d->loop, &d->notify_timer);
    d->notify_timer.data = d;
    uv_timer_start(&d->notify_timer, on_notify_timer, 0, every_ms);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (signum == SIGHUP) {
        pricing_t *p;
        tiers_t *t;
        sd_notify(0, "RELOADING=1");
        if (load_tables(d, &p, &t) == 0) {
            LOG_INFO(d->log, "price and tier tables reloaded", LS("prices", d->cfg->prices_file),
                     LI("models", (long long)pricing_count(p)), LS("tiers", d->cfg->tiers_file),
                     LI("tiers_count", (long long)tiers_count(t)));
            meter_set_tables(d->meter, p, t);
        } else {
            LOG_ERROR(d->log, "table reload refused; keeping the current tables", LNONE);
        }
        sd_notify(0, "READY=1");
        return;
    }
    if (++d->stop_requests > 1) {
        LOG_WARN(d->log, "second stop signal: exiting now (unflushed events are replayed)", LNONE);
        exit(1);
    }
    LOG_INFO(d->log, "stop requested", LS("signal", signum == SIGTERM ? "SIGTERM" : "SIGINT"));
    sd_notify(0, "STOPPING=1");
    meter_stop(d->meter);
}

static void on_migrated(void *arg, bool up)
{
    struct daemon *d = arg;
    if (store_failed(d->store))
        d->exit_code = 1;
    else if (!up)
        return; /* retrying */
    else
        LOG_INFO(d->log, "schema is current", LNONE);
    store_close(d->store);
}

int main(int argc, char **argv)
{
    extern char **environ;
    struct daemon d;
    memset(&d, 0, sizeof(d));
    char err[1024];
    config_cmd_t cmd;
    if (config_load(argc, argv, environ, &d.cfg, &cmd, err, sizeof(err)) < 0) {
        fprintf(stderr, "meterd: configuration error: %s\n", err);
        return 2;
    }
    switch (cmd) {
    case CONFIG_CMD_HELP:
        config_usage(stdout, argv[0]);
        config_free(d.cfg);
        return 0;
    case CONFIG_CMD_VERSION:
        printf("meterd %s\n", METERD_VERSION);
        config_free(d.cfg);
        return 0;
    case CONFIG_CMD_CHECK:
        config_print(d.cfg, stdout);
        config_free(d.cfg);
        return 0;
    default:
        break;
    }
    log_level_t level = LOG_LEVEL_INFO;
    if (log_level_parse(d.cfg->log_level, &level) < 0) /* config validated it already */
        level = LOG_LEVEL_INFO;
    d.log = log_new(stderr, level);
    d.metrics = metrics_new();
    if (!d.log || !d.metrics || uv_loop_init(&d.loop) < 0) {
        fprintf(stderr, "meterd: out of memory\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    metric_t *info =
        metrics_gauge(d.metrics, "meterd_build_info", "meterd's version; the value is always 1.",
                      "version=\"" METERD_VERSION "\"");
    if (info)
        metric_set(info, 1);

    if (cmd == CONFIG_CMD_MIGRATE) {
        d.store = store_new(&d.loop, d.cfg, d.log, d.metrics, true, on_migrated, &d);
        if (!d.store)
            return 1;
        uv_run(&d.loop, UV_RUN_DEFAULT);
    } else {
        pricing_t *prices;
        tiers_t *tiers;
        if (load_tables(&d, &prices, &tiers) < 0)
            return 2;
        d.meter = meter_new(&d.loop, d.cfg, d.log, d.metrics, prices, tiers, on_meter_done, &d, err,
                            sizeof(err));
        if (!d.meter) {
            LOG_ERROR(d.log, "cannot start", LS("error", err));
            uv_run(&d.loop, UV_RUN_DEFAULT); /* let the partly built shell close its handles */
            return 2;
        }
        if (start_http(&d, err, sizeof(err)) < 0) {
            LOG_ERROR(d.log, "cannot start", LS("error", err));
            http_close(d.http);
            d.http = NULL;
            meter_stop(d.meter); /* closes the meter; on_meter_done closes the rest */
            d.stop_requests = 1;
            d.exit_code = 2;
        }
        start_notify(&d);
        uv_signal_t *sigs[3] = {&d.sig_term, &d.sig_int, &d.sig_hup};
        int nums[3] = {SIGTERM, SIGINT, SIGHUP};
        for (int i = 0; i < 3; i++) {
            uv_signal_init(&d.loop, sigs[i]);
            sigs[i]->data = &d;
            uv_signal_start(sigs[i], on_signal, nums[i]);
        }
        uv_run(&d.loop, UV_RUN_DEFAULT);
    }
    int rc = uv_loop_close(&d.loop);
    if (rc != 0)
        LOG_ERROR(d.log, "loop closed with handles still open", LS("error", uv_strerror(rc)));
    metrics_free(d.metrics);
    log_free(d.log);
    config_free(d.cfg);
    return d.exit_code ? d.exit_code : (rc != 0);
}
