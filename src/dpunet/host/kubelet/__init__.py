"""The host agent's side of kubelet: the device plugin, the PodResources client and the
kubelet gRPC APIs they speak (`proto`)."""
