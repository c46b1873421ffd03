"""The DPU daemon's import set (docs/performance.md, "Memory"): what it loads idle, in a
fresh interpreter, stays free of the modules only other paths need."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(code: str) -> set[str]:
    # a module blocked by a None entry in sys.modules is not loaded
    listing = "sorted(k for k, v in sys.modules.items() if v is not None)"
    probe = f"import sys\n{code}\nprint(' '.join({listing}))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def _tops(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_the_agent_does_not_load_the_cli_the_controller_client_or_yaml() -> None:
    loaded = _loaded_after("import dpunet.dpu.agent, dpunet.dpu.config")
    assert "dpunet.dpu.agent" in loaded
    assert not _tops(loaded) & {"httpx", "rich", "pygments", "click", "yaml", "netaddr"}, loaded
    # the local Open_vSwitch API without the OVN schemas' ovsdbapp modules
    assert "ovsdbapp.schema.open_vswitch.impl_idl" in loaded
    assert not {"ovsdbapp.schema.ovn_northbound", "ovsdbapp.schema.ovn_southbound"} & loaded
    # the controller API models and client load only with the DPU lease
    assert not {"dpunet.contract.client", "dpunet.contract.api", "dpunet.cli.output"} & loaded


def test_the_daemon_lease_loads_httpx_without_its_cli_or_http2() -> None:
    loaded = _loaded_after(
        "from dpunet.cli.dpu_agent_cmds import without_unused_http_modules\n"
        "without_unused_http_modules()\n"
        "import ssl\n"
        "from dpunet.contract.client import ClientError, ControllerClient\n"
        "import dpunet.dpu.lease, dpunet.tls\n"
        "tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
        "client = ControllerClient('https://127.0.0.1:9', token='t', timeout=5, tls=tls)\n"
        "try:\n"
        "    client.get_node('n')\n"
        "except ClientError as exc:\n"
        "    assert exc.status == 0, exc\n"
        "else:\n"
        "    raise AssertionError('port 9 answered')"
    )
    assert {"httpx", "httpcore", "dpunet.contract.client"} <= loaded
    assert not _tops(loaded) & {"rich", "pygments", "h2"}, loaded
    assert not {"dpunet.contract.policy", "dpunet.contract.services"} & loaded


def test_the_daemon_parses_json_in_python() -> None:
    loaded = _loaded_after(
        "from dpunet.cli.dpu_agent_cmds import with_python_json_parser\n"
        "with_python_json_parser()\n"
        "import dpunet.dpu.agent, ovs.json\n"
        "assert ovs.json.PARSER == ovs.json.PARSER_PY, ovs.json.PARSER"
    )
    assert "ovs.json" in loaded and "ovs._json" not in loaded
