"""The benchmarks: one module per benchmark (prune, snn, engine, structured, rnn, builds), the
:mod:`~sparsegate.sw.bench.registry` that lists them, the one writer of their results (a Markdown table and
a JSON file with the same figures, :mod:`~sparsegate.sw.bench.results`), the ``BENCHMARKS.md`` assembly
(:mod:`~sparsegate.sw.bench.report`) and the :mod:`~sparsegate.sw.bench.runner` that ties them together."""
