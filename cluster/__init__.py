"""Running sweeps for real: cluster-launcher and KubeRay configs, the shared services (PostgreSQL, an MLflow server)
and a local multi-node rehearsal of the whole path on one machine."""
