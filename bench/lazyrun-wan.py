#!/usr/bin/env python3
"""Helpers of bench/lazyrun-wan.sh.

  lazyrun-wan.py time OUT.json -- CMD...   run CMD; write seconds to its first stdout
                                           line and to its exit, exit code, first line;
                                           ok if it exits 0 and the first line matches
                                           the regex $EXPECT_FIRST (default: R's banner)
  lazyrun-wan.py report RESULTS.tsv META.json   print the markdown tables
"""
import json
import os
import re
import statistics
import subprocess
import sys
import time


def cmd_time(out, cmd):
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    t1 = time.monotonic()
    rest = proc.stdout.read()
    err = proc.stderr.read()
    rc = proc.wait()
    t2 = time.monotonic()
    first = first.decode(errors="replace").rstrip("\n")
    ok = rc == 0 and re.match(os.environ.get("EXPECT_FIRST", "R version"), first) is not None
    with open(out, "w") as f:
        json.dump({"first": round(t1 - t0, 3), "total": round(t2 - t0, 3), "rc": rc, "ok": ok,
                   "first_line": first,
                   "stdout_tail": rest.decode(errors="replace")[-400:],
                   "stderr_tail": err.decode(errors="replace")[-2000:]}, f)
    if not ok:
        sys.stderr.write(f"FAILED (rc={rc}, first line {first!r}): {' '.join(cmd)}\n"
                         f"{err.decode(errors='replace')[-2000:]}\n")
    return 0


def fmt_s(xs):
    if not xs:
        return "—"
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"


def fmt_mb(xs):
    if not xs:
        return "—"
    return f"{statistics.median(xs) / 1e6:.1f} ({min(xs) / 1e6:.1f}–{max(xs) / 1e6:.1f})"


def fmt_n(xs):
    if not xs:
        return "—"
    return f"{statistics.median(xs):.0f} ({min(xs):.0f}–{max(xs):.0f})"


def fmt_ms(xs):
    if not xs:
        return "—"
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}–{max(xs):.1f})"


def cmd_report(tsv, meta_path):
    meta = json.load(open(meta_path))
    rows = []
    with open(tsv) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    labels = meta["labels"]
    profiles = [p for p in meta["profiles"] if any(r["profile"] == p for r in rows)]

    def series(profile, config, key, ok_only=True):
        out = []
        for r in rows:
            if r["profile"] == profile and r["config"] == config and (r["ok"] == "1" or not ok_only):
                v = r.get(key, "")
                if v not in ("", "-"):
                    out.append(float(v))
        return out

    def failures(profile, config):
        return sum(1 for r in rows if r["profile"] == profile and r["config"] == config and r["ok"] != "1")

    print("Cells: median (min–max) over the runs. *first line* = seconds from starting the command "
          "to the first line of the command's output; *total* = to the exit. *fetched* = compressed "
          "bytes lazyfsd fetched (`lazyctl cache stats`: fetched_bytes), *requests* = its range "
          "requests; *registry 206* = partial-content GETs in the registry's access log; "
          "*wire* = bytes through the emulated link towards the client (tbf counter, IP+Ethernet "
          "framing included); *ms/request* = the mean time of one range request on lazyfsd's side "
          "(sent to verified bytes), to set beside the profile's ping RTT.")
    print()
    for group, title in (("cold", "Cold start (empty lazyfsd cache, page cache dropped)"),
                         ("variant", "Variants (cold, like above)"),
                         ("warm", "Warm start")):
        configs = [c for c in meta["order"] if meta["groups"][c] == group]
        for p in profiles:
            present = [c for c in configs if any(r["profile"] == p and r["config"] == c for r in rows)]
            if not present:
                continue
            print(f"### {title} — {p}")
            print()
            loads = meta.get("load", {}).get(p, {})
            if loads:
                print(f"Load average (1/5/15 min) before: {loads.get('before', '?')}; "
                      f"after: {loads.get('after', '?')}.")
                print()
            baseline = meta.get("baseline", "pull-skopeo")
            base = statistics.median(series(p, baseline, "first")) if series(p, baseline, "first") else None
            local = {}
            for lc in ("local-overlay-cold", "local-overlay-hot"):
                s = series(p, lc, "first")
                local[lc] = statistics.median(s) if s else None
            if group == "warm":
                print("| what | first line s | total s | vs local overlay (first line) | fetched MB | requests | failed runs |")
                print("|---|---|---|---|---|---|---|")
            else:
                print(f"| what | first line s | total s | {meta.get('baseline_label', 'full pull (skopeo)')} / this "
                      "| fetched MB | requests | ms/request | registry 206 | wire MB | failed runs |")
                print("|---|---|---|---|---|---|---|---|---|---|")
            for c in present:
                first = series(p, c, "first")
                ratio = "—"
                if group == "warm":
                    ref = local["local-overlay-hot" if c.endswith("-hot") else "local-overlay-cold"]
                    if first and ref:
                        ratio = f"{statistics.median(first) / ref:.2f}×"
                    print(f"| {labels[c]} | {fmt_s(first)} | {fmt_s(series(p, c, 'total'))} | {ratio} | "
                          f"{fmt_mb(series(p, c, 'fetched_bytes'))} | {fmt_n(series(p, c, 'requests'))} | "
                          f"{failures(p, c)} |")
                else:
                    # A row may name its own baseline (several images in one report).
                    row_base = base
                    if c in meta.get("baselines", {}):
                        s = series(p, meta["baselines"][c], "first")
                        row_base = statistics.median(s) if s else None
                    if first and row_base:
                        ratio = f"{row_base / statistics.median(first):.1f}×"
                    print(f"| {labels[c]} | {fmt_s(first)} | {fmt_s(series(p, c, 'total'))} | {ratio} | "
                          f"{fmt_mb(series(p, c, 'fetched_bytes'))} | {fmt_n(series(p, c, 'requests'))} | "
                          f"{fmt_ms(series(p, c, 'req_ms'))} | {fmt_n(series(p, c, 'reg206'))} | {fmt_mb(series(p, c, 'wire_bytes'))} | "
                          f"{failures(p, c)} |")
            print()
    return 0


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "time" and sys.argv[3] == "--":
        return cmd_time(sys.argv[2], sys.argv[4:])
    if len(sys.argv) == 4 and sys.argv[1] == "report":
        return cmd_report(sys.argv[2], sys.argv[3])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
