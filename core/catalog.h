/* catalog.h: loading models, clusters and plans from JSON.
 *
 * The catalog (models/NAME.json, topologies/NAME.json) is embedded in the binary at
 * build time (tools/embed.c), so moeplan needs no data directory at run time.
 * A name that is not in the catalog is tried as a file path; a file may be a
 * catalog-format JSON or a HuggingFace config.json (detected by "model_type").
 * Every error is one line "FILE: FIELD: reason".
 */
#ifndef MOEPLAN_CATALOG_H
#define MOEPLAN_CATALOG_H

#include "cluster.h"
#include "error.h"
#include "model.h"

typedef struct {
    const char *name;      /* file stem, e.g. "mixtral-8x22b" */
    const char *json;      /* file contents, NUL-terminated */
} CatalogEntry;

/* Generated at build time (build/gen/catalog_data.c). */
extern const CatalogEntry catalog_model_entries[];
extern const int catalog_model_count;
extern const CatalogEntry catalog_cluster_entries[];
extern const int catalog_cluster_count;

/* Parse a catalog-format model JSON (or a HF config.json) from text; origin
 * names the file in error messages. */
int model_from_json_text(const char *text, const char *origin, ModelSpec *out, MpError *err);
int cluster_from_json_text(const char *text, const char *origin, Cluster *out, MpError *err);

/* Catalog name or file path.  Unknown names list the known ones. */
int model_lookup(const char *name_or_path, ModelSpec *out, MpError *err);
int cluster_lookup(const char *name_or_path, Cluster *out, MpError *err);

/* Reads a whole file into a malloc'ed NUL-terminated buffer. */
int read_text_file(const char *path, char **out, MpError *err);

#endif
