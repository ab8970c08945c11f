"""Platforms (`os/arch[/variant]`) and the matching rules regclient uses."""

from __future__ import annotations

import platform as _pyplatform
from dataclasses import dataclass, field

from regbot.errors import RegbotError

_ARCH_ALIASES = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
}
# A missing variant means the architecture's baseline variant.
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().split("/")
        if len(parts) < 2 or len(parts) > 3 or not all(parts):
            raise RegbotError(f"invalid platform {text!r}: expected os/arch[/variant]")
        os_name, _, os_version = parts[0].partition(",")
        return cls(
            os=os_name,
            architecture=parts[1],
            variant=parts[2] if len(parts) == 3 else "",
            os_version=os_version,
        )

    @classmethod
    def from_dict(cls, data: dict | None) -> Platform | None:
        if not data:
            return None
        return cls(
            os=data.get("os", ""),
            architecture=data.get("architecture", ""),
            variant=data.get("variant", ""),
            os_version=data.get("os.version", ""),
            os_features=tuple(data.get("os.features", ()) or ()),
        )

    def to_dict(self) -> dict:
        out: dict = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    def normalized(self) -> Platform:
        arch, variant = self.architecture, self.variant
        if arch in _ARCH_ALIASES:
            arch, alias_variant = _ARCH_ALIASES[arch]
            variant = variant or alias_variant
        variant = variant or _DEFAULT_VARIANT.get(arch, "")
        return Platform(self.os, arch, variant, self.os_version, self.os_features)

    def matches(self, other: Platform) -> bool:
        """True when both name the same platform after normalisation (arm64 == arm64/v8)."""
        a, b = self.normalized(), other.normalized()
        if (a.os, a.architecture, a.variant) != (b.os, b.architecture, b.variant):
            return False
        return not (a.os_version and b.os_version and a.os_version != b.os_version)

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return text + (f"/{self.variant}" if self.variant else "")


def local_platform() -> Platform:
    """The platform this process runs on, as an image index would name it."""
    os_name = _pyplatform.system().lower() or "linux"
    return Platform(os_name, _pyplatform.machine().lower()).normalized()
