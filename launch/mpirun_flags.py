"""The mpirun flags of launch/mpirun_flags.sh (one small host: more ranks than cores, root allowed),
as a list for Python scripts, so that the shell file stays the one place they are written."""
import subprocess
from pathlib import Path

_SCRIPT = Path(__file__).resolve().parent / "mpirun_flags.sh"


def mpirun_flags():
    out = subprocess.run(["bash", "-c", f"source {_SCRIPT}; printf '%s\\n' \"${{MPIRUN_FLAGS[@]}}\""],
                         check=True, capture_output=True, text=True)
    return out.stdout.split()
