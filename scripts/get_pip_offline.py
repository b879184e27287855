"""Offline stand-in for the get-pip.py script ansible-test downloads.

ansible-test sanity bootstraps pip in each venv it creates from a script it
fetches from the internet, which is not reachable here. This does the same job
with the interpreter's bundled pip (ensurepip), then runs pip with the
arguments ansible-test passes.
"""
import ensurepip
import os
import runpy
import sys

saved = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
ensurepip.bootstrap(upgrade=True)
for key in [k for k in os.environ if k.startswith("PIP_")]:
    del os.environ[key]  # ensurepip hides pip's config files; undo that
os.environ.update(saved)
sys.argv = ["pip", "install"] + [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
