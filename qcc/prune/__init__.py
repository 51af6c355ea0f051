"""Structured and unstructured pruning: the analysis and rewrites the ``prune-*`` passes share.

* :mod:`qcc.prune.deps`: the channel dependency graph (which channels of which layers must be
  removed together, and which can never be);
* :mod:`qcc.prune.stats`: second moments of the activations that layers read, streamed from
  the calibration data (importance by output error, least-squares recovery);
* :mod:`qcc.prune.apply`: removing a set of channel groups from the graph, with optional
  least-squares recovery of the layers that read them;
* :mod:`qcc.prune.cost`: parameters, multiply-accumulates and bytes of a model;
* :mod:`qcc.prune.weights`: which weights the unstructured passes prune, and their axes.

See ``docs/pruning.md``.
"""
