"""Deployment: the Kubernetes manifests `dpunet k8s render` writes (`manifests`)."""
