"""The DPU daemon's import set (docs/performance.md, "Memory"): what it loads idle, in a
fresh interpreter, stays free of the modules only other paths need."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def _tops(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_the_agent_does_not_load_the_cli_the_controller_client_or_yaml() -> None:
    loaded = _loaded_after("import dpunet.dpu.agent, dpunet.dpu.config")
    assert "dpunet.dpu.agent" in loaded
    assert not _tops(loaded) & {"httpx", "rich", "pygments", "click", "yaml"}, loaded
    # the controller API models and client load only with the DPU lease
    assert not {"dpunet.contract.client", "dpunet.contract.api", "dpunet.cli.output"} & loaded


def test_the_daemon_lease_loads_httpx_without_its_command_line_client() -> None:
    loaded = _loaded_after(
        "from dpunet.cli.dpu_agent_cmds import without_httpx_cli\n"
        "without_httpx_cli()\n"
        "import dpunet.dpu.lease, dpunet.tls\n"
        "import httpx\n"
        "assert httpx.Client and callable(httpx.main)"
    )
    assert {"httpx", "dpunet.contract.client"} <= loaded
    assert not _tops(loaded) & {"rich", "pygments"}, loaded
