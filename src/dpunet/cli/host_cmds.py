"""`dpunet host ...`: provisioning (`setup`) and the daemon (`run`) of a dpu-host."""

from dpunet.cli.host_agent_cmds import host_run
from dpunet.cli.setup_cmds import host

host.add_command(host_run)
