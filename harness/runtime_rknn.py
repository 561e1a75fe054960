"""The rknn runtime: Rockchip's RKNN runtime (librknnrt through rknn-toolkit-lite2's
RKNNLite) running .rknn artifacts on an RK3588's NPU.

The artifact is built on the host by rknn-toolkit2 in its own environment
(gem/export/rknn.py); on the board the agent's RKNNLiteAdapter loads the .rknn
of the bucket a request needs and runs it on the NPU cores the profile's
``core_mask`` names. Both the Python binding and librknnrt must be on the
board: a missing one is a recorded error naming what is missing, before the
benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.registry import TableContext, registry, setting

#: RKNNLite.NPU_CORE_* names, as the profile spells them
CORE_MASKS = ("auto", "0", "1", "2", "0_1", "0_1_2", "all")


@dataclass(frozen=True, kw_only=True)
class RKNNSettings:
    """How the agent drives the RKNN runtime on the board."""

    core_mask: str = setting("0_1_2", choices=CORE_MASKS,
                             help="NPU cores the model runs on (RKNNLite.NPU_CORE_<mask>): "
                                  "\"auto\" lets the driver pick an idle core, \"0_1_2\" "
                                  "splits each op over all three RK3588 cores")
    library_path: str = setting("/usr/lib/librknnrt.so",
                                help="librknnrt on the board (Rockchip's runtime library that "
                                     "RKNNLite loads); the run stops with a recorded error "
                                     "naming the path when it is missing")
    runtime_version: str | None = setting(
        None, example='"2.5.0"',
        help="the librknnrt version the board must report (RKNNLite.get_sdk_version()); "
             "a different one is a recorded error before the benchmark (a .rknn needs a "
             "runtime at least as new as the rknn-toolkit2 that built it). Unset: recorded "
             "only")

    def check(self, ctx: TableContext) -> RKNNSettings:
        for key in ("library_path", "runtime_version"):
            value = getattr(self, key)
            if value is not None and any(c in value for c in "\n\0"):
                raise ctx.error(key, "contains a control character")
        if not self.library_path.startswith("/"):
            raise ctx.error("library_path", f"{self.library_path!r}: give the absolute path "
                                            "on the board, e.g. \"/usr/lib/librknnrt.so\"")
        return self

    def agent_args(self) -> list[str]:
        args = ["--rknn-core-mask", self.core_mask, "--rknn-library", self.library_path]
        if self.runtime_version:
            args += ["--rknn-runtime-version", self.runtime_version]
        return args


registry.register("runtime", "rknn", artifact_format="rknn", runner="agent",
                  settings=RKNNSettings,
                  help="Rockchip RKNN runtime (rknn-toolkit-lite2's RKNNLite over librknnrt) "
                       "on the RK3588 NPU, driven by the project's agent; artifact format rknn "
                       "(one .rknn per sequence bucket, built by rknn-toolkit2 in .venv-rknn)")
