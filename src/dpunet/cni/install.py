"""Install `dpunet-cni` into a CNI plugin directory for the fastest start-up.

The shim (`dpunet/cni/shim.py`, standard library only) is copied next to its compiled
bytecode and started by a two-line launcher under the system interpreter with `-IS`
(isolated, no site): no virtualenv, no site-packages scan, no compilation at run time.
"""

from __future__ import annotations

import py_compile
import shutil
from pathlib import Path

from dpunet.cni import shim

SHIM_MODULE_NAME = "dpunet_cni_shim"
DEFAULT_PYTHON = "/usr/bin/python3"


def install_shim(bin_dir: Path, lib_dir: Path, python: str = DEFAULT_PYTHON) -> Path:
    """Put the shim module in `lib_dir` (with bytecode) and the `dpunet-cni` launcher in
    `bin_dir`; returns the launcher's path. Idempotent."""
    lib_dir.mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    module = lib_dir / f"{SHIM_MODULE_NAME}.py"
    shutil.copyfile(shim.__file__, module)
    module.chmod(0o644)
    py_compile.compile(str(module), doraise=True)
    launcher = bin_dir / "dpunet-cni"
    temp = launcher.with_name(".dpunet-cni.tmp")
    temp.write_text(
        f"#!{python} -IS\n"
        f"import sys; sys.path.insert(0, {str(lib_dir)!r})\n"
        f"import {SHIM_MODULE_NAME}; {SHIM_MODULE_NAME}.main()\n"
    )
    temp.chmod(0o755)
    temp.replace(launcher)
    return launcher
