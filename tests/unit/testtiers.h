/*
 * testtiers — the shipped tier table (deploy/tiers.ini), parsed, for the unit tests that need
 * real limits. Header-only; SOURCE_DIR is a compile definition of every unit test.
 */
#ifndef METERD_TESTTIERS_H
#define METERD_TESTTIERS_H

#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "tiers.h"

/* Returns the parsed table (freed with tiers_free), or NULL after printing why. */
static tiers_t *shipped_tiers(void)
{
    char *text, err[256];
    size_t n;
    tiers_t *t = NULL;
    if (config_read_file(SOURCE_DIR "/deploy/tiers.ini", &text, &n) < 0) {
        fprintf(stderr, "cannot read " SOURCE_DIR "/deploy/tiers.ini\n");
        return NULL;
    }
    if (tiers_parse(text, n, &t, err, sizeof(err)) != 0)
        fprintf(stderr, "deploy/tiers.ini: %s\n", err);
    free(text);
    return t;
}

#endif
