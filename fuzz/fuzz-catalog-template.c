/*
 * The template block (catalog/template/template.c), compiled into the
 * catalogue fuzzer with its mxu_handle/mxu_init renamed (fuzz/meson.build),
 * plus a way to forget the parsed TEMPLATE: mxu_init() runs once per instance
 * and appends to the token list, and the fuzzer starts an instance per input.
 * The block's source is included unchanged.
 */
#include "../catalog/template/template.c"

#include "fuzz-catalog.h"

void catalog_template_reset(void)
{
    ntoks = 0;
    problem[0] = '\0';
}
