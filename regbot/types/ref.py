"""Image references: parsing Docker's rules and the `ocidir://` scheme."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from regbot.errors import InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
DOCKER_HUB_HOST = "registry-1.docker.io"
OCIDIR_PREFIX = "ocidir://"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_RE = re.compile(
    r"^(?:\[[0-9a-fA-F:]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]+)?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")


@dataclass(frozen=True)
class Reference:
    """A parsed reference. `scheme` is "reg" (a registry) or "ocidir" (a layout on disk).

    For "reg": `registry` and `repository` are set. For "ocidir": `path` is set.
    """

    scheme: str
    registry: str = ""
    repository: str = ""
    path: str = ""
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> Reference:
        if not isinstance(text, str) or not text:
            raise InvalidReference(f"invalid reference {text!r}: empty")
        if text.startswith(OCIDIR_PREFIX):
            return _parse_ocidir(text)
        return _parse_registry(text)

    # --- copies with one part changed (references are immutable) ---

    def with_tag(self, tag: str) -> Reference:
        """Same repository, this tag, no digest."""
        if tag and not _TAG_RE.match(tag):
            raise InvalidReference(f"invalid tag {tag!r} for {self}")
        return replace(self, tag=tag, digest="")

    def with_digest(self, digest: str) -> Reference:
        """Same repository and tag, pinned to this digest."""
        if digest and not _DIGEST_RE.match(digest):
            raise InvalidReference(f"invalid digest {digest!r} for {self}")
        return replace(self, digest=digest)

    def repo_only(self) -> Reference:
        return replace(self, tag="", digest="")

    # --- naming ---

    @property
    def is_ocidir(self) -> bool:
        return self.scheme == "ocidir"

    @property
    def name(self) -> str:
        """The reference without tag and digest: `registry/repo` or `ocidir://path`."""
        if self.is_ocidir:
            return OCIDIR_PREFIX + self.path
        return f"{self.registry}/{self.repository}"

    @property
    def host_key(self) -> str:
        """What identifies the storage: the registry name, or the layout path."""
        return self.path if self.is_ocidir else self.registry

    def common_name(self) -> str:
        text = self.name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text

    def __str__(self) -> str:
        return self.common_name()


def _split_tag_digest(text: str, original: str) -> tuple[str, str, str]:
    """Split `name[:tag][@digest]` into its parts; the tag's colon follows the last slash."""
    name, digest = text, ""
    if "@" in text:
        name, digest = text.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise InvalidReference(f"invalid reference {original!r}: bad digest {digest!r}")
    tag = ""
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidReference(f"invalid reference {original!r}: bad tag {tag!r}")
    return name, tag, digest


def _parse_ocidir(text: str) -> Reference:
    name, tag, digest = _split_tag_digest(text[len(OCIDIR_PREFIX) :], text)
    if not name:
        raise InvalidReference(f"invalid reference {text!r}: ocidir path is empty")
    if not tag and not digest:
        tag = "latest"
    return Reference(scheme="ocidir", path=name, tag=tag, digest=digest)


def _parse_registry(text: str) -> Reference:
    name, tag, digest = _split_tag_digest(text, text)
    registry, repository = DOCKER_HUB, name
    first, sep, rest = name.partition("/")
    if sep and (
        "." in first or ":" in first or first == "localhost" or first.lower() != first
    ):
        registry, repository = first, rest
    if registry in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
    if not _DOMAIN_RE.match(registry):
        raise InvalidReference(f"invalid reference {text!r}: bad registry {registry!r}")
    if repository.lower() != repository:
        raise InvalidReference(
            f"invalid reference {text!r}: repository name must be lowercase"
        )
    if not _REPO_RE.match(repository):
        raise InvalidReference(f"invalid reference {text!r}: bad repository {repository!r}")
    if registry == DOCKER_HUB and "/" not in repository:
        repository = "library/" + repository
    if not tag and not digest:
        tag = "latest"
    return Reference(
        scheme="reg", registry=registry, repository=repository, tag=tag, digest=digest
    )
