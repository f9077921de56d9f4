-- wrk-report.lua — wrk script used by bench/run.sh. It does not change the
-- load (wrk's default GET, keep-alive); at the end it prints one line
--   BENCH_WRK requests=.. secs=.. rps=.. mean_us=.. p50_us=.. p90_us=.. p99_us=.. max_us=.. errors=.. non2xx=..
-- that bench/lib.sh turns into a TSV row. Latencies are wrk's histogram,
-- which wrk 4.x corrects for coordinated omission before done() runs.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_WRK requests=%d secs=%.3f rps=%.1f mean_us=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / summary.duration * 1e6,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, e.connect + e.read + e.write + e.timeout, e.status))
end
