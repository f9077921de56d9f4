#!/bin/sh
# `make run`: a node in the foreground with the examples and the catalogue
# (the --deploy arguments the Makefile passes), and, once it answers, the
# example service examples/order-intake, deployed from catalogue blocks.
#   scripts/run.sh BUILD_DIR [mxu serve arguments...]
set -u
build=$1
shift
url=http://127.0.0.1:8080
prev=""
for a in "$@"; do
    case $prev in --listen) url=http://$a ;; esac
    case $a in --listen=*) url=http://${a#--listen=} ;; esac
    prev=$a
done

# The node runs in the foreground (exec: it gets Ctrl-C and SIGTERM itself,
# exactly as `mxu serve` would); a background helper waits until it answers
# (it deploys its --deploy folders first) and then adds the service.
(
    i=0
    until MXU_URL=$url "./$build/mxu" health >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 600 ]; then
            echo "run: no node at $url after 60 s; not deploying examples/order-intake" >&2
            exit 1
        fi
        sleep 0.1
    done
    if MXU_URL=$url sh examples/order-intake/deploy.sh "./$build/mxu" \
        >/tmp/mxu-run-example.log 2>&1; then
        echo "deployed the example service order-intake (examples/order-intake, catalogue blocks only)"
        echo "  try: curl -i -d @examples/order-intake/order.json $url/fn/order-intake"
    else
        echo "run: could not deploy examples/order-intake (see /tmp/mxu-run-example.log)" >&2
    fi
) &
exec "./$build/mxu" serve "$@"
