"""The GitOps repository's files, read and written the way a person would: an overlay's pin and
kustomization, an environment's sluice.yaml, KServe's canary modes, the storage URI a pin
names, rendering and validating an environment, and onboarding a model into one."""

__all__: list[str] = []
