"""`python -m bert_tf`: the `bert-tf` command."""
import sys

from bert_tf.cli import main

sys.exit(main())
