/*
 * config — every setting of the daemon, from built-in defaults, an INI file, environment
 * variables and command-line flags, in that order of precedence (later wins).
 *
 * One table in config.c lists every key with its type, default, bounds and a one-line
 * description; docs/configuration.md documents exactly that table (a test compares them).
 * Keys are "section.name". The environment spells them METERD_SECTION_NAME (dots and dashes
 * become underscores, upper case); flags spell them --section.name=value.
 *
 * Two sections pass librdkafka properties through untouched: [kafka.consumer] and
 * [kafka.producer] (flags: --kafka.consumer.<property>=value). Secrets are never read from
 * the file or flags: the PostgreSQL password comes from PGPASSWORD or postgres.password_file,
 * Kafka SASL credentials from METERD_KAFKA_SASL_PASSWORD or kafka.sasl_password_file. A
 * secret-looking property in the file is refused, naming the key.
 *
 * Not thread-aware: built once by main before the loop starts, then read-only.
 */
#ifndef METERD_CONFIG_H
#define METERD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *key;
    char *value;
} config_prop_t;

typedef struct {
    config_prop_t *items;
    size_t n;
} config_props_t;

typedef struct config {
    /* [kafka] */
    char *kafka_brokers;
    char *kafka_group_id;
    char *kafka_input_topic;
    char *kafka_dlq_topic;
    char *kafka_decisions_topic;
    char *kafka_budget_topic;
    int64_t kafka_session_timeout_ms;
    int64_t kafka_fetch_wait_max_ms;
    char *kafka_sasl_username;
    char *kafka_sasl_password_file;
    char *kafka_sasl_password; /* from the environment or the file; never printed */
    config_props_t consumer_props;
    config_props_t producer_props;
    /* [postgres] */
    char *pg_dsn;
    char *pg_password_file;
    char *pg_password; /* from the file (PGPASSWORD is read by libpq itself); never printed */
    bool pg_auto_migrate;
    int64_t pg_reconnect_max_ms;
    int64_t pg_statement_timeout_ms;
    int64_t pg_idle_in_transaction_timeout_ms;
    /* [meter] */
    char *instance_id;
    char *prices_file;
    char *tiers_file;
    int64_t flush_interval_ms;
    int64_t flush_max_events;
    int64_t max_pending_events;
    int64_t max_event_bytes;
    int64_t poll_batch;
    int64_t revoke_timeout_ms;
    int64_t stats_interval_ms;
    int64_t shutdown_timeout_ms;
    /* [http] */
    char *http_listen;
    char *http_admin_listen;
    /* [log] */
    char *log_level;
} config_t;

typedef enum {
    CONFIG_CMD_RUN = 0, /* run the daemon (default) */
    CONFIG_CMD_MIGRATE, /* apply migrations and exit */
    CONFIG_CMD_CHECK,   /* print the effective configuration (secrets redacted) and exit */
    CONFIG_CMD_HELP,
    CONFIG_CMD_VERSION,
} config_cmd_t;

/* Builds the configuration from defaults, the file named by -c/--config (or none), the
 * environment envp (NULL-terminated "KEY=value" strings) and argv. On success stores a new
 * config (freed with config_free) and the command, and returns 0. On error returns -1 and
 * writes a message that names the key (or flag, or file and line) into err[0..errlen). */
__attribute__((warn_unused_result)) int config_load(int argc, char **argv, char **envp,
                                                    config_t **out, config_cmd_t *cmd, char *err,
                                                    size_t errlen);
void config_free(config_t *c);

/* Writes the effective configuration as INI to f, secrets shown as "<redacted>". */
#include <stdio.h>
void config_print(const config_t *c, FILE *f);

/* Usage text for --help. */
void config_usage(FILE *f, const char *prog);

/* The documented keys, for the reference test: calls fn(key, default, description) for each
 * key of the table in order. */
void config_each_key(void (*fn)(const char *key, const char *def, const char *doc, void *arg),
                     void *arg);

/* Splits "host:port" or "[v6 address]:port" into host (NUL-terminated, brackets removed) and
 * port 1..65535. Returns 0, or -1 when malformed or host does not fit in hostlen. */
__attribute__((warn_unused_result)) int config_parse_hostport(const char *s, char *host,
                                                              size_t hostlen, int *port);

/* Reads a whole file into a NUL-terminated heap buffer (freed by the caller) — used for the
 * price table and secret files. Returns 0, or -1 with errno set. */
__attribute__((warn_unused_result)) int config_read_file(const char *path, char **out, size_t *len);

#endif
