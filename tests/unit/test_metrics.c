/*
 * test_metrics — unit tests of the metrics registry and its Prometheus text exposition
 * (daemon/metrics.c).
 *
 * Renderings are compared with the exact expected text, written out in full so that a reader
 * sees the exposition format itself. When Prometheus' promtool is installed (Debian package
 * prometheus), a rendered registry is also checked with `promtool check metrics`; without it
 * that test prints a note and is skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define PROMTOOL   "/usr/bin/promtool"

static void assert_render(const metrics_t *m, const char *want)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(metrics_render(m, &out, &len), 0);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    if (strcmp(out, want) != 0)
        print_error("rendered:\n%s\nwanted:\n%s\n", out, want);
    assert_string_equal(out, want);
    free(out);
}

static void test_empty(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    assert_non_null(m);
    assert_render(m, "");
    metrics_free(m);
    metrics_free(NULL);
}

static void test_counter_gauge(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    assert_non_null(m);
    metric_t *c = metrics_counter(m, "meterd_events_total", "Events seen.", NULL);
    metric_t *g = metrics_gauge(m, "meterd_lag", "Lag in messages.", NULL);
    assert_non_null(c);
    assert_non_null(g);
    assert_render(m, "# HELP meterd_events_total Events seen.\n"
                     "# TYPE meterd_events_total counter\n"
                     "meterd_events_total 0\n"
                     "# HELP meterd_lag Lag in messages.\n"
                     "# TYPE meterd_lag gauge\n"
                     "meterd_lag 0\n");
    metric_inc(c);
    metric_inc(c);
    metric_add(c, 40);
    metric_set(g, -7);
    assert_int_equal(metric_value(c), 42);
    assert_int_equal(metric_value(g), -7);
    metric_set(g, 9000000000LL);
    assert_int_equal(metric_value(g), 9000000000LL);
    metric_add(c, 10000000000ULL);
    assert_render(m, "# HELP meterd_events_total Events seen.\n"
                     "# TYPE meterd_events_total counter\n"
                     "meterd_events_total 10000000042\n"
                     "# HELP meterd_lag Lag in messages.\n"
                     "# TYPE meterd_lag gauge\n"
                     "meterd_lag 9000000000\n");
    metrics_free(m);
}

/* Several label sets of one family share one HELP/TYPE header, even when registered apart. */
static void test_families(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    assert_non_null(m);
    metric_t *a = metrics_counter(m, "meterd_events_total", "Events by type.", "type=\"llm.call\"");
    metric_t *g = metrics_gauge(m, "meterd_owned", "Partitions owned.", NULL);
    metric_t *b = metrics_counter(m, "meterd_events_total", "Events by type.", "type=\"api.call\"");
    metric_t *c =
        metrics_counter(m, "meterd_events_total", "Events by type.", "type=\"x\",reason=\"y\"");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(g);
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(b, c);
    metric_add(a, 3);
    metric_inc(b);
    metric_set(g, 4);
    assert_render(m, "# HELP meterd_events_total Events by type.\n"
                     "# TYPE meterd_events_total counter\n"
                     "meterd_events_total{type=\"llm.call\"} 3\n"
                     "meterd_events_total{type=\"api.call\"} 1\n"
                     "meterd_events_total{type=\"x\",reason=\"y\"} 0\n"
                     "# HELP meterd_owned Partitions owned.\n"
                     "# TYPE meterd_owned gauge\n"
                     "meterd_owned 4\n");
    metrics_free(m);
}

static void test_same_metric_twice(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    assert_non_null(m);
    metric_t *a = metrics_counter(m, "x_total", "X.", "k=\"v\"");
    metric_t *n = metrics_counter(m, "x_total", "X.", NULL);
    assert_non_null(a);
    assert_non_null(n);
    assert_ptr_not_equal(a, n);
    assert_ptr_equal(metrics_counter(m, "x_total", "X.", "k=\"v\""), a);
    assert_ptr_equal(metrics_counter(m, "x_total", "X.", NULL), n);
    assert_ptr_equal(metrics_counter(m, "x_total", "X.", ""), n); /* no labels either way */
    metric_t *g = metrics_gauge(m, "g", "G.", NULL);
    assert_ptr_equal(metrics_gauge(m, "g", "G.", NULL), g);
    static const double bounds[] = {1, 2};
    metric_t *h = metrics_histogram(m, "h_seconds", "H.", NULL, bounds, 2);
    assert_non_null(h);
    assert_ptr_equal(metrics_histogram(m, "h_seconds", "H.", NULL, bounds, 2), h);
    metric_inc(a);
    /* Registered once: one line each. */
    assert_render(m, "# HELP x_total X.\n"
                     "# TYPE x_total counter\n"
                     "x_total{k=\"v\"} 1\n"
                     "x_total 0\n"
                     "# HELP g G.\n"
                     "# TYPE g gauge\n"
                     "g 0\n"
                     "# HELP h_seconds H.\n"
                     "# TYPE h_seconds histogram\n"
                     "h_seconds_bucket{le=\"1\"} 0\n"
                     "h_seconds_bucket{le=\"2\"} 0\n"
                     "h_seconds_bucket{le=\"+Inf\"} 0\n"
                     "h_seconds_sum 0\n"
                     "h_seconds_count 0\n");
    metrics_free(m);
}

static void test_kind_conflict(void **state)
{
    (void)state;
    static const double bounds[] = {1};
    metrics_t *m = metrics_new();
    assert_non_null(m);
    assert_non_null(metrics_counter(m, "c_total", "C.", NULL));
    assert_non_null(metrics_gauge(m, "g", "G.", "a=\"1\""));
    assert_non_null(metrics_histogram(m, "h", "H.", NULL, bounds, 1));
    /* The same name with another kind, with or without labels. */
    assert_null(metrics_gauge(m, "c_total", "C.", NULL));
    assert_null(metrics_gauge(m, "c_total", "C.", "a=\"1\""));
    assert_null(metrics_histogram(m, "c_total", "C.", NULL, bounds, 1));
    assert_null(metrics_counter(m, "g", "G.", "a=\"1\""));
    assert_null(metrics_counter(m, "g", "G.", "a=\"2\""));
    assert_null(metrics_counter(m, "h", "H.", NULL));
    assert_null(metrics_gauge(m, "h", "H.", "x=\"y\""));
    /* The refusals registered nothing. */
    assert_render(m, "# HELP c_total C.\n"
                     "# TYPE c_total counter\n"
                     "c_total 0\n"
                     "# HELP g G.\n"
                     "# TYPE g gauge\n"
                     "g{a=\"1\"} 0\n"
                     "# HELP h H.\n"
                     "# TYPE h histogram\n"
                     "h_bucket{le=\"1\"} 0\n"
                     "h_bucket{le=\"+Inf\"} 0\n"
                     "h_sum 0\n"
                     "h_count 0\n");
    metrics_free(m);
}

static void test_histogram(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    assert_non_null(m);
    static const double bounds[] = {0.005, 1, 2.5, 10};
    metric_t *h = metrics_histogram(m, "meterd_flush_duration_seconds", "Flush time.",
                                    "table=\"cost\"", bounds, N_ELEMS(bounds));
    assert_non_null(h);
    /* A bucket counts observations <= its bound ("le"). The observations are exact binary
     * fractions, so their sum is exact too. */
    static const double obs[] = {0.00390625, -1, 0.0625, 1, 0.5, 2.5, 2.75, 10, 11, 1000};
    for (size_t i = 0; i < N_ELEMS(obs); i++)
        metric_observe(h, obs[i]);
    assert_int_equal(metric_value(h), N_ELEMS(obs));
    /* le 0.005: 0.00390625 -1 = 2; le 1: + 0.0625 1 0.5 = 5; le 2.5: + 2.5 = 6;
     * le 10: + 2.75 10 = 8; +Inf: + 11 1000 = 10. Sum = 1026.81640625. */
    assert_render(m, "# HELP meterd_flush_duration_seconds Flush time.\n"
                     "# TYPE meterd_flush_duration_seconds histogram\n"
                     "meterd_flush_duration_seconds_bucket{table=\"cost\",le=\"0.005\"} 2\n"
                     "meterd_flush_duration_seconds_bucket{table=\"cost\",le=\"1\"} 5\n"
                     "meterd_flush_duration_seconds_bucket{table=\"cost\",le=\"2.5\"} 6\n"
                     "meterd_flush_duration_seconds_bucket{table=\"cost\",le=\"10\"} 8\n"
                     "meterd_flush_duration_seconds_bucket{table=\"cost\",le=\"+Inf\"} 10\n"
                     "meterd_flush_duration_seconds_sum{table=\"cost\"} 1026.81640625\n"
                     "meterd_flush_duration_seconds_count{table=\"cost\"} 10\n");
    metrics_free(m);
}

/* Bucket bounds and sums keep every significant digit: a rounded "le" would name a bucket
 * boundary that does not exist, and a rounded _sum loses increments once it is large. */
static void test_histogram_precision(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    assert_non_null(m);
    static const double bounds[] = {0.0001, 0.25, 1234567, 250000000};
    metric_t *h = metrics_histogram(m, "meterd_flush_messages", "Messages per flush.", NULL, bounds,
                                    N_ELEMS(bounds));
    assert_non_null(h);
    metric_observe(h, 1234567);
    metric_observe(h, 1234568);
    metric_observe(h, 4000000000.0);
    metric_observe(h, 1);
    assert_render(m, "# HELP meterd_flush_messages Messages per flush.\n"
                     "# TYPE meterd_flush_messages histogram\n"
                     "meterd_flush_messages_bucket{le=\"0.0001\"} 0\n"
                     "meterd_flush_messages_bucket{le=\"0.25\"} 0\n"
                     "meterd_flush_messages_bucket{le=\"1234567\"} 2\n"
                     "meterd_flush_messages_bucket{le=\"2.5e+08\"} 3\n"
                     "meterd_flush_messages_bucket{le=\"+Inf\"} 4\n"
                     "meterd_flush_messages_sum 4002469136\n"
                     "meterd_flush_messages_count 4\n");
    metrics_free(m);
}

/* Many metrics: the registry's array and the output buffer grow. */
/* Quantiles interpolate inside the bucket that holds them, as histogram_quantile does. */
static void test_quantile(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    static const double bounds[] = {1, 2, 4};
    metric_t *h = metrics_histogram(m, "q_seconds", "q", NULL, bounds, 3);
    assert_true(metric_quantile(h, 0.5) == 0); /* empty */
    /* 10 in (0,1], 10 in (1,2], 20 in (2,4] */
    for (int i = 0; i < 10; i++)
        metric_observe(h, 0.5);
    for (int i = 0; i < 10; i++)
        metric_observe(h, 1.5);
    for (int i = 0; i < 20; i++)
        metric_observe(h, 3);
    /* rank 20 of 40 is the top of (1,2]: 2; rank 10 the top of (0,1]: 1;
     * rank 30 half-way through (2,4]: 3; rank 4 is 40% into (0,1]: 0.4 */
    assert_true(metric_quantile(h, 0.5) == 2.0);
    assert_true(metric_quantile(h, 0.25) == 1.0);
    assert_true(metric_quantile(h, 0.75) == 3.0);
    assert_true(metric_quantile(h, 0.1) > 0.399 && metric_quantile(h, 0.1) < 0.401);
    /* beyond the last finite bound: the largest bound */
    for (int i = 0; i < 100; i++)
        metric_observe(h, 10);
    assert_true(metric_quantile(h, 0.99) == 4.0);
    metrics_free(m);
}

static void test_many(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    assert_non_null(m);
    for (int i = 0; i < 500; i++) {
        char name[32], labels[32];
        snprintf(name, sizeof(name), "m%d_total", i % 50);
        snprintf(labels, sizeof(labels), "i=\"%d\"", i);
        metric_t *x =
            metrics_counter(m, name, "A fairly long help text to fill the buffer.", labels);
        assert_non_null(x);
        metric_add(x, (uint64_t)i);
    }
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(metrics_render(m, &out, &len), 0);
    assert_true(len > 8192);
    /* 50 families × 2 header lines + 500 samples. */
    size_t lines = 0, helps = 0;
    for (char *p = out; *p; p++)
        lines += *p == '\n';
    for (char *p = out; (p = strstr(p, "# HELP ")) != NULL; p++)
        helps++;
    assert_int_equal(lines, 600);
    assert_int_equal(helps, 50);
    assert_non_null(strstr(out, "\nm7_total{i=\"457\"} 457\n"));
    /* Family m7 lists its members in registration order right after its header. */
    const char *hdr =
        strstr(out, "# TYPE m7_total counter\nm7_total{i=\"7\"} 7\nm7_total{i=\"57\"}");
    assert_non_null(hdr);
    free(out);
    metrics_free(m);
}

/* The daemon's own kind of registry, piped through promtool's linter. */
static void test_promtool(void **state)
{
    (void)state;
    if (access(PROMTOOL, X_OK) != 0) {
        printf("note: %s not found (Debian package prometheus); skipping\n", PROMTOOL);
        skip();
    }
    metrics_t *m = metrics_new();
    assert_non_null(m);
    static const double secs[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                  0.25,  0.5,    1,     2.5,  5,     10};
    metric_t *c1 =
        metrics_counter(m, "meterd_events_total", "Events applied, by type.", "type=\"llm.call\"");
    metric_t *c2 =
        metrics_counter(m, "meterd_events_total", "Events applied, by type.", "type=\"api.call\"");
    metric_t *g = metrics_gauge(m, "meterd_uncommitted_messages",
                                "Messages consumed but not yet durable.", NULL);
    metric_t *h =
        metrics_histogram(m, "meterd_flush_duration_seconds",
                          "Time from sealing a flush to its commit.", NULL, secs, N_ELEMS(secs));
    metric_t *h2 =
        metrics_histogram(m, "meterd_flush_messages", "Input messages made durable per flush.",
                          "partition=\"3\"", secs, N_ELEMS(secs));
    assert_non_null(c1);
    assert_non_null(c2);
    assert_non_null(g);
    assert_non_null(h);
    assert_non_null(h2);
    metric_add(c1, 5);
    metric_set(g, 12);
    for (int i = 0; i < 100; i++) {
        metric_observe(h, i * 0.0137);
        metric_observe(h2, i * 0.31);
    }
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(metrics_render(m, &out, &len), 0);
    FILE *p = popen(PROMTOOL " check metrics", "w");
    assert_non_null(p);
    assert_int_equal(fwrite(out, 1, len, p), len);
    int status = pclose(p);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        print_error("promtool refused:\n%s\n", out);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    free(out);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_counter_gauge),
        cmocka_unit_test(test_families),
        cmocka_unit_test(test_same_metric_twice),
        cmocka_unit_test(test_kind_conflict),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_histogram_precision),
        cmocka_unit_test(test_quantile),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_promtool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
