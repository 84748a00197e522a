/*
 * initext — INI text parsed with libinih, minus the ways inih silently mangles a file.
 *
 * Pure: parses text already in memory. inih does the syntax (comments, inline " ;" comments,
 * a UTF-8 BOM, white space around '='), but Debian's libinih truncates section names to 49
 * bytes, splits lines longer than its 200-byte buffer into two, stops at a NUL byte (dropping
 * the rest without error), reads indented lines as keys or as continuations depending on the
 * line before, ignores text after ']', and does not report line numbers. A configuration or a
 * price table mangled that way must be refused, not half-applied, so this reader hands inih one
 * checked line at a time, tracks line numbers and full section names itself, and stops at the
 * first error, which names its line (and section).
 *
 * Used by config (meterd.ini), pricing (prices.ini) and tiers (tiers.ini).
 */
#ifndef METERD_INITEXT_H
#define METERD_INITEXT_H

#include <stddef.h>

typedef struct initext initext_t;

typedef struct {
    /* A "[name]" header; name is not NUL-terminated. Returns 0, or -1 after initext_error. */
    int (*on_section)(initext_t *ix, void *user, int line, const char *name, size_t len);
    /* A "key = value" line; section is the full current section name, "" before the first.
     * Returns 0, or -1 after initext_error. */
    int (*on_entry)(initext_t *ix, void *user, int line, const char *section, const char *key,
                    const char *value);
    /* Appended to syntax errors, e.g. "want [provider/model], key = value, or a ; comment". */
    const char *syntax_hint;
} initext_spec_t;

/* Parses text[0..len) (need not be NUL-terminated). Returns 0, or -1 with a message starting
 * "line N: " in err[0..errlen) (err may be NULL). */
__attribute__((warn_unused_result)) int initext_parse(const char *text, size_t len,
                                                      const initext_spec_t *spec, void *user,
                                                      char *err, size_t errlen);

/* Records the first error of a parse as "line N: <message>"; later calls are ignored. */
void initext_error(initext_t *ix, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
