"""The seeded checkpoint fuzzer's parts; the command is `python -m experiments.tools.fuzz_checkpoints`.

    documents.py   Doc, small random generators and their documents in every format, the writers
    mutations.py   the mutation operators and the seeded mutants (generator files, storage-layer files)
    runner.py      the sandboxed worker, each load's outcome, run_mutants, fuzz and its Report
"""
