"""Runs the commands separated by ';;' at the same time; exits non-zero if any fails.

  python3 run_together.py cmd1 args ';;' cmd2 args
"""
import subprocess
import sys

commands, current = [], []
for arg in sys.argv[1:]:
    if arg == ";;":
        commands.append(current)
        current = []
    else:
        current.append(arg)
commands.append(current)
procs = [subprocess.Popen(c) for c in commands if c]
codes = [p.wait() for p in procs]
sys.exit(max(codes, default=0))
