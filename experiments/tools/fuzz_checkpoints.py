"""Seeded fuzzer of every file the library reads: generators in every format, the shipped encoders, heads and
discriminator, direction files and code files, mutated, loaded in a sandboxed worker.

    python -m experiments.tools.fuzz_checkpoints --mutants 2500 --seed 1 [--families generator,storage,directions,codes]

Half the mutants (`--families` and `FAMILY_SHARES` set the mix) are generators: a small random generator
written in one of the formats `ls.load_generator` reads, then damaged by one to three mutations drawn from
the families a hostile or broken file shows:
non-finite or overflowing values, other dtypes, other shapes (a leading 2, dropped or added dims,
empty tensors), stride-0 views of huge shape, missing / extra / renamed keys, non-tensor values,
implausible declared sizes and config values (0, -1, 10**7, 2**62, NaN, strings, odd or zero taps),
nesting thousands of levels deep or records shared under many parents, renamed NVlabs classes and
attributes NVlabs' forward would compute with differently, plausible gains with absurd images, thin
4096-8192 px generators, and byte-level damage (truncation, flipped bytes, zeroed runs, compressed zip
records). The other families are `experiments.tools.fuzzing.mutations.make_storage_mutants` (shipped
encoders, heads, discriminator) and `experiments.tools.fuzzing.families` (directions, codes).

Mutants are loaded by a worker process with an address-space limit (`--limit-mb` above what torch
itself maps) and a per-file time limit; each gets one outcome:

    loaded      a generator with a valid config whose images for two fixed z are finite
    refused     CheckpointError from a check that anticipated the problem
    safety-net  CheckpointError from load_generator's catch-all (an unanticipated failure: should be 0)
    non-finite  loaded, but its config is invalid, its images are not finite or exceed 1e3, or its
                directions / codes are not finite floats                        (must be 0)
    bad-message refused, but the message is not one line of at most 300 characters naming the file
    other       any other exception                                             (must be 0)
    hang        over the time limit                                             (must be 0)
    memory      an allocation past the memory limit, the worker died, or the load's resident size
                rose more than 1.5 GB before it answered                        (must be 0)

The NVlabs pickles are written from this project's generator with the record layout of NVlabs'
network pickles (module class names, attributes, parameters and buffers), their module source
omitted: they exercise our restricted reader, and NVlabs' code could not run them.

This module is the command; its parts live in `experiments.tools.fuzzing` (documents, mutations,
runner) and are re-exported here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from experiments.tools.fuzzing.documents import FORMATS, Doc, _rosinality_able, make_doc, small_generator, write_doc
from experiments.tools.fuzzing.mutations import (HOSTILE_NUMBERS, HOSTILE_VALUES, OBJECT_MUTATIONS, Mutant, m_dtype,
                                                 m_field, m_keys, m_non_tensor, m_shape, m_stride0, m_structure,
                                                 m_value, make_mutants, make_storage_mutants, mutate_bytes)
from experiments.tools.fuzzing.runner import FAILURES, FAMILY_SHARES, OUTCOMES, Report, fuzz, run_mutants, worker
from latentspaces.storage import atomic_write_text


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.tools.fuzz_checkpoints", description=__doc__.split("\n")[0])
    p.add_argument("--mutants", type=int, default=2000, help="how many mutants (formats in turn)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--limit-mb", type=int, default=2048, help="address space a load may add, MiB")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds one load may take")
    p.add_argument("--families", default="generator,storage,directions,codes",
                   help="comma-separated from generator, storage (encoders, heads, discriminator), directions, codes")
    p.add_argument("--out", type=Path, help="write the report (counts, failures) as JSON here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.limit_mb, args.timeout)
        return 0
    if args.mutants < 1:
        p.error(f"--mutants must be at least 1, got {args.mutants}")
    families = tuple(f.strip() for f in args.families.split(",") if f.strip())
    unknown = [f for f in families if f not in FAMILY_SHARES]
    if unknown or not families:
        p.error(f"--families: unknown {unknown}; choose from {', '.join(FAMILY_SHARES)}")
    t0 = time.time()
    report = fuzz(args.mutants, args.seed, args.limit_mb, args.timeout, families=families,
                  progress=lambda k: print(f"  {k}/{args.mutants} mutants, {time.time() - t0:.0f} s", flush=True))
    print(f"{'file kind':<18}" + "".join(f"{k:>12}" for k in OUTCOMES))
    for fmt, row in report.by_format.items():
        print(f"{fmt:<18}" + "".join(f"{row[k]:>12}" for k in OUTCOMES))
    print("largest memory one load took before answering: "
          + ", ".join(f"{f} {mb:.0f} MB" for f, mb in report.peak_mb.items()))
    for f in report.failures[:20]:
        print(f"FAIL {f['mutant']}: {f['outcome']}: {f['detail']}  [{f['mutations']}]")
    if args.out:
        record = {"seed": args.seed, "counts": report.counts, "by_format": report.by_format, "peak_mb": report.peak_mb,
                  "failures": report.failures}
        atomic_write_text(args.out, json.dumps(record, indent=1))
    print(report.summary() + f" ({time.time() - t0:.0f} s)")
    return 1 if any(report.counts[k] for k in FAILURES) else 0


# the parts, re-exported: tests and callers use them as fuzz_checkpoints.<name>
__all__ = ["FAILURES", "FAMILY_SHARES", "FORMATS", "HOSTILE_NUMBERS", "HOSTILE_VALUES", "OBJECT_MUTATIONS", "OUTCOMES", "Doc", "Mutant",
           "Report", "_rosinality_able", "fuzz", "m_dtype", "m_field", "m_keys", "m_non_tensor", "m_shape", "m_stride0",
           "m_structure", "m_value", "main", "make_doc", "make_mutants", "make_storage_mutants", "mutate_bytes",
           "run_mutants", "small_generator", "worker", "write_doc"]


if __name__ == "__main__":
    sys.exit(main())
