/*
 * mockbroker — a stand-alone Kafka "broker" for tests and the local demo: librdkafka's mock
 * cluster in its own process.
 *
 *     mockbroker [--brokers N] [--partitions P] [--topic NAME[:PARTITIONS]]...
 *                [--bootstrap-file PATH] [--ready-fd FD] [--verbose]
 *
 * It creates the topics (default usage.events, usage.dlq, meter.decisions, budget.events with
 * P partitions each, replication factor min(N, 3)), prints the bootstrap address
 * ("127.0.0.1:PORT,...") as the only line on stdout, and serves until SIGINT or SIGTERM, then
 * shuts down and exits 0. Because it lives in its own process, a test can kill -9 and restart
 * meterd while the "broker" and its data live on. Any Kafka client speaks to it over loopback
 * TCP: librdkafka, kcat, and Debian's python3-kafka 2.0.2 (which probes and finds (2, 3, 0);
 * api_version=(2, 5, 0) skips the probe; producing needs at least (0, 11, 0), as the mock only
 * takes message format v2).
 *
 * Readiness: once the topics exist, the address is printed and flushed, written atomically to
 * --bootstrap-file (temporary file, then rename; removed again at a clean exit), and written
 * as one line to --ready-fd, which is then closed (a pipe the parent reads, or waits to see
 * closed).
 *
 * Limits of the mock (librdkafka 2.0.2), to keep in mind when reading test results:
 *   - Each partition keeps only the last 5 MiB (and 100,000 batches), hard-coded: a consumer
 *     that falls further behind gets "offset out of range" or, with auto.offset.reset=earliest,
 *     silently skips. Benchmarks must use many partitions or produce at a controlled pace.
 *   - A Fetch returns one producer batch per partition, so consumer speed follows the
 *     producer's batch size (produce with linger.ms >= 5).
 *   - An empty Fetch waits the whole fetch.wait.max.ms (default 500 ms): use 1-10 ms in tests.
 *   - Consumer groups (measured): the first member of an empty group is assigned after ~3 s,
 *     a member joining a non-empty group after session.timeout.ms - 1 s (5 s at 6000 ms), and
 *     so is one that replaces a member killed with kill -9. The 2.0.2 mock has no setter.
 *   - Nothing is persisted: the data dies with this process. Topics that a client produces to
 *     or asks metadata for are auto-created with 4 partitions.
 *   - Keys and partitions: librdkafka's default partitioner (consistent_random, CRC32) and
 *     python3-kafka's (murmur2) put the same key on different partitions; a librdkafka producer
 *     needs partitioner=murmur2_random to agree with Java and python clients.
 *
 * Threading: librdkafka's threads serve the cluster; the main thread blocks SIGINT and SIGTERM
 * before creating any of them (so every thread inherits the mask) and sleeps in sigwait.
 * Exit status: 0 after a signal, 2 for a usage error, 1 for a runtime error.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TOPICS     64
#define MAX_TOPIC_NAME 249 /* Kafka's limit */
#define MAX_BROKERS    32
#define MAX_PARTITIONS 10000
#define EXIT_USAGE     2

typedef struct {
    char name[MAX_TOPIC_NAME + 1];
    long partitions; /* 0: use --partitions */
} topic_t;

typedef struct {
    long brokers;
    long partitions;
    topic_t topics[MAX_TOPICS];
    size_t n_topics;
    const char *bootstrap_file;
    long ready_fd; /* -1: none */
    bool verbose;
} options_t;

static const char *const default_topics[] = {"usage.events", "usage.dlq", "meter.decisions",
                                             "budget.events"};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mockbroker [--brokers N] [--partitions P] [--topic NAME[:PARTITIONS]]...\n"
            "                  [--bootstrap-file PATH] [--ready-fd FD] [--verbose]\n"
            "\n"
            "Runs librdkafka's mock Kafka cluster until SIGINT or SIGTERM and prints its\n"
            "bootstrap address as the only line on stdout.\n"
            "\n"
            "  --brokers N            brokers in the cluster, 1..%d (default 1)\n"
            "  --partitions P         partitions per topic, 1..%d (default 8)\n"
            "  --topic NAME[:P]       create this topic (repeatable; default: usage.events,\n"
            "                         usage.dlq, meter.decisions, budget.events)\n"
            "  --bootstrap-file PATH  also write the address to PATH (atomically)\n"
            "  --ready-fd FD          write the address to FD, then close it\n"
            "  --verbose              librdkafka's mock and broker debug logs on stderr\n",
            MAX_BROKERS, MAX_PARTITIONS);
}

/* Parses a whole decimal integer in [min, max]; no sign tricks, no trailing text. */
static int parse_long(const char *s, long min, long max, long *out)
{
    if (!s || *s == '\0' || *s == ' ' || *s == '+')
        return -1;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static bool topic_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > MAX_TOPIC_NAME)
        return false;
    if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int add_topic(options_t *o, const char *arg)
{
    const char *colon = strchr(arg, ':');
    size_t len = colon ? (size_t)(colon - arg) : strlen(arg);
    if (!topic_name_ok(arg, len)) {
        fprintf(stderr,
                "mockbroker: bad topic name \"%s\" (1..%d of [a-zA-Z0-9._-], not \".\" or "
                "\"..\")\n",
                arg, MAX_TOPIC_NAME);
        return -1;
    }
    long partitions = 0;
    if (colon && parse_long(colon + 1, 1, MAX_PARTITIONS, &partitions) != 0) {
        fprintf(stderr, "mockbroker: bad partition count in --topic %s (want 1..%d)\n", arg,
                MAX_PARTITIONS);
        return -1;
    }
    for (size_t i = 0; i < o->n_topics; i++) {
        if (strlen(o->topics[i].name) == len && memcmp(o->topics[i].name, arg, len) == 0) {
            fprintf(stderr, "mockbroker: topic %.*s given twice\n", (int)len, arg);
            return -1;
        }
    }
    if (o->n_topics == MAX_TOPICS) {
        fprintf(stderr, "mockbroker: more than %d topics\n", MAX_TOPICS);
        return -1;
    }
    topic_t *t = &o->topics[o->n_topics++];
    memcpy(t->name, arg, len);
    t->name[len] = '\0';
    t->partitions = partitions;
    return 0;
}

/* Fills *o from argv. Returns 0, 1 after --help, or -1 after printing a usage error. */
static int parse_args(int argc, char **argv, options_t *o)
{
    *o = (options_t){.brokers = 1, .partitions = 8, .ready_fd = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--verbose") == 0) {
            o->verbose = true;
            continue;
        }
        bool takes_value = strcmp(a, "--brokers") == 0 || strcmp(a, "--partitions") == 0 ||
                           strcmp(a, "--topic") == 0 || strcmp(a, "--bootstrap-file") == 0 ||
                           strcmp(a, "--ready-fd") == 0;
        if (!takes_value) {
            fprintf(stderr, "mockbroker: unknown argument \"%s\"\n", a);
            usage(stderr);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "mockbroker: %s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--brokers") == 0) {
            if (parse_long(v, 1, MAX_BROKERS, &o->brokers) != 0) {
                fprintf(stderr, "mockbroker: bad --brokers \"%s\" (want 1..%d)\n", v, MAX_BROKERS);
                return -1;
            }
        } else if (strcmp(a, "--partitions") == 0) {
            if (parse_long(v, 1, MAX_PARTITIONS, &o->partitions) != 0) {
                fprintf(stderr, "mockbroker: bad --partitions \"%s\" (want 1..%d)\n", v,
                        MAX_PARTITIONS);
                return -1;
            }
        } else if (strcmp(a, "--topic") == 0) {
            if (add_topic(o, v) != 0)
                return -1;
        } else if (strcmp(a, "--bootstrap-file") == 0) {
            if (*v == '\0') {
                fprintf(stderr, "mockbroker: empty --bootstrap-file\n");
                return -1;
            }
            o->bootstrap_file = v;
        } else {
            if (parse_long(v, 3, INT_MAX, &o->ready_fd) != 0) {
                fprintf(stderr, "mockbroker: bad --ready-fd \"%s\" (want 3 or above)\n", v);
                return -1;
            }
            if (fcntl((int)o->ready_fd, F_GETFD) == -1) {
                fprintf(stderr, "mockbroker: --ready-fd %ld is not an open descriptor\n",
                        o->ready_fd);
                return -1;
            }
        }
    }
    if (o->n_topics == 0) {
        for (size_t i = 0; i < sizeof(default_topics) / sizeof(default_topics[0]); i++) {
            if (add_topic(o, default_topics[i]) != 0)
                return -1;
        }
    }
    return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes line to path through a temporary file and rename, so a reader never sees half. */
static int write_file_atomically(const char *path, const char *line)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        fprintf(stderr, "mockbroker: --bootstrap-file path too long\n");
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "mockbroker: cannot create %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    if (write_all(fd, line, strlen(line)) != 0) {
        fprintf(stderr, "mockbroker: cannot write %s: %s\n", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "mockbroker: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Creates the cluster's host handle: a producer that never connects anywhere itself. */
static rd_kafka_t *new_handle(bool verbose)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "client.id", "mockbroker", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", verbose ? "7" : "3", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        /* The mock brokers' sockets take this handle's settings. With Nagle on, a response
         * written in two pieces waits for the client's delayed ACK: 40 ms stalls that real
         * brokers (TCP_NODELAY) do not have. */
        rd_kafka_conf_set(conf, "socket.nagle.disable", "true", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        (verbose && rd_kafka_conf_set(conf, "debug", "mock,broker", errstr, sizeof(errstr)) !=
                        RD_KAFKA_CONF_OK)) {
        fprintf(stderr, "mockbroker: librdkafka configuration: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "mockbroker: cannot create the librdkafka handle: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* conf is now owned by rk. */
    return rk;
}

int main(int argc, char **argv)
{
    /* Block the stop signals first: before librdkafka starts threads, so that only sigwait sees
     * them, and before anything slow, so that one sent during start-up is not lost. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    /* A reader that went away must be an error on write, not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    if (pthread_sigmask(SIG_BLOCK, &stop, NULL) != 0) {
        fprintf(stderr, "mockbroker: cannot block signals\n");
        return 1;
    }

    options_t o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : EXIT_USAGE;

    rd_kafka_t *rk = new_handle(o.verbose);
    if (!rk)
        return 1;
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, (int)o.brokers);
    if (!mc) {
        fprintf(stderr, "mockbroker: cannot create a mock cluster of %ld brokers\n", o.brokers);
        rd_kafka_destroy(rk);
        return 1;
    }

    int status = 0;
    int replication = o.brokers < 3 ? (int)o.brokers : 3;
    for (size_t i = 0; i < o.n_topics && status == 0; i++) {
        const topic_t *t = &o.topics[i];
        int partitions = (int)(t->partitions ? t->partitions : o.partitions);
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, t->name, partitions, replication);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "mockbroker: cannot create topic %s (%d partitions): %s\n", t->name,
                    partitions, rd_kafka_err2str(err));
            status = 1;
        }
    }

    char line[1024];
    bool wrote_file = false;
    if (status == 0) {
        int n = snprintf(line, sizeof(line), "%s\n", rd_kafka_mock_cluster_bootstraps(mc));
        if (n < 0 || (size_t)n >= sizeof(line)) {
            fprintf(stderr, "mockbroker: bootstrap address too long\n");
            status = 1;
        }
    }
    if (status == 0 && o.bootstrap_file) {
        if (write_file_atomically(o.bootstrap_file, line) != 0)
            status = 1;
        else
            wrote_file = true;
    }
    if (status == 0 && (fputs(line, stdout) == EOF || fflush(stdout) != 0)) {
        fprintf(stderr, "mockbroker: cannot write to stdout: %s\n", strerror(errno));
        status = 1;
    }
    if (status == 0 && o.ready_fd >= 0) {
        if (write_all((int)o.ready_fd, line, strlen(line)) != 0) {
            fprintf(stderr, "mockbroker: cannot write to --ready-fd %ld: %s\n", o.ready_fd,
                    strerror(errno));
            status = 1;
        }
        close((int)o.ready_fd);
    }

    if (status == 0) {
        int sig = 0;
        int err = sigwait(&stop, &sig);
        if (err != 0) {
            fprintf(stderr, "mockbroker: sigwait: %s\n", strerror(err));
            status = 1;
        } else if (o.verbose) {
            fprintf(stderr, "mockbroker: %s, shutting down\n",
                    sig == SIGINT ? "SIGINT" : "SIGTERM");
        }
    }

    if (wrote_file)
        unlink(o.bootstrap_file); /* the address dies with us */
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    if (rd_kafka_wait_destroyed(5000) != 0) {
        fprintf(stderr, "mockbroker: librdkafka did not shut down within 5 s\n");
        status = 1;
    }
    return status;
}
