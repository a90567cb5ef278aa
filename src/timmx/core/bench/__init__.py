"""Measuring exports: ``timmx benchmark`` (latency, memory and figures of one model in every
format) and ``timmx matrix`` (many models x formats, sharded, as JSON lines).

- :mod:`timmx.core.bench.system`: the machine (CPU model, ISA flags, load, runtime versions).
- :mod:`timmx.core.bench.child`: one worker process per format or pair, its progress and result.
- :mod:`timmx.core.bench.worker`: what runs inside that process (``python -m ...worker``).
- :mod:`timmx.core.bench.measure`: timing a runtime at a thread count, peak RSS.
- :mod:`timmx.core.bench.benchmark`: ``timmx benchmark`` without its table.
- :mod:`timmx.core.bench.matrix`: ``timmx matrix`` (pairs, shards, resume, parallel jobs).
- :mod:`timmx.core.bench.report`: merged JSON lines as a Markdown support table.
"""
