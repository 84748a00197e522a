/*
 * metrics — registry and exposition. See metrics.h.
 *
 * Metrics live in one growing array in registration order; a family's members are found by
 * name when rendering (registration is rare, rendering is a scrape every few seconds, updates
 * are hot). Counters are uint64, gauges int64, histograms keep per-bucket counts plus a sum.
 */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } kind_t;

struct metric {
    kind_t kind;
    char *name, *help, *labels;
    int64_t value; /* counter, gauge */
    double *bounds;
    uint64_t *buckets; /* nbounds + 1 (the last is +Inf) */
    size_t nbounds;
    double sum;
};

struct metrics {
    metric_t **items;
    size_t n, cap;
};

metrics_t *metrics_new(void)
{
    return calloc(1, sizeof(metrics_t));
}

static void metric_free(metric_t *x)
{
    free(x->name);
    free(x->help);
    free(x->labels);
    free(x->bounds);
    free(x->buckets);
    free(x);
}

void metrics_free(metrics_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        metric_free(m->items[i]);
    free(m->items);
    free(m);
}

static metric_t *reg(metrics_t *m, kind_t kind, const char *name, const char *help,
                     const char *labels)
{
    const char *l = labels ? labels : "";
    for (size_t i = 0; i < m->n; i++) {
        metric_t *x = m->items[i];
        if (strcmp(x->name, name) == 0) {
            if (x->kind != kind)
                return NULL;
            if (strcmp(x->labels, l) == 0)
                return x;
        }
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        metric_t **items = realloc(m->items, cap * sizeof(*items));
        if (!items)
            return NULL;
        m->items = items;
        m->cap = cap;
    }
    metric_t *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->kind = kind;
    x->name = strdup(name);
    x->help = strdup(help);
    x->labels = strdup(l);
    if (!x->name || !x->help || !x->labels) {
        metric_free(x);
        return NULL;
    }
    m->items[m->n++] = x;
    return x;
}

metric_t *metrics_counter(metrics_t *m, const char *name, const char *help, const char *labels)
{
    return reg(m, M_COUNTER, name, help, labels);
}

metric_t *metrics_gauge(metrics_t *m, const char *name, const char *help, const char *labels)
{
    return reg(m, M_GAUGE, name, help, labels);
}

metric_t *metrics_histogram(metrics_t *m, const char *name, const char *help, const char *labels,
                            const double *bounds, size_t nbounds)
{
    metric_t *x = reg(m, M_HISTOGRAM, name, help, labels);
    if (!x || x->buckets)
        return x;
    x->bounds = malloc(nbounds * sizeof(double));
    x->buckets = calloc(nbounds + 1, sizeof(uint64_t));
    if (!x->bounds || !x->buckets)
        return NULL; /* freed with the registry */
    memcpy(x->bounds, bounds, nbounds * sizeof(double));
    x->nbounds = nbounds;
    return x;
}

void metric_inc(metric_t *x)
{
    x->value++;
}

void metric_add(metric_t *x, uint64_t n)
{
    x->value += (int64_t)n;
}

void metric_set(metric_t *x, int64_t v)
{
    x->value = v;
}

void metric_observe(metric_t *x, double v)
{
    size_t i = 0;
    while (i < x->nbounds && v > x->bounds[i])
        i++;
    x->buckets[i]++;
    x->sum += v;
    x->value++;
}

int64_t metric_value(const metric_t *x)
{
    return x->value;
}

double metric_quantile(const metric_t *x, double q)
{
    uint64_t total = 0;
    for (size_t i = 0; i <= x->nbounds; i++)
        total += x->buckets[i];
    if (!total || !x->nbounds)
        return 0;
    double rank = q * (double)total;
    uint64_t cum = 0;
    for (size_t i = 0; i < x->nbounds; i++) {
        if ((double)(cum + x->buckets[i]) >= rank) {
            double lo = i ? x->bounds[i - 1] : 0, hi = x->bounds[i];
            double in = x->buckets[i] ? (rank - (double)cum) / (double)x->buckets[i] : 1;
            return lo + (hi - lo) * in;
        }
        cum += x->buckets[i];
    }
    return x->bounds[x->nbounds - 1];
}

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} out_t;

static void outf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(out_t *o, const char *fmt, ...)
{
    if (o->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->oom = 1;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
}

/* Formats v with %g's six significant digits when they represent it exactly, else with as many
 * more as it takes to read back the same double: a rounded "le" would name a bucket boundary
 * that does not exist, and a rounded _sum would lose increments once it is large. */
static void fmt_double(char *buf, size_t n, double v)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void render_one(out_t *o, const metric_t *x)
{
    const char *l = x->labels;
    if (x->kind != M_HISTOGRAM) {
        if (l[0])
            outf(o, "%s{%s} %lld\n", x->name, l, (long long)x->value);
        else
            outf(o, "%s %lld\n", x->name, (long long)x->value);
        return;
    }
    uint64_t cum = 0;
    for (size_t i = 0; i <= x->nbounds; i++) {
        cum += x->buckets[i];
        char le[32];
        if (i == x->nbounds)
            snprintf(le, sizeof(le), "+Inf");
        else
            fmt_double(le, sizeof(le), x->bounds[i]);
        outf(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", x->name, l, l[0] ? "," : "", le,
             (unsigned long long)cum);
    }
    char sum[32];
    fmt_double(sum, sizeof(sum), x->sum);
    if (l[0]) {
        outf(o, "%s_sum{%s} %s\n", x->name, l, sum);
        outf(o, "%s_count{%s} %llu\n", x->name, l, (unsigned long long)cum);
    } else {
        outf(o, "%s_sum %s\n", x->name, sum);
        outf(o, "%s_count %llu\n", x->name, (unsigned long long)cum);
    }
}

int metrics_render(const metrics_t *m, char **out, size_t *len)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    out_t o = {malloc(8192), 0, 8192, 0};
    if (!o.p)
        return -1;
    o.p[0] = '\0';
    for (size_t i = 0; i < m->n; i++) {
        const metric_t *x = m->items[i];
        size_t first = 0;
        while (strcmp(m->items[first]->name, x->name) != 0)
            first++;
        if (first != i)
            continue; /* rendered with its family */
        outf(&o, "# HELP %s %s\n# TYPE %s %s\n", x->name, x->help, x->name, types[x->kind]);
        for (size_t j = i; j < m->n; j++)
            if (strcmp(m->items[j]->name, x->name) == 0)
                render_one(&o, m->items[j]);
    }
    if (o.oom) {
        free(o.p);
        return -1;
    }
    *out = o.p;
    *len = o.len;
    return 0;
}
