"""Runtimes: what runs the model on the device, and which artifact it needs.

Adding a runtime is one registration here (or in a module of its own listed in
harness.registry.BUILTIN_MODULES) plus its adapter in the on-device agent
(firmware/agent/gem_agent.py ADAPTERS, keyed by artifact format); a profile's
`runtime` key is the registered name, and a name nobody registered is refused
when the profile is loaded. A runtime with settings owns a table of the same
name ([litert]); its ``agent_args()`` turns them into the agent's flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import ConfigError
from harness.registry import TableContext, registry, setting

registry.register("runtime", "onnxruntime", artifact_format="onnx", runner="agent",
                  help="ONNX Runtime, driven by the project's agent (firmware/agent) with "
                       "[run] python; artifact format onnx")


@dataclass(frozen=True, kw_only=True)
class LiteRTSettings:
    """How the agent drives LiteRT (ai-edge-litert) on the device."""

    api: str = setting("interpreter", choices=("interpreter", "compiled_model"),
                       help="the classic Interpreter (XNNPACK on the CPU, or an external "
                            "delegate) or the CompiledModel API (hardware accelerator below)")
    accelerator: str = setting("cpu", choices=("cpu", "gpu", "npu"),
                               help="CompiledModel hardware accelerator (api = "
                                    "\"compiled_model\" only)")
    delegate_path: str | None = setting(
        None, help="external delegate library on the device (Interpreter API), e.g. "
                   "/usr/lib/libvx_delegate.so on an i.MX 8M Plus; the run stops with a "
                   "recorded error naming the path when it is missing")
    delegate_options: list[str] = setting(
        [], help="options passed to the external delegate as KEY=VALUE strings, e.g. "
                 "[\"cache_file_path=/tmp/vx.cache\"]")

    def check(self, ctx: TableContext) -> LiteRTSettings:
        if self.delegate_path is not None and self.api != "interpreter":
            raise ctx.error("delegate_path", "an external delegate needs api = "
                                             "\"interpreter\"; remove one of them")
        if self.accelerator != "cpu" and self.api != "compiled_model":
            raise ctx.error("accelerator", "accelerator applies to api = \"compiled_model\"; "
                                           "set api = \"compiled_model\" or remove it")
        bad = [o for o in self.delegate_options if "=" not in o or o.startswith("=")]
        if bad:
            raise ctx.error("delegate_options", f"{', '.join(map(repr, bad))}: each option is "
                                                "KEY=VALUE, e.g. \"cache_file_path=/tmp/x\"")
        if self.delegate_path is not None and any(c in self.delegate_path for c in "\n\0"):
            raise ctx.error("delegate_path", "contains a control character")
        return self

    def agent_args(self) -> list[str]:
        args = ["--runtime-api", self.api, "--accelerator", self.accelerator]
        if self.delegate_path:
            args += ["--delegate", self.delegate_path]
        for option in self.delegate_options:
            args += ["--delegate-option", option]
        return args


registry.register("runtime", "litert", artifact_format="tflite", runner="agent",
                  settings=LiteRTSettings,
                  help="LiteRT (ai-edge-litert 2.3: Interpreter or CompiledModel), driven by "
                       "the project's agent; artifact format tflite (one signature per "
                       "sequence bucket)")


@dataclass(frozen=True, kw_only=True)
class CoreMLSettings:
    """How the Core ML model is loaded on an Apple device (MLModelConfiguration)."""

    compute_units: str = setting("all", choices=("all", "cpu_and_ne", "cpu_and_gpu", "cpu_only"),
                                 help="MLComputeUnits the bench app loads the model with: all, "
                                      "CPU + Neural Engine, CPU + GPU, or CPU only")


registry.register("runtime", "coreml", artifact_format="coreml", runner="ios-bench-app",
                  settings=CoreMLSettings,
                  help="Core ML (ML program .mlpackage from coremltools 9, enumerated sequence "
                       "buckets), compiled and run on an Apple device by the ios platform's "
                       "bench app; artifact format coreml (fp16, int8 weights). This host "
                       "builds and validates it (gem-hil build) but cannot run it")


def runtime_agent_args(profile: object) -> list[str]:
    """The agent flags of the profile's runtime settings ([] for a runtime without)."""
    runtime = getattr(profile, "runtime", "")
    settings = getattr(profile, "settings", {}).get(runtime)
    return settings.agent_args() if hasattr(settings, "agent_args") else []


def runtime_for_format(fmt: str, where: str = "--gem-format") -> str:
    """The registered runtime that consumes artifact format ``fmt``."""
    found = [p.name for p in registry.plugins("runtime")
             if p.options.get("artifact_format") == fmt]
    if len(found) != 1:
        known = sorted({str(p.options.get("artifact_format")) for p in
                        registry.plugins("runtime")})
        raise ConfigError(f"{where} {fmt}: {'no' if not found else 'more than one'} registered "
                          f"runtime runs {fmt!r} artifacts ({', '.join(found) or 'none'}); "
                          f"formats with a runtime: {', '.join(known)}")
    return found[0]

