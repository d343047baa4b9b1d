"""The extproc trigger: the processor as an Envoy external processor (ext_proc v3)."""
