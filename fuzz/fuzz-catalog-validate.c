/*
 * The json-validate block (catalog/json-validate/validate.c), compiled into
 * the catalogue fuzzer with its mxu_handle/mxu_init renamed
 * (fuzz/meson.build), plus a way to drop the schema mxu_init() parsed, as an
 * instance's exit would: the fuzzer starts an instance per input. The block's
 * source is included unchanged.
 */
#include "../catalog/json-validate/validate.c"

#include "fuzz-catalog.h"

void catalog_json_validate_reset(void)
{
    json_decref(schema);
    schema = NULL;
    schema_problem[0] = '\0';
}
