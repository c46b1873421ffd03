"""The contracts between dpunet's processes: the controller's port API bodies (`api`),
shared by its server and `ControllerClient`, and the Logical_Switch_Port options and
external ids the controller writes and the DPU agent and verify read back (`lsp`).

Nothing here imports from the rest of dpunet: every side depends on the contract, never
the contract on a side.
"""
