"""`python -m dpunet.controller [--config FILE] ...`: the same as `dpunet controller run`."""

from dpunet.cli.controller_cmds import run

if __name__ == "__main__":
    run(prog_name="dpunet-controller")
