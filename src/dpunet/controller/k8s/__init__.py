"""The controller's Kubernetes mode: the API client (`kube`), Node and Pod sources,
Services from the API, TokenReview, the Lease (`leader`), Events, and `mode` tying them in."""
