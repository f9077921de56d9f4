#!/usr/bin/env python3
"""bench/summary.py — the summary of one bench/run.sh run, as markdown.

    python3 bench/summary.py RESULTS_DIR > summary.md

Reads RESULTS_DIR/{targets.tsv, wrk.tsv, raw/cold-*.txt,
raw/hf-fork-exec-true.json, host.txt, versions.txt, skipped.txt, busy.txt,
perf-*-comm.txt}. For each wrk row and connection count: the median req/s over
the runs [min-max], the median p50 and p99 (wrk's, corrected for coordinated
omission), and ratios against each anchor. A ratio is computed per round
(rows of one round ran minutes apart at most) and the median over rounds is
shown. Ends with the targets of the benchmark issue, met or not.
"""
import json
import os
import statistics
import sys

RES = sys.argv[1] if len(sys.argv) > 1 else "."


def read(name):
    path = os.path.join(RES, name)
    return open(path).read() if os.path.exists(path) else ""


def us(v):
    if v is None:
        return "n/a"
    if v >= 1e6:
        return "%.2f s" % (v / 1e6)
    if v >= 1000:
        return "%.2f ms" % (v / 1000)
    return "%d us" % round(v)


def num(v):
    return "n/a" if v is None else "{:,}".format(round(v)).replace(",", " ")


def ratio(v, digits=2):
    return "n/a" if v is None else ("%.*f×" % (digits, v))


targets = []  # (name, url, what)
for line in read("targets.tsv").splitlines():
    parts = line.split("\t")
    if len(parts) == 3:
        targets.append(tuple(parts))
names = [t[0] for t in targets]
what = {t[0]: t[2] for t in targets}

# runs[(name, conns)][run] = row dict
runs = {}
lines = read("wrk.tsv").splitlines()
if lines:
    hdr = lines[0].split("\t")
    for line in lines[1:]:
        row = dict(zip(hdr, line.split("\t")))
        try:
            key = (row["name"], int(row["conns"]))
            runs.setdefault(key, {})[int(row["run"])] = row
        except (KeyError, ValueError):
            continue
conns_list = sorted({c for (_, c) in runs}, reverse=True)


def field(name, c, f):
    return [float(r[f]) for r in runs.get((name, c), {}).values() if r.get(f) not in (None, "")]


def med(name, c, f):
    v = field(name, c, f)
    return statistics.median(v) if v else None


def round_ratio(a, b, c, f="rps"):
    """Median over rounds of a/b, both from the same round."""
    ra, rb = runs.get((a, c), {}), runs.get((b, c), {})
    vals = [float(ra[r][f]) / float(rb[r][f]) for r in ra if r in rb and float(rb[r][f]) > 0]
    return statistics.median(vals) if vals else None


out = []
p = out.append
p("# mxu benchmark summary")
p("")
for line in read("host.txt").splitlines():
    p("- " + line)
for line in read("versions.txt").splitlines():
    p("- " + line)
p("")
nruns = max((len(v) for v in runs.values()), default=0)
p("wrk -t1 -cC --latency, keep-alive, server on CPU 0, wrk on CPU 1; %d measured run(s) per row "
  "and C after one warm-up, rows interleaved round by round. req/s: median [min–max] over the runs; "
  "p50/p99: median over the runs of wrk's percentiles (corrected for coordinated omission); "
  "ratios: median over rounds of the same-round ratio." % nruns)
p("")

warm = [n for n in ("nginx", "mxu-noop", "faas-js-runtime", "functions-framework", "mxu-noop-conc1") if n in names]
anchors = [a for a in ("nginx", "faas-js-runtime", "functions-framework") if a in names]


def req_cell(n, c):
    v = field(n, c, "rps")
    if not v:
        return "n/a"
    return "%s [%s–%s]" % (num(statistics.median(v)), num(min(v)), num(max(v)))


def errs(n, c):
    e = sum(field(n, c, "errors"))
    s = sum(field(n, c, "non2xx"))
    return "%d / %d" % (e, s)


if warm:
    p("## 1. Warm invoke of a no-op function")
    p("")
    head = "| row | C | req/s | p50 | p99 |" + "".join(" req/s ÷ %s |" % a for a in anchors) + " p50 ÷ nginx p50 | errors / non-2xx |"
    p(head)
    p("|---|---:|---|---:|---:|" + "---:|" * len(anchors) + "---:|---:|")
    for c in conns_list:
        for n in warm:
            if (n, c) not in runs:
                continue
            cells = [n, str(c), req_cell(n, c), us(med(n, c, "p50_us")), us(med(n, c, "p99_us"))]
            for a in anchors:
                cells.append("—" if a == n else ratio(round_ratio(n, a, c)))
            cells.append("—" if n == "nginx" or "nginx" not in names else ratio(round_ratio(n, "nginx", c, "p50_us")))
            cells.append(errs(n, c))
            p("| " + " | ".join(cells) + " |")
    p("")
    for n in warm:
        p("- `%s`: %s" % (n, what[n]))
    p("")

# ---- cold start
cold = {}
for f in ("cold", "cold-static"):
    for line in read("raw/cold-%s.txt" % f).splitlines():
        if line.startswith("COLD "):
            cold[f] = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
hf = None
try:
    r = json.loads(read("raw/hf-fork-exec-true.json"))["results"][0]
    t = sorted(r["times"])

    def hpct(q):
        i = max(0, min(len(t) - 1, int(-(-q * len(t) // 100)) - 1))
        return t[i] * 1e6

    hf = {"runs": len(t), "p50_us": r["median"] * 1e6, "p90_us": hpct(90), "p99_us": hpct(99),
          "min_us": r["min"] * 1e6, "max_us": r["max"] * 1e6, "mean_us": r["mean"] * 1e6}
except (ValueError, KeyError, IndexError):
    pass

def others(name):
    for line in read(name).splitlines():
        for kv in line.split():
            if kv.startswith("others_cpu_pct="):
                return kv.split("=")[1]
    return "n/a"


if cold or hf:
    p("## 2. Cold start (first invoke after scale to zero, end to end over HTTP)")
    p("")
    p("| what | runs | X-Mxu-Cold: 1 | p50 | p90 | p99 | min | max | mean | others' CPU |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    label = {"cold": "mxu `cold` (default build: dynamic PIE)", "cold-static": "mxu `cold-static` (`build: cflags: [-static]`)"}
    for f, v in cold.items():
        p("| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s %% |" % (
            label[f], v["runs"], v["cold"], us(v["p50_us"]), us(v["p90_us"]), us(v["p99_us"]),
            us(v["min_us"]), us(v["max_us"]), us(v["mean_us"]), others("raw/cold-%s.txt" % f)))
    if hf:
        p("| fork+exec of a static `true` (hyperfine -N, for scale) | %d | — | %s | %s | %s | %s | %s | %s | %s %% |" % (
            hf["runs"], us(hf["p50_us"]), us(hf["p90_us"]), us(hf["p99_us"]), us(hf["min_us"]),
            us(hf["max_us"]), us(hf["mean_us"]), others("raw/hf-fork-exec-true.txt")))
    p("")
    p("mxu rows: bench/src/coldstart.c on CPU 1, one keep-alive connection, timed from send() to the "
      "response's last byte, after GET /v1/functions/NAME/instances showed no instance and a 20 ms pause; "
      "raw percentiles (nearest rank).")
    p("")

# ---- exec
ex = [n for n in ("nginx-fcgiwrap", "mxu-exec") if n in names]
if ex:
    p("## 3. Process per request: mxu exec runtime vs nginx + fcgiwrap")
    p("")
    p("| row | C | req/s | p50 | p99 | req/s ÷ fcgiwrap | p50 ÷ fcgiwrap p50 | errors / non-2xx |")
    p("|---|---:|---|---:|---:|---:|---:|---:|")
    for c in conns_list:
        for n in ex:
            if (n, c) not in runs:
                continue
            have = "nginx-fcgiwrap" in names and n != "nginx-fcgiwrap"
            p("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
                n, c, req_cell(n, c), us(med(n, c, "p50_us")), us(med(n, c, "p99_us")),
                ratio(round_ratio(n, "nginx-fcgiwrap", c)) if have else "—",
                ratio(round_ratio(n, "nginx-fcgiwrap", c, "p50_us")) if have else "—", errs(n, c)))
    p("")
    for n in ex:
        p("- `%s`: %s" % (n, what[n]))
    p("- The CGI program prints `Status`/`Content-Type`/`Content-Length` headers then `ok`; mxu's exec "
      "program prints only `ok` (the exec runtime sends stdout as the body). Both are built the same way, static.")
    p("")

# ---- targets
p("## Targets")
p("")
p("| target | measured | met |")
p("|---|---:|:---:|")


def target(desc, val, ok, fmt=ratio):
    if val is None:
        p("| %s | n/a | not measured |" % desc)
    else:
        p("| %s | %s | %s |" % (desc, fmt(val), "yes" if ok(val) else "**no**"))


hi = max(conns_list) if conns_list else 32
lo = min(conns_list) if conns_list else 1
target("warm no-op req/s at %d conns ≥ 0.5× nginx" % hi, round_ratio("mxu-noop", "nginx", hi), lambda v: v >= 0.5)
target("warm no-op req/s at %d conns ≥ 3× faas-js-runtime" % hi, round_ratio("mxu-noop", "faas-js-runtime", hi), lambda v: v >= 3)
target("warm no-op p50 at %d conn ≤ 3× nginx's" % lo, round_ratio("mxu-noop", "nginx", lo, "p50_us"), lambda v: v <= 3)
target("cold start p50 ≤ 2 ms end to end (default build)", cold.get("cold", {}).get("p50_us"), lambda v: v <= 2000, us)
for c in conns_list:
    target("exec req/s ≥ nginx + fcgiwrap at %d conns" % c, round_ratio("mxu-exec", "nginx-fcgiwrap", c), lambda v: v >= 1)
p("")

# ---- profile, notes
def perf_comm(name):
    """[(comm, percent, samples)] from perf-NAME-comm.txt, and the sample duration in ms."""
    rows = []
    for l in read("perf-%s-comm.txt" % name).splitlines():
        f = l.split()
        if len(f) >= 3 and f[0].endswith("%") and not l.startswith("#"):
            try:
                rows.append((" ".join(f[2:]), float(f[0][:-1]), int(f[1])))
            except ValueError:
                pass
    dur = None
    for l in read("perf-%s-header.txt" % name).splitlines():
        if "sample duration" in l:
            try:
                dur = float(l.split(":")[1].split()[0])
            except (IndexError, ValueError):
                pass
    return rows, dur


prof = False
for t in ("mxu-noop", "nginx"):
    rows, _ = perf_comm(t)
    if rows:
        if not prof:
            p("## Where CPU 0's time goes")
            p("")
            prof = True
        p("- wrk -c32 on `%s` (perf cpu-clock, 8 s; symbols in perf-%s-sym.txt, perf-%s-children.txt): %s" % (
            t, t, t, ", ".join("%s %.1f %%" % (c, pc) for c, pc, _ in rows[:5])))
rows, dur = perf_comm("cold")
if rows and dur:
    total = sum(n for _, _, n in rows)
    if not prof:
        p("## Where CPU 0's time goes")
        p("")
        prof = True
    p("- 100 extra cold starts of `cold` (perf cpu-clock 10 kHz; perf-cold-children.txt), CPU time per cold start "
      "(including the client's polling of the instance list and the stop of the previous instance): %s" % (
          ", ".join("%s %.2f ms" % (c, n / total * dur / 100) for c, _, n in rows if c != "swapper" and n / total * dur / 100 >= 0.01)))
if prof:
    p("")
busy = read("busy.txt").strip()
if busy:
    p("**The machine was busy before some runs** (busy.txt):")
    p("")
    for line in busy.splitlines():
        p("    " + line)
    p("")
skipped = read("skipped.txt").strip()
if skipped:
    p("Left out:")
    p("")
    for line in skipped.splitlines():
        p("- " + line)
    p("")
idles = [r.get("idle_before") for v in runs.values() for r in v.values()]
idles = [int(i) for i in idles if i and i.isdigit()]
if idles:
    p("Idle before each wrk run: min %d %%, median %d %%." % (min(idles), statistics.median(idles)))
    p("")
oth = []
for (n, c), v in runs.items():
    for r, row in v.items():
        try:
            oth.append((float(row.get("others_cpu_pct", "")), n, c, r))
        except ValueError:
            pass
if oth:
    oth.sort()
    p("Others' CPU during each wrk run (processes not started by the benchmark, and steal time, in %% of both "
      "CPUs): median %.1f %%, max %.1f %% (%s -c%d run %d)." % (
          statistics.median(o[0] for o in oth), oth[-1][0], oth[-1][1], oth[-1][2], oth[-1][3]))
    bad = [o for o in oth if o[0] > 5]
    if bad:
        p("")
        p("**Runs disturbed by other work (> 5 %% of the CPUs)**: %s." % ", ".join(
            "%s -c%d run %d (%.1f %%)" % (n, c, r, v) for v, n, c, r in bad))
print("\n".join(out))
