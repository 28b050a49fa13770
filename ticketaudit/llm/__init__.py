"""Generative language models: items scored by the log-likelihood of each answer (``scoring``), the
benchmarks' own readers and scores (``bbq``, ``crows``), and how causal LMs load (``models``)."""
