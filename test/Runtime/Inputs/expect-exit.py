"""expect-exit.py CODE CMD [ARGS...]: runs CMD with its output passed through
and succeeds only if it exits with CODE (lit's `not` accepts any failure)."""
import subprocess
import sys

want = int(sys.argv[1])
got = subprocess.call(sys.argv[2:])
if got != want:
    sys.stderr.write("expect-exit: %s exited %d, expected %d\n"
                     % (sys.argv[2], got, want))
    sys.exit(1)
