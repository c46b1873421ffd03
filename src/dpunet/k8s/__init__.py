"""The kubelet-facing side of dpunet: device plugin, PodResources, deployment manifests."""
