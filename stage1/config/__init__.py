"""Configuration: presets, YAML with line numbers, ``--set`` overrides, typed sections, and the checks
of the keys passed through to TRL and PEFT."""
