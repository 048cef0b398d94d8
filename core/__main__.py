import os
import sys

# Quiet TensorFlow's start-up chatter before it is imported anywhere.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from core.cli import main  # noqa: E402

sys.exit(main())
