"""Runtimes: what runs the model on the device, and which artifact it needs.

Adding a runtime (LiteRT, Core ML) is one registration here (or in a module
of its own listed in harness.registry.BUILTIN_MODULES) plus its adapter in the
on-device agent; a profile's `runtime` key is the registered name, and a name
nobody registered is refused when the profile is loaded.
"""

from __future__ import annotations

from harness.registry import registry

registry.register("runtime", "onnxruntime", artifact_format="onnx", runner="agent",
                  help="ONNX Runtime, driven by the project's agent (firmware/agent) with "
                       "[run] python; artifact format onnx")
