"""Experiments built on the library: the benchmark against peers (`bench`) and the
pooling report (`pooling_report`)."""
