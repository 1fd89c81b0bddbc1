"""Client tests: tiny real models on the CPU, TensorFlow's start-up notices hushed."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
