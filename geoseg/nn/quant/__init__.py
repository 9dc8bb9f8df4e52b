"""Quantized raster classifiers: GDRQ quantization-aware fine-tuning and BP-NAS bit-width search.

- :mod:`.quantizers`: Scale-Clip / min-max fake quantization with a straight-through estimator;
- :mod:`.qat`: convolutions with simulated quantization, conv→BN pairs, BN folding;
- :mod:`.bitops`: per-layer MACs and (expected) BitOPs;
- :mod:`.gdrq`: quantization-aware fine-tuning of a float model (GDRQ, arXiv 1908.01477);
- :mod:`.bpnas`: per-layer bit-width search under a BitOPs budget (BP-NAS, arXiv 2007.10026);
- :mod:`.packing`: bit packing of low-bit integer codes;
- :mod:`.qmodelfile`: the ``nn-quantized`` model file (packed weights + scales).

See ``docs/QUANTIZATION.md``.
"""
