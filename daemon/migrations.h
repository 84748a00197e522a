/*
 * migrations — the versioned SQL schema, compiled in from schemas/NNN_name.sql by
 * cmake/embed_migrations.cmake. Sorted by version; store.c applies the ones the database lacks.
 */
#ifndef METERD_MIGRATIONS_H
#define METERD_MIGRATIONS_H

#include <stddef.h>

typedef struct {
    int version;      /* NNN of the file name */
    const char *name; /* file name without .sql */
    const char *sql;  /* the whole file, NUL-terminated */
} migration_t;

extern const migration_t migrations[];
extern const size_t migrations_count;

#endif
