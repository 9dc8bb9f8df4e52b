"""Latency-constrained architecture search of light road classifiers (GAS, arXiv 1909.06793).

Modules: :mod:`.ops` (candidate operations), :mod:`.space` (the cell layout, the super-network
of the search and the derived :class:`~geoseg.nn.search.space.GASNet`), :mod:`.gcn` (the
graph-guided communication between cells), :mod:`.latency` (the measured lookup table and
the expected-latency term), :mod:`.config` (the YAML config), :mod:`.search` (the alternating
search and the derivation) and :mod:`.retrain` (training the found network).
"""
