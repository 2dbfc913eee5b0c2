/* json_util.c: see json_util.h. */
#include "json_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *json_type_name(const cJSON *v) {
    if (!v || cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

static int cmp_key(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A JSON object that names a key twice is refused (cJSON would silently
 * keep the first): each object's keys are sorted and neighbours compared,
 * O(n log n) per object; cJSON bounds the nesting depth (1000). */
static int check_duplicates(const cJSON *v, const char *origin, MpError *err) {
    if (cJSON_IsObject(v)) {
        size_t n = 0;
        for (const cJSON *it = v->child; it; it = it->next) n++;
        if (n > 1) {
            const char **keys = malloc(n * sizeof *keys);
            if (!keys) return mp_fail(err, "%s: out of memory", origin);
            size_t i = 0;
            for (const cJSON *it = v->child; it; it = it->next) keys[i++] = it->string ? it->string : "";
            qsort(keys, n, sizeof *keys, cmp_key);
            for (i = 1; i < n; i++)
                if (!strcmp(keys[i - 1], keys[i])) {
                    int rc = mp_fail(err, "%s: %s: duplicate key (a JSON object may name each key once)", origin, keys[i]);
                    free(keys);
                    return rc;
                }
            free(keys);
        }
    }
    if (cJSON_IsObject(v) || cJSON_IsArray(v))
        for (const cJSON *it = v->child; it; it = it->next)
            if (check_duplicates(it, origin, err)) return -1;
    return 0;
}

cJSON *json_parse_text(const char *text, const char *origin, MpError *err) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (root) {
        if (check_duplicates(root, origin, err)) { cJSON_Delete(root); return NULL; }
        return root;
    }
    if (!end) end = text;
    /* cJSON stops at the first byte it cannot accept: report line/column of it. */
    int line = 1, col = 1;
    for (const char *p = text; p < end && *p; p++) {
        if (*p == '\n') { line++; col = 1; } else col++;
    }
    if (*end == 0) {
        if (end == text) return (mp_fail(err, "%s: not JSON: the file is empty", origin), NULL);
        return (mp_fail(err, "%s: not JSON: unexpected end of input at line %d, column %d (byte %ld)",
                        origin, line, col, (long)(end - text)), NULL);
    }
    char near[24];
    int n = 0;
    for (const char *p = end; *p && *p != '\n' && n < (int)sizeof near - 1; p++) near[n++] = *p;
    near[n] = 0;
    mp_fail(err, "%s: not JSON: parsing stopped at line %d, column %d (byte %ld) near '%s'",
            origin, line, col, (long)(end - text), near);
    return NULL;
}

static const cJSON *get(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

static int read_int(const cJSON *v, const char *key, const char *origin, int *out, MpError *err) {
    if (!cJSON_IsNumber(v))
        return mp_fail(err, "%s: %s: expected an integer, got %s", origin, key, json_type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return mp_fail(err, "%s: %s: %g is not an integer", origin, key, d);
    if (d > 2147483647.0 || d < -2147483648.0)
        return mp_fail(err, "%s: %s: %g is out of range", origin, key, d);
    *out = (int)d;
    return 0;
}

int json_req_int(const cJSON *obj, const char *key, const char *origin, int *out, MpError *err) {
    const cJSON *v = get(obj, key);
    if (!v) return mp_fail(err, "%s: %s: missing (an integer is required)", origin, key);
    return read_int(v, key, origin, out, err);
}

int json_opt_int(const cJSON *obj, const char *key, const char *origin, int *out, MpError *err) {
    const cJSON *v = get(obj, key);
    return v ? read_int(v, key, origin, out, err) : 0;
}

static int read_double(const cJSON *v, const char *key, const char *origin, double *out, MpError *err) {
    if (!cJSON_IsNumber(v))
        return mp_fail(err, "%s: %s: expected a number, got %s", origin, key, json_type_name(v));
    if (!isfinite(v->valuedouble))
        return mp_fail(err, "%s: %s: not a finite number", origin, key);
    *out = v->valuedouble;
    return 0;
}

int json_req_double(const cJSON *obj, const char *key, const char *origin, double *out, MpError *err) {
    const cJSON *v = get(obj, key);
    if (!v) return mp_fail(err, "%s: %s: missing (a number is required)", origin, key);
    return read_double(v, key, origin, out, err);
}

int json_opt_double(const cJSON *obj, const char *key, const char *origin, double *out, MpError *err) {
    const cJSON *v = get(obj, key);
    return v ? read_double(v, key, origin, out, err) : 0;
}

int json_opt_bool(const cJSON *obj, const char *key, const char *origin, bool *out, MpError *err) {
    const cJSON *v = get(obj, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v))
        return mp_fail(err, "%s: %s: expected true or false, got %s", origin, key, json_type_name(v));
    *out = cJSON_IsTrue(v);
    return 0;
}

static int read_string(const cJSON *v, const char *key, const char *origin, char *out, int len, MpError *err) {
    if (!cJSON_IsString(v) || !v->valuestring)
        return mp_fail(err, "%s: %s: expected a string, got %s", origin, key, json_type_name(v));
    size_t n = strlen(v->valuestring);
    if (n == 0) return mp_fail(err, "%s: %s: empty string", origin, key);
    if (n >= (size_t)len) return mp_fail(err, "%s: %s: longer than %d characters", origin, key, len - 1);
    /* names end up in reports and plot titles: no terminal escapes or newlines */
    for (const unsigned char *c = (const unsigned char *)v->valuestring; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return mp_fail(err, "%s: %s: contains the control character \\x%02x", origin, key, *c);
    memcpy(out, v->valuestring, n + 1);
    return 0;
}

int json_req_string(const cJSON *obj, const char *key, const char *origin, char *out, int len, MpError *err) {
    const cJSON *v = get(obj, key);
    if (!v) return mp_fail(err, "%s: %s: missing (a string is required)", origin, key);
    return read_string(v, key, origin, out, len, err);
}

int json_opt_string(const cJSON *obj, const char *key, const char *origin, char *out, int len, MpError *err) {
    const cJSON *v = get(obj, key);
    return v ? read_string(v, key, origin, out, len, err) : 0;
}

int json_check_keys(const cJSON *obj, const char *const *known, const char *origin, MpError *err) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        bool ok = false;
        for (int i = 0; known[i]; i++)
            if (it->string && !strcmp(it->string, known[i])) { ok = true; break; }
        if (ok) continue;
        char list[360];
        int pos = 0;
        list[0] = 0;
        for (int i = 0; known[i] && pos < (int)sizeof list - 1; i++) {
            int w = snprintf(list + pos, sizeof list - pos, "%s%s", i ? ", " : "", known[i]);
            if (w < 0) break;
            pos += w;
        }
        if (pos >= (int)sizeof list - 1) strcpy(list + sizeof list - 5, "...");
        return mp_fail(err, "%s: %.60s: unknown field (known: %s)", origin, it->string ? it->string : "?", list);
    }
    return 0;
}
