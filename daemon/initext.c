/*
 * initext — the checked line reader in front of libinih. See initext.h.
 *
 * inih's ini_parse_stream takes a reader that returns one line at a time, like fgets; inih
 * reads exactly one line per call and calls the handler for it before reading the next, so the
 * reader's line count is the handler's line and the reader's idea of the current section is
 * the handler's. The handler still checks that inih's (possibly truncated) section name is a
 * prefix of the full one, so the two can never silently disagree.
 */
#include "initext.h"

#include <ctype.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INIH_SECTION_SZ 50  /* inih's MAX_SECTION: longer names come truncated */
#define SECTION_MAX     255 /* our own limit on a section name */

struct initext {
    const initext_spec_t *spec;
    void *user;
    const char *pos, *end;
    int line;        /* number of the line last handed to inih */
    bool indented;   /* that line starts with white space */
    const char *raw; /* that line in the caller's text, without its newline */
    size_t raw_len;
    char section[SECTION_MAX + 1];
    bool failed;
    int err_line;
    char *err;
    size_t errlen;
};

void initext_error(initext_t *ix, int line, const char *fmt, ...)
{
    if (ix->failed)
        return;
    ix->failed = true;
    ix->err_line = line;
    if (!ix->err || ix->errlen == 0)
        return;
    int n = snprintf(ix->err, ix->errlen, "line %d: ", line);
    if (n < 0 || (size_t)n >= ix->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ix->err + n, ix->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static void syntax_error(initext_t *ix, int line, const char *section)
{
    const char *hint = ix->spec->syntax_hint;
    initext_error(ix, line, "%s%s%ssyntax error%s%s%s", section[0] ? "[" : "", section,
                  section[0] ? "] " : "", hint ? " (" : "", hint ? hint : "", hint ? ")" : "");
}

/* A "[...]" line: records the full name and tells the caller. */
static void open_section(initext_t *ix, const char *s, size_t n)
{
    const char *close = memchr(s, ']', n);
    if (!close) {
        initext_error(ix, ix->line, "section header without ']'");
        return;
    }
    const char *name = s + 1;
    size_t len = (size_t)(close - name);
    const char *rest = close + 1;
    while (rest < s + n && isspace((unsigned char)*rest))
        rest++;
    if (rest < s + n && *rest != ';' && *rest != '#') {
        /* inih ignores it; it is more likely a typo than a comment. */
        initext_error(ix, ix->line, "text after ']' of section [%.*s]", (int)len, name);
        return;
    }
    if (len > SECTION_MAX) {
        initext_error(ix, ix->line, "section name longer than %d bytes", SECTION_MAX);
        return;
    }
    memcpy(ix->section, name, len);
    ix->section[len] = '\0';
    if (ix->spec->on_section && ix->spec->on_section(ix, ix->user, ix->line, name, len) < 0)
        initext_error(ix, ix->line, "section [%.*s] refused", (int)len, name);
}

/* The ini_reader: hands inih one whole checked line of [pos, end) at a time. */
static char *read_line(char *str, int num, void *stream)
{
    initext_t *ix = stream;
    if (ix->failed || ix->pos == ix->end)
        return NULL;
    ix->line++;
    const char *nl = memchr(ix->pos, '\n', (size_t)(ix->end - ix->pos));
    size_t len = nl ? (size_t)(nl - ix->pos) + 1 : (size_t)(ix->end - ix->pos);
    const char *text = ix->pos;
    ix->pos += len;
    size_t body = nl ? len - 1 : len; /* without the newline */

    if (num < 3 || body + 2 > (size_t)num) {
        initext_error(ix, ix->line, "line longer than %d bytes", num - 2);
        return NULL;
    }
    if (memchr(text, '\0', body)) {
        initext_error(ix, ix->line, "NUL byte in the file");
        return NULL;
    }
    memcpy(str, text, len);
    str[len] = '\0';

    const char *s = text;
    size_t n = body;
    if (ix->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3;
        n -= 3;
    }
    ix->raw = s;
    ix->raw_len = n;
    ix->indented = n > 0 && isspace((unsigned char)s[0]); /* inih's test for "indented" */
    if (ix->indented) {
        size_t i = 0;
        while (i < n && isspace((unsigned char)s[i]))
            i++;
        if (i < n && s[i] == '[') {
            initext_error(ix, ix->line, "indented section header");
            return NULL;
        }
    } else if (n > 0 && s[0] == '[') {
        open_section(ix, s, n);
        if (ix->failed)
            return NULL;
    } else if (n > 0 && s[0] != ';' && s[0] != '#' && !memchr(s, '=', n) && !memchr(s, ':', n)) {
        /* inih's rule for a syntax error, caught here where the section is still known */
        bool blank = true;
        for (size_t i = 0; i < n && blank; i++)
            blank = isspace((unsigned char)s[i]);
        if (!blank) {
            syntax_error(ix, ix->line, ix->section);
            return NULL;
        }
    }
    return str;
}

/* The ini_handler: one "key = value" line of the current section. */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
    initext_t *ix = user;
    if (ix->failed)
        return 0;
    size_t slen = strlen(section);
    size_t nlen = strlen(ix->section);
    if (slen > nlen || memcmp(section, ix->section, slen) != 0 ||
        (slen < nlen && slen < INIH_SECTION_SZ - 1)) {
        /* Our reader and inih disagree about the section: refuse rather than guess. */
        initext_error(ix, ix->line,
                      "[%s] key \"%s\": cannot tell which section this key belongs to", ix->section,
                      name);
        return 0;
    }
    if (ix->indented) {
        /* inih reads an indented line as a key when it follows a section header, but as more
         * of the previous value when it follows a key: refuse both, the same way. */
        size_t skip = 0;
        while (skip < ix->raw_len && isspace((unsigned char)ix->raw[skip]))
            skip++;
        size_t show = ix->raw_len - skip;
        while (show > 0 && isspace((unsigned char)ix->raw[skip + show - 1]))
            show--;
        initext_error(ix, ix->line, "[%s] indented line \"%.*s\" (start keys in the first column)",
                      ix->section, (int)(show < 60 ? show : 60), ix->raw + skip);
        return 0;
    }
    if (ix->spec->on_entry(ix, ix->user, ix->line, ix->section, name, value) < 0) {
        initext_error(ix, ix->line, "[%s] key \"%s\" refused", ix->section, name);
        return 0;
    }
    return 1;
}

int initext_parse(const char *text, size_t len, const initext_spec_t *spec, void *user, char *err,
                  size_t errlen)
{
    initext_t ix = {.spec = spec,
                    .user = user,
                    .pos = text,
                    .end = text ? text + len : text,
                    .err = err,
                    .errlen = errlen};
    if (err && errlen > 0)
        err[0] = '\0';
    int rc = ini_parse_stream(read_line, &ix, on_key, &ix);
    if (rc == -2) {
        ix.failed = false;
        initext_error(&ix, ix.line, "out of memory");
    } else if (rc > 0 && (!ix.failed || rc < ix.err_line)) {
        /* inih found a syntax error the reader did not foresee, before any error of ours. */
        ix.failed = false;
        syntax_error(&ix, rc, "");
    }
    return ix.failed ? -1 : 0;
}
