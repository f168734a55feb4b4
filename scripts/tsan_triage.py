#!/usr/bin/env python3
"""Sorts ThreadSanitizer reports (files written with TSAN_OPTIONS=log_path=...) into two kinds:

  ours:  no frame, thread or location of the report is in those libraries: our own
         threads and locks, which TSan sees completely. Any such report fails (exit 1).
  library: some part of the report is in gRPC core, grpcpp, abseil, protobuf or libtorch. Those
         libraries are not instrumented, so TSan misses the happens-before edges they make when
         they hand a call, message or tensor to another thread and reports them as races
         (docs/hardening.md). Counted and listed by their first frame of ours, never fatal.

usage: tsan_triage.py REPORT_DIR
"""
import collections
import os
import re
import sys

LIBS = re.compile(r"libgrpc|libgpr|libabsl|libprotobuf|libtorch|libc10|/grpcpp/|/google/protobuf/|/torch/|/ATen/|/c10/|grpc_core::|absl::")
OURS = re.compile(r"/(common|edge|server|bench|tools|tests)/[\w./-]+:\d+")


def reports(directory):
    for name in sorted(os.listdir(directory)):
        text = open(os.path.join(directory, name), errors="replace").read()
        for block in text.split("==================")[1:]:
            if "WARNING: ThreadSanitizer" in block:
                yield name, block.strip()


def main():
    directory = sys.argv[1]
    if not os.path.isdir(directory):
        print("tsan triage: no reports")
        return 0
    ours, grpc = [], collections.Counter()
    for name, block in reports(directory):
        kind = re.search(r"WARNING: ThreadSanitizer: ([\w -]+)", block).group(1).strip()
        if LIBS.search(block):
            where = OURS.search(block)
            grpc[f"{kind} at {where.group(0) if where else 'library code'}"] += 1
        else:
            ours.append((name, block))
    for name, block in ours:
        print(f"--- {name}\n{block}\n")
    print(f"tsan triage: {len(ours)} reports in our code, {sum(grpc.values())} across uninstrumented libraries"
          + ("" if not grpc else ":"))
    for where, n in grpc.most_common():
        print(f"  {n:4d}  {where}")
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main())
