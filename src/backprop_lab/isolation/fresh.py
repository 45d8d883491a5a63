"""`python -m backprop_lab.isolation.fresh SOCKET_FD OUTPUT_FD`: a learner's process as a fresh interpreter
(processes.Fresh), where it is not forked from the fork server."""

import sys

from backprop_lab.isolation import child

if __name__ == "__main__":
    child.start(int(sys.argv[1]), int(sys.argv[2]))
