"""The contracts between dpunet's processes: the controller's port API bodies (`api`,
`services`), shared by its server and the `ControllerClient` (`client`) the agents, the
CLI and the lab call it with, and the Logical_Switch_Port options and
external ids the controller writes and the DPU agent and verify read back (`lsp`).

Nothing here imports from the rest of dpunet: every side depends on the contract, never
the contract on a side.
"""
