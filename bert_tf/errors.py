"""The errors bert-tf raises for bad input: each names the file, line, key or tensor
at fault. The `bert-tf` command prints them as one line (exit status 2); any other
exception is a bug and keeps its traceback.

They subclass `ValueError` (bad values) or `FileExistsError` (an output that is
not ours to replace), so code catching those still works.
"""


class BertTfError(Exception):
    """Base of the errors that mean "the input is wrong", not "bert-tf is wrong"."""


class ConfigError(BertTfError, ValueError):
    """A setting or a model config that cannot work (a size of 0, an unknown choice)."""


class CheckpointError(BertTfError, ValueError):
    """A model dir or checkpoint that cannot be read or does not fit the model."""


class DataError(BertTfError, ValueError):
    """Bad input data: the message names the file and line."""


class OutputError(BertTfError, FileExistsError):
    """An output path that is taken, or that bert-tf may not write."""


class TrainingError(BertTfError, ValueError):
    """Training that cannot go on: its loss or a weight is no longer a number (NaN or
    infinite), from a learning rate far too large or data that lies. Names the step."""
