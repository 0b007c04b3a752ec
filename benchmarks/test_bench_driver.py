#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Tests of the ./dev bench driver's logic (benchmarks/bench.py): the plots' axis parsing,
bench_echo's JSON converted to the common schema, --compare's verdicts and --list."""

import contextlib
import io
import json
import os
import shutil
import stat
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def system(name, samples, ratio=None):
    s = sorted(samples)
    return {"name": name, "throughput": {"min": s[0], "median": s[len(s) // 2], "max": s[-1],
                                         "samples": samples},
            "ratio": ratio, "run_ratios": [], "p50_ns": None, "p99_ns": None,
            "cpu_seconds_per_million": 1.0}


def run_doc(rows, metrics=()):
    return {"kind": "coil-bench-run", "workloads": [
        {"name": "storage", "result": {"schema": 1, "rows": rows, "metrics": list(metrics)}}]}


class axis_test(unittest.TestCase):
    def test_a_number_in_a_row_name_is_its_x_and_the_rest_its_group(self):
        self.assertEqual(bench.axis_of("read 4k random qd32 (1 GiB)"),
                         ("read 4k random qdN (1 GiB)", "queue depth", 32))
        self.assertEqual(bench.axis_of("64 B x 1000 conn"), ("64 B x N conn", "connections", 1000))
        self.assertEqual(bench.axis_of("nop batch 8"), ("nop batch N", "batch", 8))
        self.assertEqual(bench.axis_of("round trip, 128 tasks"), ("round trip, N tasks", "tasks", 128))
        self.assertEqual(bench.axis_of("round trip, 1 task"), ("round trip, N tasks", "tasks", 1))
        self.assertIsNone(bench.axis_of("copy 1 MiB chunks"))

    def test_only_groups_with_two_x_values_are_plotted(self):
        result = {"rows": [
            {"name": "nop batch 1", "reference": "b", "systems": [system("coil", [1, 2, 3])]},
            {"name": "nop batch 8", "reference": "b", "systems": [system("coil", [4, 5, 6]),
                                                                  {"name": "x", "skipped": "no"}]},
            {"name": "read qd32", "reference": "b", "systems": [system("coil", [1, 1, 1])]},
        ]}
        groups = bench.plot_groups(result)
        self.assertEqual(list(groups), ["nop batch N"])
        label, series = groups["nop batch N"]
        self.assertEqual(label, "batch")
        self.assertEqual(series, {"coil": [(1, 2, 1, 3), (8, 5, 4, 6)]})


class echo_conversion_test(unittest.TestCase):
    def test_bench_echo_rows_become_common_rows_with_paired_ratios_and_memory_metrics(self):
        spread = lambda *v: {"median": sorted(v)[len(v) // 2], "min": min(v), "max": max(v),
                             "samples": list(v)}
        server = lambda *rps: {"requests_per_second": spread(*rps), "p50_us": spread(10, 10),
                               "p99_us": spread(30, 30), "server_cpu_us_per_request": spread(2, 2),
                               "client_cpu_us_per_request": spread(1, 1)}
        doc = {"program": "bench_echo", "results": [
            {"size": 64, "connections": 50, "servers": {
                "coil": server(110, 90, 100), "liburing": server(100, 100, 100),
                "asio": {"skipped": "Boost missing"}}}],
            "idle_memory": [{"server": "coil", "connections": 10, "bytes_per_connection": 512.0},
                            {"server": "asio", "skipped": "Boost missing"}]}
        out = bench.to_common_schema(doc)
        self.assertEqual(out["schema"], 1)
        row = out["rows"][0]
        self.assertEqual(row["name"], "64 B x 50 conn")
        self.assertEqual(row["reference"], "liburing")
        coil = row["systems"][0]
        self.assertEqual(coil["run_ratios"], [1.1, 0.9, 1.0])
        self.assertAlmostEqual(coil["ratio"], 1.0)
        self.assertEqual(coil["p50_ns"], 10000)
        self.assertEqual(coil["cpu_seconds_per_million"], 2)
        self.assertEqual(row["systems"][2], {"name": "asio", "skipped": "Boost missing"})
        self.assertEqual(out["metrics"], [{"name": "resident memory per idle connection",
                                           "system": "coil", "value": 512.0,
                                           "unit": "bytes/connection"}])

    def test_common_schema_documents_pass_unchanged(self):
        doc = {"schema": 1, "program": "bench_ring", "rows": []}
        self.assertIs(bench.to_common_schema(doc), doc)


class compare_test(unittest.TestCase):
    def compare(self, a_samples, b_samples):
        a = run_doc([{"name": "append", "reference": "pwrite", "systems": [system("coil", a_samples)]}])
        b = run_doc([{"name": "append", "reference": "pwrite", "systems": [system("coil", b_samples)]}])
        return bench.compare_docs(a, b)

    def test_ranges_that_do_not_overlap_are_a_change(self):
        lines = self.compare([100, 102, 104], [110, 112, 114])
        self.assertIn("storage / append / coil", lines[1])
        self.assertIn("+9.8%", lines[1])
        self.assertTrue(lines[1].endswith("faster"))
        self.assertTrue(self.compare([110, 112, 114], [100, 102, 104])[1].endswith("slower"))

    def test_overlapping_ranges_are_noise(self):
        lines = self.compare([100, 105, 110], [104, 108, 112])
        self.assertTrue(lines[1].endswith("within noise"))
        self.assertIn("-6..+11%", lines[1])  # (104 - 110) / 105, (112 - 100) / 105

    def test_ratios_metrics_and_rows_present_in_one_run_only_are_reported(self):
        a = run_doc([{"name": "append", "reference": "pwrite",
                      "systems": [system("coil", [1, 2, 3], ratio=0.9)]},
                     {"name": "old row", "reference": "pwrite", "systems": [system("coil", [1])]}],
                    [{"name": "allocations", "system": "coil", "value": 0, "unit": "allocations/op"}])
        b = run_doc([{"name": "append", "reference": "pwrite",
                      "systems": [system("coil", [1, 2, 3], ratio=1.1)]}],
                    [{"name": "allocations", "system": "coil", "value": 1, "unit": "allocations/op"}])
        text = "\n".join(bench.compare_docs(a, b))
        self.assertIn("ratio to pwrite", text)
        self.assertIn("0.900", text)
        self.assertIn("1.100", text)
        self.assertIn("storage / allocations / coil", text)
        self.assertIn("only in A: 1 row/system pair(s), e.g. storage / old row / coil", text)


class markdown_test(unittest.TestCase):
    def test_a_run_becomes_one_table_per_workload_with_skipped_systems_named(self):
        doc = run_doc([{"name": "append", "reference": "pwrite",
                        "systems": [system("coil", [90, 100, 110], ratio=0.95),
                                    system("pwrite", [100, 105, 110]),
                                    {"name": "Boost.Asio", "skipped": "not installed"}]}],
                      [{"name": "allocations", "system": "coil", "value": 0, "unit": "allocations/op"}])
        doc["workloads"][0].update({"program": "bench_storage", "seconds": 12})
        lines = bench.markdown_lines(doc)
        self.assertIn("#### storage (`bench_storage`, 12 s)", lines)
        self.assertIn("| append (pwrite) | coil | 100 | 90..110 | - | - | 1.000 | 0.950 |", lines)
        self.assertIn("|  | pwrite | 105 | 100..110 | - | - | 1.000 | 1 |", lines)
        self.assertIn("|  | Boost.Asio | skipped: not installed | | | | | |", lines)
        self.assertIn("* allocations (coil): 0 allocations/op", lines)


class list_test(unittest.TestCase):
    def test_list_names_every_workload_and_programs_the_driver_does_not_know(self):
        with tempfile.TemporaryDirectory() as build:
            os.makedirs(os.path.join(build, "benchmarks"))
            for name in ("bench_ring", "bench_new"):
                path = os.path.join(build, "benchmarks", name)
                with open(path, "w") as f:
                    f.write("#!/bin/sh\n")
                os.chmod(path, stat.S_IRWXU)
            os.makedirs(os.path.join(build, "benchmarks", "bench_new.p"))  # Meson's object dir
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                bench.main(["list", "--build-dir", build])
        lines = out.getvalue().splitlines()
        names = [line.split()[0] for line in lines]
        self.assertEqual(names, [w[0] for w in bench.WORKLOADS] + ["new"])
        self.assertNotIn("not built", lines[0])  # bench_ring is there
        self.assertIn("(not built)", lines[1])   # bench_runtime is not


class input_errors_test(unittest.TestCase):
    """Mistakes on the command line are named, with exit status 2, before any work."""

    def call(self, argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = bench.main(argv)
        return status, err.getvalue()

    def test_only_naming_no_workload_is_refused_by_check(self):
        status, err = self.call(["check", "--only", "nosuch"])
        self.assertEqual(status, 2)
        self.assertIn("no workload called 'nosuch'", err)
        self.assertEqual(self.call(["check", "--quick", "--only", "echo"])[0], 0)
        self.assertEqual(self.call(["check"])[0], 0)

    def test_compare_of_a_missing_or_malformed_file_is_an_error_not_a_traceback(self):
        with tempfile.TemporaryDirectory() as d:
            bad = os.path.join(d, "bad.json")
            with open(bad, "w") as f:
                f.write("{")
            status, err = self.call(["compare", os.path.join(d, "missing.json"), bad])
            self.assertEqual(status, 2)
            self.assertIn("cannot read", err)
            good = os.path.join(d, "good.json")
            with open(good, "w") as f:
                json.dump(run_doc([]), f)
            status, err = self.call(["compare", good, bad])
            self.assertEqual(status, 2)
            self.assertIn("not a JSON result file", err)

    def test_compare_warns_when_the_runs_used_different_clocks(self):
        row = {"name": "append", "reference": "pwrite", "systems": [system("coil", [1, 2, 3])]}
        a, b = run_doc([row]), run_doc([row])
        a["workloads"][0]["result"]["unit"] = "ops/s"
        b["workloads"][0]["result"]["unit"] = "ops per CPU second"
        with tempfile.TemporaryDirectory() as d:
            paths = [os.path.join(d, n) for n in ("a.json", "b.json")]
            for path, doc in zip(paths, (a, b)):
                with open(path, "w") as f:
                    json.dump(doc, f)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                self.assertEqual(bench.main(["compare"] + paths), 0)
        self.assertIn("WARNING: storage: A is in ops/s, B in ops per CPU second", out.getvalue())

    def test_compare_of_runs_with_nothing_in_common_fails(self):
        a = run_doc([{"name": "append", "reference": "pwrite", "systems": [system("coil", [1])]}])
        b = run_doc([{"name": "copy", "reference": "cp", "systems": [system("coil", [1])]}])
        with tempfile.TemporaryDirectory() as d:
            paths = [os.path.join(d, n) for n in ("a.json", "b.json")]
            for path, doc in zip(paths, (a, b)):
                with open(path, "w") as f:
                    json.dump(doc, f)
            status, err = self.call(["compare"] + paths)
            self.assertEqual(status, 1)
            self.assertIn("share no row and system", err)
            self.assertEqual(self.call(["compare", paths[0], paths[0]])[0], 0)


@unittest.skipUnless(os.environ.get("COIL_BENCH_BUILD_DIR"),
                     "COIL_BENCH_BUILD_DIR (a build tree with the benchmarks) not set")
class program_options_test(unittest.TestCase):
    """The programs refuse options they cannot honour, with exit status 2 and the reason,
    before measuring anything."""

    def refused(self, program, args, expected):
        import subprocess
        path = os.path.join(os.environ["COIL_BENCH_BUILD_DIR"], "benchmarks", program)
        if not os.path.exists(path):
            self.skipTest(f"{program} is not built")
        p = subprocess.run([path] + args, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(expected, p.stderr)
        self.assertNotIn("req/s", p.stdout)  # nothing was measured

    def test_server_benchmarks(self):
        self.refused("bench_echo", ["--quick", "--servers", "coil,bogus"], "no server called 'bogus'")
        self.refused("bench_echo", ["--quick", "--clock", "cpu"], "--clock cpu does not apply")
        self.refused("bench_echo", ["--quick", "--side", "baseline"], "--side baseline")
        self.refused("bench_echo", ["--quick", "--idle-connections", "-1"], "0..1000000")
        self.refused("bench_echo", ["--quick", "--server-cpu", "abc"], "not 'abc'")
        self.refused("bench_echo", ["--quick", "--sizes", "99999999999"], "--sizes")
        self.refused("bench_http", ["--quick", "--servers", "coil,ngnix"], "no server called 'ngnix'")

    def test_harness_programs(self):
        self.refused("bench_ring", ["--quick", "--filter", "^nop batch 1$", "--side", "nosuch"],
                     "--side 'nosuch' names no system")
        with tempfile.TemporaryDirectory() as d:
            self.refused("bench_ring", ["--quick", "--json", d], "--json wants a file")
            # A path that cannot be written is refused before the run, and nothing is left.
            self.refused("bench_ring", ["--quick", "--json", os.path.join(d, "no", "x.json")],
                         "--json cannot write")
            self.refused("bench_echo", ["--quick", "--json", os.path.join(d, "no", "x.json")],
                         "--json cannot write")
            self.assertEqual(os.listdir(d), [])
        self.refused("bench_ring", ["--quick", "--duration", "1e-12"], "--duration wants seconds")

    def children_of(self, pid):
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == pid:
                    found.append(int(entry))
        return found

    def wait_for(self, condition, seconds=30):
        import time
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.05)
        return False

    def test_a_benchmark_killed_by_a_signal_takes_its_servers_and_files_with_it(self):
        import signal
        import subprocess
        build = os.environ["COIL_BENCH_BUILD_DIR"]
        echo = os.path.join(build, "benchmarks", "bench_echo")
        storage = os.path.join(build, "benchmarks", "bench_storage")
        if not (os.path.exists(echo) and os.path.exists(storage)):
            self.skipTest("bench_echo or bench_storage is not built")
        # SIGTERM to bench_echo alone (not its process group) while its servers run.
        p = subprocess.Popen([echo, "--runs", "5", "--duration", "1", "--sizes", "64",
                              "--connections", "8", "--idle-connections", "0",
                              "--servers", "coil,liburing,epoll"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.assertTrue(self.wait_for(lambda: len(self.children_of(p.pid)) >= 3))
            servers = self.children_of(p.pid)
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
        self.assertTrue(self.wait_for(lambda: not any(os.path.exists(f"/proc/{s}") and
                                                      p.pid != s for s in servers), 10),
                        f"servers {servers} outlived bench_echo")
        # SIGINT to bench_storage while its 256 MiB copy files exist: they are removed.
        with tempfile.TemporaryDirectory() as d:
            p = subprocess.Popen([storage, "--filter", "copy", "--runs", "5", "--duration", "1",
                                  "--data-dir", d],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                self.assertTrue(self.wait_for(
                    lambda: os.path.exists(os.path.join(d, "coil-bench-copy-target.dat"))))
                p.send_signal(signal.SIGINT)
                p.wait(timeout=30)
            finally:
                if p.poll() is None:
                    p.kill()
            self.assertEqual(p.returncode, -signal.SIGINT)
            self.assertEqual(os.listdir(d), [])

    def test_bench_echo_json_names_its_client(self):
        import subprocess
        echo = os.path.join(os.environ["COIL_BENCH_BUILD_DIR"], "benchmarks", "bench_echo")
        if not os.path.exists(echo):
            self.skipTest("bench_echo is not built")
        with tempfile.TemporaryDirectory() as d:
            for client in ("epoll", "uring"):
                out = os.path.join(d, client + ".json")
                p = subprocess.run([echo, "--quick", "--runs", "1", "--duration", "0.05",
                                    "--sizes", "64", "--connections", "1", "--servers", "coil",
                                    "--idle-connections", "0", "--client", client, "--json", out],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   timeout=120)
                self.assertEqual(p.returncode, 0, p.stdout)
                with open(out) as f:
                    self.assertEqual(json.load(f)["settings"]["client"], client)

    def test_ab_echo_alternates_two_servers_and_prints_the_ratios(self):
        import subprocess
        build = os.environ["COIL_BENCH_BUILD_DIR"]
        server = os.path.join(build, "benchmarks", "echo_peer_coil")
        if not os.path.exists(server) or not os.path.exists(
                os.path.join(build, "examples", "echo_client")):
            self.skipTest("echo_peer_coil or examples/echo_client is not built")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ab_echo.sh")
        env = dict(os.environ, BUILD_DIR=build)
        p = subprocess.run([script, "-n", "2", "-c", "2", "-m", "20", "-s", "64", "--", server,
                            "--publish-limit", "0", "--", server],
                           capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        pairs = [line for line in p.stdout.splitlines()
                 if len(line.split()) == 5 and line.split()[0] in ("1", "2")]
        self.assertEqual(len(pairs), 2, p.stdout)
        self.assertIn("B/A requests/s", p.stdout)
        # A server that does not start fails the script, naming it.
        p = subprocess.run([script, "-n", "1", "-c", "2", "-m", "20", "--", server, "--",
                            "/bin/false"], capture_output=True, text=True, env=env, timeout=60)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("/bin/false did not start", p.stderr)
        # One server only, or an option the script does not know: usage, nothing run.
        for args in (["--", server], ["-x", "--", server, "--", server]):
            p = subprocess.run([script] + args, capture_output=True, text=True, env=env,
                               timeout=60)
            self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
            self.assertNotIn("pair", p.stdout)

    def test_a_missing_cp_skips_its_system_and_the_row_still_runs(self):
        import subprocess
        build = os.environ["COIL_BENCH_BUILD_DIR"]
        storage = os.path.join(build, "benchmarks", "bench_storage")
        if not os.path.exists(storage):
            self.skipTest("bench_storage is not built")
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out.json")
            data = os.path.join(d, "data")
            p = subprocess.run([storage, "--quick", "--filter", "copy", "--runs", "1",
                                "--duration", "0.02", "--data-dir", data, "--json", out],
                               env={"PATH": os.path.join(d, "empty")},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=120)
            self.assertEqual(p.returncode, 0, p.stdout)
            with open(out) as f:
                (row,) = json.load(f)["rows"]
            systems = {s["name"]: s for s in row["systems"]}
            self.assertIn("cp not found", systems["cp (coreutils)"]["skipped"])
            self.assertGreater(len(systems["coil"]["throughput"]["samples"]), 0)


@unittest.skipUnless(os.environ.get("COIL_BENCH_BUILD_DIR"),
                     "COIL_BENCH_BUILD_DIR (a build tree with bench_switch) not set")
class run_test(unittest.TestCase):
    def test_a_run_of_one_workload_writes_the_merged_json_and_its_plot(self):
        build = os.environ["COIL_BENCH_BUILD_DIR"]
        with tempfile.TemporaryDirectory() as results:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status = bench.main(["run", "--build-dir", build, "--results-dir", results,
                                     "--quick", "--only", "switch", "--",
                                     "--runs", "1", "--duration", "0.02"])
            self.assertEqual(status, 0, out.getvalue())
            runs = [f for f in os.listdir(results) if f.endswith(".json")]
            self.assertEqual(len(runs), 1)
            with open(os.path.join(results, runs[0])) as f:
                run = json.load(f)
            self.assertEqual(run["kind"], "coil-bench-run")
            self.assertEqual(run["machine"]["cores"], os.cpu_count())
            (switch,) = run["workloads"]
            self.assertEqual(switch["status"], "ok")
            rows = [r["name"] for r in switch["result"]["rows"]]
            self.assertEqual(rows, ["round trip, 1 task", "round trip, 128 tasks"])
            allocations = [m for m in switch["result"]["metrics"] if m["system"] == "coil"]
            self.assertEqual(len(allocations), 5)
            self.assertTrue(all(m["value"] == 0 for m in allocations))
            self.assertIn("=== summary", out.getvalue())
            if shutil.which("gnuplot"):
                self.assertEqual(switch["plots"], [runs[0][:-5] + "-switch-round-trip-n-tasks.svg"])
                self.assertTrue(os.path.exists(os.path.join(results, switch["plots"][0])))
            else:
                self.assertIn("plots:   skipped", out.getvalue())


if __name__ == "__main__":
    unittest.main()
