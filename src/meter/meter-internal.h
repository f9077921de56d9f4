/* Shared inside src/meter. */
#ifndef MXU_METER_INTERNAL_H
#define MXU_METER_INTERNAL_H

#include "meter/meter.h"

/* An invocation id as the 16 hex digits clients see. */
void mxu_usage_id_hex(uint64_t id, char out[17]);

/* The summed quantities of `tenant`'s billable records with start_ms in
 * [start_ms, end_ms). */
int mxu_meter_bill_usage(mxu_meter *m, const char *tenant, uint64_t start_ms, uint64_t end_ms,
                         mxu_bill_usage *u, mxu_err *err);

#endif
