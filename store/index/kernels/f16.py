"""float16 bit patterns in Numba: order keys and values.

Numba has no float16 on the CPU, so the kernels take a chunk of float16 activations as its raw
``uint16`` bit pattern (``chunk.view(np.uint16)``) and work on two derived quantities:

* an **order-preserving key** (``f16_key``): the bits with the sign bit flipped for positives and
  every bit flipped for negatives. Comparing keys as integers compares the float16 values (with
  -0 < +0 and NaNs outside the finite range). Top-k / bottom-k therefore run on small integers and
  are exact; the value is recovered bit for bit from the key (``key_to_f16_bits``).
* the **value** as float64 (``f16_to_f64``: the CPU's F16C conversion where it has one, else the
  65536-entry table ``F16_TO_F32``), for moments and sums.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic


# float16 bit pattern -> float32 value, for all 65536 patterns.  # [65536] float32
F16_TO_F32 = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


def f16_keys_np(bits: np.ndarray) -> np.ndarray:
    """Numpy version of ``f16_key`` over an array of uint16 bit patterns -> int32 keys."""
    b = bits.astype(np.int32)
    return b ^ (((b >> 15) * 0x7FFF) | 0x8000)


def key_to_f16_bits(keys: np.ndarray) -> np.ndarray:
    """Inverse of the key transform: int keys -> uint16 float16 bit patterns (view as float16)."""
    k = np.asarray(keys).astype(np.int32)
    bits = np.where(k >= 0x8000, k ^ 0x8000, k ^ 0xFFFF)
    return bits.astype(np.uint16)


def keys_to_f32(keys: np.ndarray) -> np.ndarray:
    """int keys -> float32 values (exact: every float16 is a float32)."""
    return F16_TO_F32[key_to_f16_bits(keys)]


@njit(inline="always", cache=True)
def f16_key(bits):
    """uint16 float16 bits -> int32 key whose integer order is the float order."""
    b = np.int32(bits)
    return b ^ (((b >> 15) * 0x7FFF) | 0x8000)


def _native_f16() -> bool:
    """Whether LLVM converts float16 in hardware here (x86 F16C, every arm64), so a half -> double
    ``fpext`` compiles to vcvtph2ps & co. and vectorises; elsewhere it would need a runtime library
    call that Numba's JIT may not link."""
    import platform

    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    try:
        from llvmlite import binding

        return bool(binding.get_host_cpu_features().get("f16c"))
    except Exception:  # noqa: BLE001 - unknown CPU: take the portable path
        return False


NATIVE_F16 = _native_f16()


@intrinsic
def _f16_fpext(typingctx, bits):
    """uint16 float16 bit pattern -> float64, exact (LLVM ``fpext half to double``)."""
    from llvmlite import ir

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.DoubleType())

    return types.float64(types.uint16), codegen


@njit(inline="always", cache=True)
def _f16_lookup(bits):
    """The portable float16 -> float64: the F16_TO_F32 table (exact, but a gather that does not vectorise)."""
    return np.float64(F16_TO_F32[bits])


# float16 bits -> float64 value, exact for all 65536 patterns (tested): the hardware conversion (F16C)
# where the CPU has it, the fastest way measured; else the table.
f16_to_f64 = _f16_fpext if NATIVE_F16 else _f16_lookup
