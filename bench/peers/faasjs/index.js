// No-op function for Knative's faas-js-runtime (bench/run.sh): answers 200 "ok".
module.exports = {
  handle: () => ({ statusCode: 200, headers: { 'content-type': 'text/plain' }, body: 'ok' }),
};
