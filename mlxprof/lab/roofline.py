"""Memory-bandwidth roofline for batch-1 decode: tok/s <= bandwidth / bytes per token.

Each decoded token reads (at least) every weight it uses once, so a device
with B bytes/s of memory bandwidth decodes at most B / bytes_per_token tokens
per second. `DEVICES` holds datasheet bandwidths (GB/s = 1e9 bytes/s); a device
is matched by its name as `mlxprof.provenance.device_name()` gives it.

Example:
    >>> bw = lookup("Apple M4 Max")
    >>> bw.name, bw.gb_per_s, round(roofline_tok_per_s(1.7e9, bw.gb_per_s))
    ('Apple M4 Max', 546, 321)
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional

__all__ = ["DeviceBandwidth", "DEVICES", "lookup", "roofline_tok_per_s",
           "roofline_fraction", "resolve"]


@dataclass(frozen=True)
class DeviceBandwidth:
    """One known device: display name, datasheet bandwidth, and a note."""

    name: str
    gb_per_s: float
    pattern: str            # regex matched (case-insensitive) against device names
    note: str = ""


def _apple(chip: str, gb_per_s: float, note: str = "") -> DeviceBandwidth:
    # "M4" must not match "M4 Max": a bare chip needs no tier word after it.
    tier = chip.split(" ", 1)[1] if " " in chip else ""
    base = chip.split(" ")[0]
    if tier:
        pattern = rf"\b{base}\s+{tier}\b"
    else:
        pattern = rf"\b{base}\b(?!\s*(pro|max|ultra))"
    return DeviceBandwidth(f"Apple {chip}", gb_per_s, pattern,
                           note or "Apple datasheet")


_BINNED = "datasheet value of the top variant; binned parts have less (use --bandwidth-gbs)"

# Most specific first; lookup() returns the first match.
DEVICES: tuple[DeviceBandwidth, ...] = (
    _apple("M1 Ultra", 800), _apple("M1 Max", 400), _apple("M1 Pro", 200),
    _apple("M1", 68.25),
    _apple("M2 Ultra", 800), _apple("M2 Max", 400), _apple("M2 Pro", 200),
    _apple("M2", 100),
    _apple("M3 Ultra", 819), _apple("M3 Max", 400, _BINNED),
    _apple("M3 Pro", 150), _apple("M3", 100),
    _apple("M4 Max", 546, _BINNED), _apple("M4 Pro", 273), _apple("M4", 120),
    _apple("M5", 153),
    DeviceBandwidth("NVIDIA H200", 4800, r"\bH200\b", "NVIDIA datasheet (HBM3e)"),
    DeviceBandwidth("NVIDIA H100 PCIe", 2000, r"\bH100\b.*\bPCIe\b",
                    "NVIDIA datasheet"),
    DeviceBandwidth("NVIDIA H100 NVL", 3900, r"\bH100\b.*\bNVL\b",
                    "NVIDIA datasheet"),
    DeviceBandwidth("NVIDIA H100 SXM", 3350, r"\bH100\b",
                    "NVIDIA datasheet (SXM5, HBM3)"),
    DeviceBandwidth("NVIDIA A100 80GB", 2039, r"\bA100\b.*\b80\s*GB\b",
                    "NVIDIA datasheet (SXM)"),
    DeviceBandwidth("NVIDIA A100 40GB", 1555, r"\bA100\b", "NVIDIA datasheet"),
)


def lookup(device_name: Optional[str]) -> Optional[DeviceBandwidth]:
    """The known device whose pattern matches `device_name`, or None.

    Example:
        >>> lookup("NVIDIA H100 80GB HBM3").gb_per_s
        3350
        >>> lookup("AMD EPYC") is None
        True
    """
    if not device_name:
        return None
    for dev in DEVICES:
        if re.search(dev.pattern, device_name, flags=re.IGNORECASE):
            return dev
    return None


def resolve(device_name: Optional[str],
            bandwidth_gbs: Optional[float] = None) -> tuple[Optional[float], str]:
    """Bandwidth (GB/s) to use and a note saying where it came from.

    An explicit `bandwidth_gbs` wins; else the known-devices table; else None.

    Example:
        >>> resolve("AMD EPYC")[0] is None
        True
        >>> resolve("AMD EPYC", 100.0)
        (100.0, 'bandwidth 100 GB/s given by --bandwidth-gbs')
    """
    if bandwidth_gbs is not None:
        return float(bandwidth_gbs), (
            f"bandwidth {bandwidth_gbs:g} GB/s given by --bandwidth-gbs")
    dev = lookup(device_name)
    if dev is None:
        return None, (f"device {device_name!r} not in the bandwidth table: "
                      "roofline left blank (pass --bandwidth-gbs)")
    return float(dev.gb_per_s), (
        f"bandwidth {dev.gb_per_s:g} GB/s for {dev.name} ({dev.note}; quoted, "
        "not measured)")


def roofline_tok_per_s(bytes_per_token: float, bandwidth_gbs: float) -> float:
    """Upper bound on decode tok/s when each token reads `bytes_per_token`.

    Example:
        >>> roofline_tok_per_s(4.6e9, 3350)
        728.2608695652174
    """
    if bytes_per_token <= 0 or bandwidth_gbs <= 0:
        raise ValueError("bytes_per_token and bandwidth_gbs must be > 0")
    return bandwidth_gbs * 1e9 / bytes_per_token


def roofline_fraction(tok_per_s: Optional[float], bytes_per_token: Optional[float],
                      bandwidth_gbs: Optional[float]) -> Optional[float]:
    """Measured tok/s as a fraction of the roofline; None if anything is unknown.

    Example:
        >>> round(roofline_fraction(364.0, 4.6e9, 3350), 3)
        0.5
    """
    if not tok_per_s or not bytes_per_token or not bandwidth_gbs:
        return None
    if any(isinstance(v, float) and math.isnan(v)
           for v in (tok_per_s, bytes_per_token, bandwidth_gbs)):
        return None
    return tok_per_s / roofline_tok_per_s(bytes_per_token, bandwidth_gbs)
