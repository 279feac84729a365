"""The commands pipe offers, each module the steps of one command.

`runner.cli` declares the arguments and hands over to these modules; none of them imports
TensorFlow until its command needs it (`planning`, `evaluation`, `prediction` and the
run itself do).
"""

from runner.commands import (doctor, evaluate, export, init, log, plan, predict, run, runs,  # noqa: F401
                             sweep, validate)
