// No-op function for Google's functions-framework (bench/run.sh), target "noop".
exports.noop = (req, res) => {
  res.type('text/plain').send('ok');
};
