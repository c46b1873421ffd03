"""`dpunet dpu ...`: provisioning (`setup`) and the daemon (`run`) of a DPU."""

from dpunet.cli.dpu_agent_cmds import dpu_run
from dpunet.cli.setup_cmds import dpu

dpu.add_command(dpu_run)
