"""Bad inputs found by probing the commands as a careless user and an attacker would
(issue 33), one table per area, merged into `tests/test_errors.py`'s matrix.

Each table maps a case id to `(build, needles)`: `build(fx, tmp)` returns the argv
(writing its own bad inputs under `tmp` first) and every needle (a string, or a
function of `(fx, tmp)`) must appear in the one error line. The matrix checks the
rest: exit status 2, one `bert-tf CMD: error:` line, no traceback, no file changed."""
from tests.probes import data, models, outputs, text, training

PROBES = {}
for _table in (models.PROBES, data.PROBES, text.PROBES, outputs.PROBES, training.PROBES):
    assert not set(_table) & set(PROBES), set(_table) & set(PROBES)
    PROBES.update(_table)
