"""Bindings: how a pod interface of one kind is claimed, plugged and unplugged (`base`:
the `Attacher` interface; `vf`: a dpu-host node's VFs; `veth`: a full node's veth pairs)."""
