"""``processor kube render``: Kubernetes manifests derived from the function.yaml.

Nothing here is a second source of truth: the function and platform configs are
loaded by the processor's own loaders, each trigger's attributes are validated by
its own model, and ports come from the same parsers and defaults the triggers use
when they bind. A config the processor would refuse is refused here with the same
message (exit 2). Modules, one object family each: ``plan`` (config and deployer
keys), ``ports``, ``workload`` (pod, Deployment, Job, CronJob), ``service``,
``scaling`` (HPA, KEDA), ``envoy``, ``render`` (the ConfigMap and the whole list),
``cli`` and ``invoke`` (what a kube-mode CronJob runs).
"""
