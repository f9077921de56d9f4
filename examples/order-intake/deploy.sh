#!/bin/sh
# Deploy examples/order-intake: the catalogue blocks it calls, each configured
# for orders with `mxu catalog deploy NAME --as ... --env ...`, then the
# service itself. Needs a running node (MXU_URL, default http://127.0.0.1:8080)
# and the CLI's credentials, as `make run` sets them up.
#   examples/order-intake/deploy.sh [path/to/mxu]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mxu=${1:-$here/../../build/mxu}

"$mxu" catalog deploy json-validate --as order-check --env 'SCHEMA={
  "type": "object", "required": ["id", "email", "items"],
  "properties": {
    "id": {"type": "string", "pattern": "^o-[0-9]+$"},
    "email": {"type": "string", "pattern": "^[^@ ]+@[^@ ]+$"},
    "items": {"type": "array", "minItems": 1, "items": {
      "type": "object", "required": ["sku", "qty"],
      "properties": {"sku": {"type": "string", "minLength": 1},
                     "qty": {"type": "integer", "minimum": 1}}}}}}'
"$mxu" catalog deploy json-pick --as order-fields --env 'FIELDS=id=/id,email=/email,items=/items'
"$mxu" catalog deploy queue-publish --as order-events --bind queue=queue:orders
"$mxu" catalog deploy kv-counter --as order-count --bind counters=kv:orders --env NAME=taken
"$mxu" catalog deploy template --as receipt --env ESCAPE=none --env 'TEMPLATE=Order {{order-fields.id}} for {{order-fields.email}}:{{#order-fields.items}} {{qty}} x {{sku}};{{/order-fields.items}} message {{queued.id}} on queue orders, order number {{order-count.value}}.
'
"$mxu" catalog deploy hash --as receipt-sign --env KEY=example-receipt-key-0123456789 \
    --env OUTPUT=header
"$mxu" deploy "$here"
