/* json_schema_check.h: a validator for the subset of JSON Schema that
 * docs/schema/ uses: type (a name or a list of names), required,
 * properties, items, enum, minimum, anyOf and "$ref": "#/$defs/NAME".
 * Any other keyword (additionalProperties, oneOf, pattern, ...) is refused,
 * so a schema cannot silently say more than this checks.  Annotations
 * ($schema, $id, title, description, $defs) are skipped.
 *
 *   schema_check(root, schema, instance, msg, len)
 * returns 0, or -1 with msg = "PATH: reason" of the first violation. */
#ifndef MOEPLAN_JSON_SCHEMA_CHECK_H
#define MOEPLAN_JSON_SCHEMA_CHECK_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

static bool schema_type_is(const cJSON *v, const char *type) {
    if (!strcmp(type, "object")) return cJSON_IsObject(v);
    if (!strcmp(type, "array")) return cJSON_IsArray(v);
    if (!strcmp(type, "string")) return cJSON_IsString(v);
    if (!strcmp(type, "boolean")) return cJSON_IsBool(v);
    if (!strcmp(type, "null")) return cJSON_IsNull(v);
    if (!strcmp(type, "number")) return cJSON_IsNumber(v);
    if (!strcmp(type, "integer")) return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
    return false;
}

static int schema_fail(char *msg, size_t len, const char *path, const char *what) {
    snprintf(msg, len, "%s: %s", path[0] ? path : "(root)", what);
    return -1;
}

static int schema_check_at(const cJSON *root, const cJSON *schema, const cJSON *v, const char *path, char *msg,
                           size_t len, int depth) {
    char why[512], sub[512];
    if (depth > 64) return schema_fail(msg, len, path, "schema nests too deep (a $ref loop?)");
    if (!cJSON_IsObject(schema)) return schema_fail(msg, len, path, "schema is not an object");
    const cJSON *kw;
    cJSON_ArrayForEach(kw, schema) {
        const char *k = kw->string;
        if (!strcmp(k, "$schema") || !strcmp(k, "$id") || !strcmp(k, "title") || !strcmp(k, "description") ||
            !strcmp(k, "$defs"))
            continue;
        if (!strcmp(k, "$ref")) {
            const char *pre = "#/$defs/";
            if (!cJSON_IsString(kw) || strncmp(kw->valuestring, pre, strlen(pre)))
                return schema_fail(msg, len, path, "$ref: only #/$defs/NAME is supported");
            const cJSON *target = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "$defs"), kw->valuestring + strlen(pre));
            if (!target) {
                snprintf(why, sizeof why, "$ref: %s not found", kw->valuestring);
                return schema_fail(msg, len, path, why);
            }
            if (schema_check_at(root, target, v, path, msg, len, depth + 1)) return -1;
        } else if (!strcmp(k, "type")) {
            bool ok = false;
            if (cJSON_IsString(kw)) ok = schema_type_is(v, kw->valuestring);
            else {
                const cJSON *t;
                cJSON_ArrayForEach(t, kw) if (cJSON_IsString(t) && schema_type_is(v, t->valuestring)) ok = true;
            }
            if (!ok) {
                char *want = cJSON_PrintUnformatted(kw);
                snprintf(why, sizeof why, "type: expected %s", want ? want : "?");
                cJSON_free(want);
                return schema_fail(msg, len, path, why);
            }
        } else if (!strcmp(k, "required")) {
            if (!cJSON_IsObject(v)) continue;
            const cJSON *r;
            cJSON_ArrayForEach(r, kw) if (!cJSON_GetObjectItemCaseSensitive(v, r->valuestring)) {
                snprintf(why, sizeof why, "required: '%s' is missing", r->valuestring);
                return schema_fail(msg, len, path, why);
            }
        } else if (!strcmp(k, "properties")) {
            if (!cJSON_IsObject(v)) continue;
            const cJSON *p;
            cJSON_ArrayForEach(p, kw) {
                const cJSON *item = cJSON_GetObjectItemCaseSensitive(v, p->string);
                if (!item) continue;
                snprintf(sub, sizeof sub, "%s.%s", path, p->string);
                if (schema_check_at(root, p, item, sub, msg, len, depth + 1)) return -1;
            }
        } else if (!strcmp(k, "items")) {
            if (!cJSON_IsArray(v)) continue;
            int i = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, v) {
                snprintf(sub, sizeof sub, "%s[%d]", path, i++);
                if (schema_check_at(root, kw, e, sub, msg, len, depth + 1)) return -1;
            }
        } else if (!strcmp(k, "enum")) {
            bool ok = false;
            const cJSON *e;
            cJSON_ArrayForEach(e, kw) if (cJSON_Compare(e, v, true)) ok = true;
            if (!ok) return schema_fail(msg, len, path, "enum: not one of the allowed values");
        } else if (!strcmp(k, "minimum")) {
            if (cJSON_IsNumber(v) && v->valuedouble < kw->valuedouble) {
                snprintf(why, sizeof why, "minimum: %g < %g", v->valuedouble, kw->valuedouble);
                return schema_fail(msg, len, path, why);
            }
        } else if (!strcmp(k, "anyOf")) {
            bool ok = false;
            const cJSON *alt;
            char inner[512] = "";
            cJSON_ArrayForEach(alt, kw) if (!schema_check_at(root, alt, v, path, inner, sizeof inner, depth + 1)) ok = true;
            if (!ok) {
                snprintf(why, sizeof why, "anyOf: no alternative matches (last: %.400s)", inner);
                return schema_fail(msg, len, path, why);
            }
        } else {
            snprintf(why, sizeof why, "schema keyword '%s' is not supported by this validator", k);
            return schema_fail(msg, len, path, why);
        }
    }
    return 0;
}

static int schema_check(const cJSON *root, const cJSON *schema, const cJSON *v, char *msg, size_t len) {
    msg[0] = 0;
    return schema_check_at(root, schema, v, "", msg, len, 0);
}

#endif
