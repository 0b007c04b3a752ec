#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The `./dev bench` driver: runs the benchmark programs of a release build tree, shows a
progress line, prints every workload's tables, merges the programs' JSON (schema in
benchmarks/README.md) into bench-results/<timestamp>.json, plots each workload with gnuplot,
and compares two such files.

    bench.py run --build-dir build-release [--quick] [--only NAME] [-- extra program args]
    bench.py list [--build-dir build-release]
    bench.py compare A.json B.json

./dev builds first and installs the peers; this script only runs what is built.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time

# The workloads in run order: name, program, what it measures, and the arguments of a default
# and of a --quick run. Programs found in the build tree but not listed here (a new bench_*)
# run after these with `default_args`/`quick_args`, named after the program.
default_args = ["--runs", "5", "--duration", "0.3"]
quick_args = ["--runs", "2", "--duration", "0.15"]
large_echo_args = ["--sizes", "65536", "--connections", "50", "--idle-connections", "0",
                   "--servers", "coil,coil-incremental,coil-bundles,liburing,epoll,asio"]
WORKLOADS = [
    ("ring", "bench_ring", "coil::io::ring vs raw liburing: NOP batches, 4 KiB random reads",
     default_args, quick_args + ["--quick"]),
    ("runtime", "bench_runtime", "executor and coroutines vs raw liburing: NOPs, reads",
     default_args, quick_args + ["--quick"]),
    ("files", "bench_files",
     "4 KiB random reads at qd 1..128, buffered and O_DIRECT: coil (plain, fixed, SQPOLL) vs "
     "pread, raw liburing, Asio, fio",
     default_args, quick_args + ["--quick"]),
    ("switch", "bench_switch",
     "coil::yield vs Asio post, awaited NOP vs raw liburing; heap allocations per op",
     default_args, quick_args + ["--quick"]),
    ("timers", "bench_timers", "10,000 sleeps armed and cancelled; stop cost with ops in flight",
     default_args, quick_args + ["--quick"]),
    # fdatasync takes milliseconds and varies with the disk's other traffic: longer runs.
    ("storage", "bench_storage", "durable log append (fdatasync), 1 MiB file copy",
     ["--runs", "5", "--duration", "1"], quick_args + ["--quick"]),
    ("echo", "bench_echo",
     "TCP echo: coil vs liburing, epoll, Asio servers; memory per idle connection",
     default_args + ["--idle-connections", "5000"],
     quick_args + ["--quick", "--connections", "1,50", "--idle-connections", "1000"]),
    # 64 KiB messages: where the pool's buffer size decides (docs/benchmarks.md, "Large
    # messages"). coil-incremental is skipped, with a note, on kernels before 6.12.
    ("echo-large", "bench_echo",
     "TCP echo of 64 KiB messages at 50 connections: coil's default pool, an incremental pool "
     "and receive bundles vs liburing, epoll, Asio",
     default_args + large_echo_args, quick_args + ["--quick"] + large_echo_args),
    # wrk runs whole seconds: 3 rounds of 3 s per server and file size (about 1 minute).
    ("http", "bench_http",
     "HTTP/1.1 static files: coil's http_server vs nginx (one worker) under wrk, 4 KiB and 1 MiB",
     ["--runs", "3", "--duration", "3"],
     ["--quick", "--runs", "1", "--duration", "1"]),
]

# A number in a row's name that the plots put on the x axis, and the axis's label.
AXES = [
    (re.compile(r"\bqd ?(\d+)\b"), "queue depth"),
    (re.compile(r"\b(\d+) conn"), "connections"),
    (re.compile(r"\bbatch (\d+)\b"), "batch"),
    (re.compile(r"\bgroup (\d+)\b"), "group"),
    (re.compile(r"\b(\d+) (?:tasks?|coroutines?)\b"), "tasks"),
]


def axis_of(row_name):
    """(group name, axis label, x) for a row whose name holds an axis number, else None."""
    for pattern, label in AXES:
        m = pattern.search(row_name)
        if m:
            group = row_name[:m.start(1)] + "N" + row_name[m.end(1):]
            # "1 task" and "128 tasks" are one group.
            group = re.sub(r"\bN (task|coroutine)\b", r"N \1s", group)
            return group, label, int(m.group(1))
    return None


# --- machine -----------------------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def busy_seconds():
    """CPU seconds all CPUs spent not idle since boot (/proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


class other_load:
    """Measures how many CPUs processes other than the benchmarks kept busy meanwhile: all
    busy CPU time minus the CPU time of the programs this driver ran (and reaped)."""

    def __init__(self):
        self.busy = busy_seconds()
        self.children = children_cpu_seconds()
        self.wall = time.monotonic()

    def cpus(self):
        busy = busy_seconds()
        if busy is None or self.busy is None:
            return None
        wall = time.monotonic() - self.wall
        if wall <= 0:
            return None
        ours = children_cpu_seconds() - self.children
        return max(0.0, (busy - self.busy - ours) / wall)


# --- running -------------------------------------------------------------------------------------

def programs_in(build_dir):
    d = os.path.join(build_dir, "benchmarks")
    if not os.path.isdir(d):
        return []
    return sorted(p for p in os.listdir(d)
                  if p.startswith("bench_") and os.path.isfile(os.path.join(d, p))
                  and os.access(os.path.join(d, p), os.X_OK))


def workloads(build_dir):
    """The workloads to run: the known ones, then any other bench_* program built."""
    built = programs_in(build_dir) if build_dir else []
    known = {w[1] for w in WORKLOADS}
    out = [w for w in WORKLOADS]
    for p in built:
        if p not in known:
            out.append((p[len("bench_"):], p, "(a program this driver does not describe)",
                        default_args, quick_args + ["--quick"]))
    return out


def progress(text, tty):
    if tty:
        sys.stderr.write("\r\033[K" + text)
    else:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()


def last_row_started(log_path):
    """The last row heading a program printed (a line that is not indented and not a table)."""
    try:
        with open(log_path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if line and not line.startswith(" ") and "(reference:" in line:
            return line.split("  (reference:")[0]
        if line and not line.startswith(" ") and "|" in line and not line.startswith("-"):
            return line.split("|")[0].strip()
    return ""


def run_workload(name, program, args, build_dir, work_dir, tty):
    """Runs one program; returns (status, seconds, its JSON or None, its output)."""
    path = os.path.join(build_dir, "benchmarks", program)
    # Named after the workload: one program may run as several workloads (echo, echo-large).
    json_path = os.path.join(work_dir, name + ".json")
    log_path = os.path.join(work_dir, name + ".log")
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([path, "--json", json_path] + args, stdout=log,
                                stderr=subprocess.STDOUT)
        next_line = start + (1 if tty else 15)
        while proc.poll() is None:
            time.sleep(0.2)
            now = time.monotonic()
            if now >= next_line:
                row = last_row_started(log_path)
                progress(f"  {name}: {now - start:4.0f} s{'  ' + row if row else ''}", tty)
                next_line = now + (1 if tty else 15)
    if tty:
        progress("", tty)
    seconds = time.monotonic() - start
    with open(log_path, errors="replace") as f:
        output = f.read()
    result = None
    if os.path.exists(json_path):
        with open(json_path) as f:
            result = json.load(f)
        result = to_common_schema(result)
    status = "ok" if proc.returncode == 0 else f"failed (exit status {proc.returncode})"
    return status, seconds, result, output


# --- bench_echo's own JSON, converted -----------------------------------------------------------

def _summary(spread):
    return {k: spread.get(k) for k in ("min", "median", "max", "samples")}


def to_common_schema(doc):
    """The program's JSON in the common schema (bench_echo writes its own format)."""
    if doc.get("schema") == 1 or doc.get("program") != "bench_echo":
        return doc
    rows = []
    for r in doc.get("results", []):
        systems = []
        servers = r.get("servers", {})
        ref = servers.get("liburing", {})
        ref_samples = ref.get("requests_per_second", {}).get("samples", [])
        for server, s in servers.items():
            if "skipped" in s:
                systems.append({"name": server, "skipped": s["skipped"]})
                continue
            rps = s["requests_per_second"]
            ratios = [a / b for a, b in zip(rps.get("samples", []), ref_samples) if b]
            systems.append({
                "name": server,
                "throughput": _summary(rps),
                "ratio": None if server == "liburing" or not ratios else median(ratios),
                "run_ratios": [] if server == "liburing" else ratios,
                "p50_ns": s["p50_us"]["median"] * 1000,
                "p99_ns": s["p99_us"]["median"] * 1000,
                # server CPU microseconds per request = CPU seconds per million requests
                "cpu_seconds_per_million": s["server_cpu_us_per_request"]["median"],
            })
        rows.append({"name": f"{r['size']} B x {r['connections']} conn",
                     "reference": "liburing", "systems": systems})
    metrics = []
    for m in doc.get("idle_memory", []):
        if "skipped" in m:
            continue
        metrics.append({"name": "resident memory per idle connection", "system": m["server"],
                        "value": m["bytes_per_connection"], "unit": "bytes/connection"})
    out = dict(doc)
    out.update({"schema": 1, "unit": "requests/s", "rows": rows, "metrics": metrics})
    out.pop("results", None)
    return out


def median(values):
    v = sorted(values)
    n = len(v)
    if n == 0:
        return None
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


# --- tables ------------------------------------------------------------------------------------

def fmt_count(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def fmt_compact(v):
    if v is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def fmt_ns(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.3g} ms"
    if v >= 1e3:
        return f"{v / 1e3:.3g} us"
    return f"{v:.3g} ns"


def summary_table(result):
    """The workload's rows as one table (the programs print the same, row by row)."""
    lines = []
    unit = result.get("unit", "ops/s")
    for row in result.get("rows", []):
        lines.append(f"  {row['name']}  (reference: {row['reference']})")
        lines.append(f"    {'system':<26} {unit + ' (median)':>20} {'min..max':>17} {'p50':>9} "
                     f"{'p99':>9} {'CPU s/Mop':>10} {'ratio':>7}")
        for s in row["systems"]:
            if "skipped" in s:
                lines.append(f"    {s['name']:<26} skipped: {s['skipped']}")
                continue
            ratio = "1" if s["name"] == row["reference"] else (
                f"{s['ratio']:.3f}" if s.get("ratio") is not None else "-")
            cpu = s.get("cpu_seconds_per_million")
            t = s["throughput"]
            spread = f"{fmt_compact(t['min'])}..{fmt_compact(t['max'])}"
            lines.append(f"    {s['name']:<26} {fmt_count(t['median']):>20} {spread:>17} "
                         f"{fmt_ns(s.get('p50_ns')):>9} {fmt_ns(s.get('p99_ns')):>9} "
                         f"{'-' if cpu is None else f'{cpu:.3f}':>10} {ratio:>7}")
    for m in result.get("metrics", []):
        lines.append(f"  {m['name']} ({m['system']}): {m['value']:.4g} {m['unit']}")
    return "\n".join(lines)


# --- plots -------------------------------------------------------------------------------------

def plot_groups(result):
    """{group: (axis label, {system: [(x, median, min, max)]})} for groups with two x values."""
    groups = {}
    for row in result.get("rows", []):
        a = axis_of(row["name"])
        if not a:
            continue
        group, label, x = a
        _, series = groups.setdefault(group, (label, {}))
        for s in row["systems"]:
            if "skipped" in s:
                continue
            t = s["throughput"]
            series.setdefault(s["name"], []).append((x, t["median"], t["min"], t["max"]))
    return {g: v for g, v in groups.items()
            if len({p[0] for pts in v[1].values() for p in pts}) >= 2}


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def write_plots(result, workload, stem, out_dir, gnuplot):
    """One SVG per group of rows sharing an axis; returns the files written."""
    written = []
    for group, (label, series) in plot_groups(result).items():
        path = os.path.join(out_dir, f"{stem}-{workload}-{slug(group)}.svg")
        script = [
            "set terminal svg size 800,480 dynamic background rgb 'white'",
            f"set output '{path}'",
            f"set title \"{workload}: {group}\" noenhanced",
            f"set xlabel '{label}'",
            f"set ylabel '{result.get('unit', 'ops/s')} (median, bars: min..max)' noenhanced",
            "set logscale x 2", "set key outside right noenhanced", "set grid",
            "set format y '%.1s%c'",
        ]
        medians = [m for pts in series.values() for _, m, _, _ in pts if m > 0]
        # Systems an order of magnitude apart (a yield beside a NOP) need a log scale.
        script.append("set logscale y 10" if medians and max(medians) > 20 * min(medians)
                      else "set yrange [0:*]")
        plots = []
        for i, (system, points) in enumerate(series.items()):
            script.append(f"$d{i} << EOD")
            script += [f"{x} {m} {lo} {hi}" for x, m, lo, hi in sorted(points)]
            script.append("EOD")
            plots.append(f"$d{i} using 1:2:3:4 with yerrorlines title \"{system}\"")
        script.append("plot " + ", ".join(plots))
        proc = subprocess.run([gnuplot], input="\n".join(script) + "\n", text=True,
                              capture_output=True)
        if proc.returncode == 0 and os.path.exists(path):
            written.append(path)
        else:
            print(f"  plot {path} failed: {proc.stderr.strip()}")
    return written


# --- commands ----------------------------------------------------------------------------------

def build_facts(build_dir):
    """What the build tree was configured with: compiler, build type, liburing version."""
    facts = {"compiler": "unknown", "build": "unknown", "liburing": "unknown"}
    try:
        with open(os.path.join(build_dir, "meson-logs", "meson-log.txt"), errors="replace") as f:
            for line in f:
                if line.startswith("C++ compiler for the host machine:"):
                    facts["compiler"] = line.split(":", 1)[1].strip()
                    break
        with open(os.path.join(build_dir, "meson-info", "intro-buildoptions.json")) as f:
            opts = {o["name"]: o["value"] for o in json.load(f)}
        facts["build"] = (f"{opts.get('buildtype')}, -O{opts.get('optimization')}, "
                          f"b_ndebug={opts.get('b_ndebug')}")
        with open(os.path.join(build_dir, "meson-info", "intro-dependencies.json")) as f:
            for dep in json.load(f):
                if dep.get("name") == "liburing":
                    facts["liburing"] = dep.get("version", "unknown")
    except (OSError, ValueError, KeyError):
        pass
    return facts


def machine_banner(build_dir):
    facts = build_facts(build_dir)
    lines = [
        f"  machine   {cpu_model()}, {os.cpu_count()} CPUs online",
        f"  kernel    {platform.system()} {platform.release()} {platform.machine()}",
        f"  liburing  {facts['liburing']} (compile time)",
        f"  compiler  {facts['compiler']}",
        f"  build     {facts['build']} ({build_dir})",
    ]
    return facts, "\n".join(lines)


def cmd_list(args):
    for name, program, what, _, _ in workloads(args.build_dir):
        built = args.build_dir and os.path.exists(os.path.join(args.build_dir, "benchmarks", program))
        print(f"{name:<10} {program:<16} {what}{'' if built or not args.build_dir else '  (not built)'}")
    return 0


def chosen_workloads(build_dir, only):
    """The workloads --only selects (all without it); None, after saying so, if none."""
    chosen = workloads(build_dir)
    if only:
        chosen = [w for w in chosen if w[0] == only or w[1] == only]
        if not chosen:
            print(f"bench: no workload called '{only}' (see --list)", file=sys.stderr)
            return None
    return chosen


def cmd_check(args):
    """Checks --only before ./dev bench installs and builds anything."""
    return 0 if chosen_workloads(args.build_dir, args.only) is not None else 2


def cmd_run(args):
    chosen = chosen_workloads(args.build_dir, args.only)
    if chosen is None:
        return 2
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    os.makedirs(args.results_dir, exist_ok=True)
    work_dir = os.path.join(args.build_dir, "bench-work", stamp)
    os.makedirs(work_dir, exist_ok=True)
    tty = sys.stderr.isatty()
    gnuplot = shutil.which("gnuplot")
    extra = args.program_args
    settings = ("quick (2 rounds x 0.15 s)" if args.quick
                else "default (5 rounds x 0.3 s; storage 5 x 1 s)")
    load_before = load_average()
    meter = other_load()
    print(f"coil benchmarks, {len(chosen)} workload(s), settings {settings}"
          f"{' + ' + ' '.join(extra) if extra else ''}")
    facts, banner = machine_banner(args.build_dir)
    print(banner)
    print(f"  load avg  {load_before} (1, 5, 15 min) before the run")
    run = {"schema": 1, "kind": "coil-bench-run", "started": stamp,
           "command": " ".join(sys.argv[1:]), "settings": settings, "extra_args": extra,
           "machine": dict(facts, cpu=cpu_model(), cores=os.cpu_count(),
                           kernel=f"{platform.system()} {platform.release()} {platform.machine()}",
                           load_average_before=load_before),
           "workloads": []}
    failed = 0
    started = time.monotonic()
    for i, (name, program, what, dflt, quick) in enumerate(chosen, 1):
        header = f"\n=== [{i}/{len(chosen)}] {name} ({program}): {what}"
        path = os.path.join(args.build_dir, "benchmarks", program)
        if not os.path.exists(path):
            print(header)
            print(f"  skipped: {program} is not built in {args.build_dir}")
            run["workloads"].append({"name": name, "program": program,
                                     "status": "skipped: not built"})
            continue
        progress(f"  {name}: starting", tty)
        status, seconds, result, output = run_workload(
            name, program, (quick if args.quick else dflt) + extra, args.build_dir, work_dir, tty)
        print(header + f"  [{seconds:.0f} s, {status}]")
        print(output.rstrip())
        if status != "ok":
            failed += 1
        entry = {"name": name, "program": program, "status": status, "seconds": seconds,
                 "result": result}
        if result and gnuplot:
            entry["plots"] = [os.path.basename(p) for p in
                              write_plots(result, name, stamp, args.results_dir, gnuplot)]
        run["workloads"].append(entry)
    total = time.monotonic() - started
    others = meter.cpus()
    load_after = load_average()
    run["machine"].update({"load_average_after": load_after, "seconds": total,
                           "other_load_cpus": others})
    print(f"\n=== summary ({total:.0f} s)")
    for w in run["workloads"]:
        if w.get("result"):
            print(f"\n{w['name']}:")
            print(summary_table(w["result"]))
        else:
            print(f"\n{w['name']}: {w['status']}")
    out_path = os.path.join(args.results_dir, f"{stamp}.json")
    with open(out_path, "w") as f:
        json.dump(run, f, indent=1)
    print(f"\nresults: {out_path}")
    plots = [p for w in run["workloads"] for p in w.get("plots", [])]
    if gnuplot:
        print(f"plots:   {len(plots)} SVG file(s) in {args.results_dir}/ ({stamp}-*.svg)")
    else:
        print("plots:   skipped (gnuplot is not installed; ./dev bench installs gnuplot-nox)")
    print(f"load average before {load_before}, after {load_after}")
    if others is not None:
        print(f"other processes kept {others:.2f} of {os.cpu_count()} CPUs busy during the run")
        if others > 0.2:
            print("WARNING: other load shared the CPUs; absolute figures are low and noisy, "
                  "compare ratios measured in the same run")
    return 1 if failed else 0


def rows_of(doc):
    """A merged run's measured (workload, row, system) -> (system, reference), and its
    (workload, metric, system) -> metric."""
    out = {}
    metrics = {}
    for w in doc.get("workloads", []):
        r = w.get("result") or {}
        for row in r.get("rows", []):
            for s in row["systems"]:
                if "skipped" not in s:
                    out[(w["name"], row["name"], s["name"])] = (s, row["reference"])
        for m in r.get("metrics", []):
            metrics[(w["name"], m["name"], m["system"])] = m
    return out, metrics


def compare_docs(a, b):
    """Lines comparing two merged runs: per row and system, median A -> B, the change, and
    whether it is beyond the noise band (B's min..max not overlapping A's)."""
    ra, ma = rows_of(a)
    rb, mb = rows_of(b)
    lines = [f"{'workload / row / system':<64} {'A median':>12} {'B median':>12} {'change':>8} "
             f"{'noise band':>15}  verdict"]
    for key in [k for k in ra if k in rb]:
        (sa, _), (sb, _) = ra[key], rb[key]
        ta, tb = sa["throughput"], sb["throughput"]
        if not ta["median"]:
            continue
        change = tb["median"] / ta["median"] - 1
        lo = (tb["min"] - ta["max"]) / ta["median"]
        hi = (tb["max"] - ta["min"]) / ta["median"]
        if tb["min"] > ta["max"]:
            verdict = "faster"
        elif tb["max"] < ta["min"]:
            verdict = "slower"
        else:
            verdict = "within noise"
        name = " / ".join(key)
        lines.append(f"{name[:64]:<64} {fmt_count(ta['median']):>12} {fmt_count(tb['median']):>12} "
                     f"{change * 100:+7.1f}% {f'{lo * 100:+.0f}..{hi * 100:+.0f}%':>15}  {verdict}")
        if sa.get("ratio") is not None and sb.get("ratio") is not None:
            lines.append(f"{'  ratio to ' + ra[key][1]:<64} {sa['ratio']:>12.3f} {sb['ratio']:>12.3f}")
    for key in [k for k in ma if k in mb]:
        lines.append(f"{' / '.join(key)[:64]:<64} {ma[key]['value']:>12.4g} "
                     f"{mb[key]['value']:>12.4g}  {mb[key]['unit']}")
    only_a = [k for k in ra if k not in rb]
    only_b = [k for k in rb if k not in ra]
    if only_a:
        lines.append(f"only in A: {len(only_a)} row/system pair(s), e.g. {' / '.join(only_a[0])}")
    if only_b:
        lines.append(f"only in B: {len(only_b)} row/system pair(s), e.g. {' / '.join(only_b[0])}")
    return lines


def markdown_lines(run):
    """A merged run as Markdown tables (for docs/benchmarks.md)."""
    m = run.get("machine", {})
    lines = [f"Machine: {m.get('cpu')}, {m.get('cores')} CPUs; {m.get('kernel')}; liburing "
             f"{m.get('liburing')}; {m.get('compiler')}; {m.get('build')}. Settings: "
             f"{run.get('settings')}. Load average {m.get('load_average_before')} before, "
             f"{m.get('load_average_after')} after; other processes kept "
             f"{m.get('other_load_cpus') or 0:.2f} CPUs busy on average.", ""]
    for w in run.get("workloads", []):
        r = w.get("result")
        lines.append(f"#### {w['name']} (`{w['program']}`, {w.get('seconds', 0):.0f} s)")
        lines.append("")
        if not r:
            lines += [f"{w['status']}", ""]
            continue
        unit = r.get("unit", "ops/s")
        if r.get("rows"):
            lines.append(f"| row (reference) | system | {unit} (median) | min..max | p50 | p99 "
                         "| CPU s/Mop | ratio |")
            lines.append("|---|---|--:|--:|--:|--:|--:|--:|")
        for row in r.get("rows", []):
            first = f"{row['name']} ({row['reference']})"
            for s in row["systems"]:
                if "skipped" in s:
                    lines.append(f"| {first} | {s['name']} | skipped: {s['skipped']} | | | | | |")
                    first = ""
                    continue
                t = s["throughput"]
                cpu = s.get("cpu_seconds_per_million")
                ratio = "1" if s["name"] == row["reference"] else (
                    f"{s['ratio']:.3f}" if s.get("ratio") is not None else "-")
                lines.append(f"| {first} | {s['name']} | {fmt_count(t['median'])} | "
                             f"{fmt_compact(t['min'])}..{fmt_compact(t['max'])} | "
                             f"{fmt_ns(s.get('p50_ns'))} | {fmt_ns(s.get('p99_ns'))} | "
                             f"{'-' if cpu is None else f'{cpu:.3f}'} | {ratio} |")
                first = ""
        lines.append("")
        for metric in r.get("metrics", []):
            lines.append(f"* {metric['name']} ({metric['system']}): {metric['value']:.4g} "
                         f"{metric['unit']}")
        if r.get("metrics"):
            lines.append("")
    return lines


def cmd_markdown(args):
    with open(args.run) as f:
        print("\n".join(markdown_lines(json.load(f))))
    return 0


def cmd_compare(args):
    docs = []
    for path in (args.a, args.b):
        try:
            with open(path) as f:
                doc = json.load(f)
        except OSError as e:
            print(f"bench: cannot read {path}: {e.strerror}", file=sys.stderr)
            return 2
        except ValueError as e:
            print(f"bench: {path} is not a JSON result file: {e}", file=sys.stderr)
            return 2
        if not isinstance(doc, dict):
            print(f"bench: {path} is not a JSON result file", file=sys.stderr)
            return 2
        if doc.get("kind") != "coil-bench-run":
            # One program's JSON: treat it as a run of one workload.
            doc = {"workloads": [{"name": doc.get("program", "?"), "result": to_common_schema(doc)}]}
        docs.append(doc)
    print(f"A = {args.a}\nB = {args.b}")
    units = [{(w.get("name"), (w.get("result") or {}).get("unit")) for w in d.get("workloads", [])}
             for d in docs]
    unit_of_b = dict(units[1])
    for name, unit in sorted(units[0], key=str):
        other = unit_of_b.get(name)
        if unit and other and unit != other:
            print(f"WARNING: {name}: A is in {unit}, B in {other} (--clock differs): their "
                  f"figures do not compare; the ratios within each run still do")
    print("change = B median / A median - 1; noise band = the change's range given each run's "
          "min..max; 'within noise' when the ranges overlap.")
    for line in compare_docs(*docs):
        print(line)
    (ra, ma), (rb, mb) = rows_of(docs[0]), rows_of(docs[1])
    if not (ra.keys() & rb.keys()) and not (ma.keys() & mb.keys()):
        print("bench: A and B share no row and system (different workloads or --filter): "
              "nothing was compared", file=sys.stderr)
        return 1
    return 0


def main(argv):
    p = argparse.ArgumentParser(prog="./dev bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--build-dir", default="build-release")
    r.add_argument("--results-dir", default="bench-results")
    r.add_argument("--quick", action="store_true")
    r.add_argument("--only")
    r.add_argument("program_args", nargs="*", help="after --: passed to every program")
    l = sub.add_parser("list")
    l.add_argument("--build-dir", default="")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    k = sub.add_parser("check", help="exit 2 if --only names no workload")
    k.add_argument("--build-dir", default="")
    k.add_argument("--only")
    k.add_argument("--quick", action="store_true")
    md = sub.add_parser("markdown", help="a merged run as Markdown tables")
    md.add_argument("run")
    args = p.parse_args(argv)
    return {"run": cmd_run, "list": cmd_list, "compare": cmd_compare, "check": cmd_check,
            "markdown": cmd_markdown}[args.command](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
