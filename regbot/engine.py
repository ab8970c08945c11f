"""One engine per process: the config, the limits, the registry client and the executor.

regclient's regbot builds its client once (cmd/regbot/root.go) and hands it to every
script run; so does this. `once`, `server`, each worker process and the beat build one
Engine and pass it down, so connection pools, bearer tokens and what is known of each
host's auth challenge live as long as the process. A changed config file gives a new
engine through `reconfigured` (new hosts and credentials, hence a new client), sharing the
same limits and executor.

    engine = Engine.embedded(load_config("regbot.yml"))
    engine.client.tag_list(Reference.parse("registry:5000/library/alpine"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from regbot.client import RegClient
from regbot.copy.executors import Executor, LocalExecutor
from regbot.limits import Limits
from regbot.logs import add_secrets

if TYPE_CHECKING:
    from regbot.config import Config


class Engine:
    """What running scripts needs, built once per process (see the module docstring)."""

    def __init__(self, config: Config, limits: Limits, executor: Executor | None = None) -> None:
        self.config = config
        self.limits = limits
        self.executor: Executor = executor or LocalExecutor()
        add_secrets(config.secrets())
        defaults = config.defaults
        self.client = RegClient(
            list(config.creds),
            limits=limits,
            user_agent=defaults.user_agent,
            skip_docker_config=defaults.skip_docker_config,
            blob_limit=defaults.blob_limit,
        )

    def __repr__(self) -> str:
        return f"Engine(config={self.config.source!r}, limits={self.limits!r})"

    @classmethod
    def embedded(cls, config: Config) -> Engine:
        """An engine for this process alone: limits in memory, copies on local threads."""
        return cls(config, Limits.in_memory())

    def reconfigured(self, config: Config) -> Engine:
        """The engine for a reloaded config: this one when nothing changed, else a new
        client on the same limits and executor."""
        if config is self.config:
            return self
        return Engine(config, self.limits, self.executor)
