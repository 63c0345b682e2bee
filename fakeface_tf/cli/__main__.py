"""`python -m fakeface_tf.cli`: the `fakeface` command without its console script."""

import sys

from fakeface_tf.cli import main

sys.exit(main())
