"""The SAVE benchmark (paper Table 1, Appendix C): metrics as pure functions and one small file per task.

    metrics.py    (references, predictions) -> MetricResult: WER, CIDEr-D, SPICE/SPIDEr, the accuracies
    judge.py      the AVSSD "is it the same sound source?" judge (App. D prompt) and its string-match fallback
    bootstrap.py  confidence intervals: of a mean, and of a corpus metric recomputed on resampled sets
    tasks/        per benchmark: where the data comes from, how to read it, prompt it and score it

Running it (`videosalmonn eval ...`, cli.py): settings.py (what a run is, which samples), runner.py (samples ->
Pipeline -> scored records, sharded, resumable), rundir.py (the run directory's files), merge.py (shards ->
samples.jsonl + results.json), prepare.py (which media exist), report.py + chart.py (tables like the paper's).
The metrics and tasks run no model; the runner feeds `BenchmarkSample.to_request()` to the Pipeline and the text back.
"""
