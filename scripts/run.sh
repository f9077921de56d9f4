#!/bin/sh
# `make run`: a node in the foreground with the examples and the catalogue
# (the --deploy arguments the Makefile passes), and, once it answers, the
# example service examples/order-intake, deployed from catalogue blocks.
#   scripts/run.sh BUILD_DIR [mxu serve arguments...]
# Ctrl-C (or SIGTERM) stops the node gracefully, as it would in the foreground.
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

"./$build/mxu" serve "$@" &
node=$!
trap 'kill -TERM $node 2>/dev/null' INT TERM

# The node deploys its --deploy folders after it listens: wait until it
# answers and has made the CLI's credentials, then add the service.
i=0
until MXU_URL=$url "./$build/mxu" health >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 600 ] || ! kill -0 $node 2>/dev/null; then
        echo "run: the node did not come up at $url; not deploying examples/order-intake" >&2
        wait $node
        exit $?
    fi
    sleep 0.1
done
if MXU_URL=$url sh examples/order-intake/deploy.sh "./$build/mxu" >/tmp/mxu-run-example.log 2>&1; then
    echo "deployed the example service order-intake (examples/order-intake, catalogue blocks only)"
    echo "  try: curl -i -d @examples/order-intake/order.json $url/fn/order-intake"
else
    echo "run: could not deploy examples/order-intake (see /tmp/mxu-run-example.log)" >&2
fi
wait $node
rc=$?
# A signal interrupted the first wait: wait for the node's graceful end.
kill -0 $node 2>/dev/null && wait $node && rc=$?
exit $rc
