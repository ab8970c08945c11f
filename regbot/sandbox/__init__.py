"""The Lua sandbox scripts run in: runtime.py owns the state, one file per Lua module.

`MODULES` lists the module setups, in registration order; each takes the Sandbox and
registers its functions (regclient's sandbox.go `luaMods`).
"""

from __future__ import annotations

from regbot.sandbox import blob, image, log, manifest, reference, repo, tag

MODULES = (
    log.setup,
    reference.setup,
    tag.setup,
    repo.setup,
    manifest.setup,
    image.setup,
    blob.setup,
)

__all__ = ["MODULES"]
