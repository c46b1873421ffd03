"""Install `dpunet-cni` into a CNI plugin directory for the fastest start-up.

The shim and the wire rules it imports (`dpunet/cni/shim.py`, `wire.py`: standard library
only) are copied as a small package, `dpunet_cni`, next to their compiled bytecode and
started by a two-line launcher under the system interpreter with `-IS` (isolated, no
site): no virtualenv, no site-packages scan, no compilation at run time.

The launcher is installed under each name of `PLUGIN_NAMES`: `dpunet-cni`, and
`ovn-k8s-cni-overlay`, the type of the seed's NetworkAttachmentDefinition, so that the
seed's NAD works unchanged (multus executes the binary its `type` names).
"""

from __future__ import annotations

import py_compile
import shutil
from pathlib import Path

from dpunet.cni import shim, wire

PACKAGE_NAME = "dpunet_cni"
DEFAULT_PYTHON = "/usr/bin/python3"
PLUGIN_NAME = "dpunet-cni"
SEED_PLUGIN_NAME = "ovn-k8s-cni-overlay"  # the seed NAD's type (OVN-Kubernetes' plugin)
PLUGIN_NAMES = (PLUGIN_NAME, SEED_PLUGIN_NAME)


def install_shim(bin_dir: Path, lib_dir: Path, python: str = DEFAULT_PYTHON) -> Path:
    """Put the shim's package in `lib_dir` (with bytecode) and its launcher in `bin_dir`
    under each of `PLUGIN_NAMES`; returns the `dpunet-cni` launcher's path. Idempotent."""
    package = lib_dir / PACKAGE_NAME
    package.mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    for source in (wire.__file__, shim.__file__):
        shutil.copyfile(source, package / Path(source).name)
    for module in package.glob("*.py"):
        module.chmod(0o644)
        py_compile.compile(str(module), doraise=True)
    text = (
        f"#!{python} -IS\n"
        f"import sys; sys.path.insert(0, {str(lib_dir)!r})\n"
        f"from {PACKAGE_NAME}.shim import main; main()\n"
    )
    for name in PLUGIN_NAMES:
        launcher = bin_dir / name
        temp = launcher.with_name(f".{name}.tmp")
        temp.write_text(text)
        temp.chmod(0o755)
        temp.replace(launcher)
    return bin_dir / PLUGIN_NAME
