/* json_util.h: typed field readers over cJSON with "FILE: FIELD: reason"
 * errors, shared by the catalog, HuggingFace and plan loaders.
 *
 * Every reader takes the object, the key, the origin (file name used in the
 * message) and an MpError.  "req" readers fail when the key is missing;
 * "opt" readers leave *out untouched when the key is missing (or null).
 */
#ifndef MOEPLAN_JSON_UTIL_H
#define MOEPLAN_JSON_UTIL_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "error.h"

/* Parses text; on a syntax error the message names the origin and the line,
 * column and byte offset where parsing stopped. Caller frees with cJSON_Delete. */
cJSON *json_parse_text(const char *text, const char *origin, MpError *err);

/* Integers: JSON numbers with no fractional part, in [INT32_MIN, INT32_MAX]. */
int json_req_int(const cJSON *obj, const char *key, const char *origin, int *out, MpError *err);
int json_opt_int(const cJSON *obj, const char *key, const char *origin, int *out, MpError *err);
/* Finite JSON numbers. */
int json_req_double(const cJSON *obj, const char *key, const char *origin, double *out, MpError *err);
int json_opt_double(const cJSON *obj, const char *key, const char *origin, double *out, MpError *err);
/* JSON true/false only (0/1 are rejected). */
int json_opt_bool(const cJSON *obj, const char *key, const char *origin, bool *out, MpError *err);
/* Non-empty strings shorter than len, without control characters. */
int json_req_string(const cJSON *obj, const char *key, const char *origin, char *out, int len, MpError *err);
int json_opt_string(const cJSON *obj, const char *key, const char *origin, char *out, int len, MpError *err);

/* Fails on the first key of obj that is not in the NULL-terminated list
 * `known` ("FILE: KEY: unknown field (known: ...)"). */
int json_check_keys(const cJSON *obj, const char *const *known, const char *origin, MpError *err);

/* Short description of a JSON value's type for messages ("a string", ...). */
const char *json_type_name(const cJSON *v);

#endif
