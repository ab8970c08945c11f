"""`regbot registry set|login|logout|config`, as regctl's, on the user config file
(regbot/userconfig.py). Secrets are read from standard input or a prompt, kept only in
that 0600 file, and never printed."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from regbot.commands.common import AliasedGroup, command_settings, regctl_command
from regbot.commands.output import format_option


@click.group("registry", cls=AliasedGroup)
def registry_group() -> None:
    """Manage registry settings and logins (kept in ~/.regbot/config.json, or
    $REGBOT_CONFIG_DIR/config.json). Commands given -c FILE use that file's creds instead."""


def _log(level: int, msg: str, **fields: Any) -> None:
    from regbot.logs import get_logger, log_fields

    log_fields(get_logger("regbot.registry"), level, msg, **fields)


def _ping(name: str, config: Any) -> None:
    """GET /v2/ with the settings of `config`: reachable, and the credentials accepted."""
    from regbot.commands.common import user_engine
    from regbot.types.ref import Reference

    engine = user_engine(config)
    ref = Reference(scheme="reg", registry=name)
    try:
        engine.client.ping(ref)
    finally:
        engine.client.close(ref)


# --- set ---------------------------------------------------------------------------------

# flag (click parameter name) -> user config key
_SET_FLAGS = {
    "tls": "tls", "hostname": "hostname", "cacert": "regcert", "client_cert": "clientCert",
    "client_key": "clientKey", "cred_helper": "credHelper", "path_prefix": "pathPrefix",
    "mirror": "mirrors", "priority": "priority", "repo_auth": "repoAuth",
    "blob_chunk": "blobChunk", "blob_max": "blobMax", "req_per_sec": "reqPerSec",
    "req_concurrent": "reqConcurrent",
}


@regctl_command(registry_group, "set")
@click.argument("host", default="docker.io")
@click.option("--tls", type=click.Choice(["enabled", "insecure", "disabled"], case_sensitive=False),
              default=None, help="TLS: enabled, insecure (no certificate check) or disabled (http)")
@click.option("--hostname", default=None, help="Hostname or IP with port to connect to")
@click.option("--req-concurrent", type=click.IntRange(min=0), default=None, help="Concurrent requests")
@click.option("--req-per-sec", type=click.FloatRange(min=0), default=None, help="Requests per second")
@click.option("--blob-chunk", type=int, default=None, help="Blob chunk size")
@click.option("--blob-max", type=int, default=None,
              help="Blob size before switching to chunked push, -1 to disable")
@click.option("--cacert", default=None, help='CA certificate (PEM text, e.g. "$(cat ca.pem)")')
@click.option("--client-cert", default=None, help="Client certificate for mTLS (PEM text)")
@click.option("--client-key", default=None, help="Client key for mTLS (PEM text)")
@click.option("--cred-helper", default=None, help="Credential helper (full program name)")
@click.option("--mirror", multiple=True, help="Mirror (registry name), repeatable")
@click.option("--path-prefix", default=None, help="Prefix to all repositories")
@click.option("--priority", type=click.IntRange(min=0), default=None, help="Priority (sorting mirrors)")
@click.option("--repo-auth/--no-repo-auth", default=None,
              help="Separate auth requests per repository instead of per registry")
@click.option("--api-opts", multiple=True, help="API option key=value (key= unsets), repeatable")
@click.option("--skip-check", is_flag=True, help="Do not check the registry is reachable")
@click.option("--scheme", default=None, hidden=True, help="Deprecated: use --tls disabled for http")
def registry_set(ctx: click.Context, host: str, skip_check: bool, scheme: str | None,
                 api_opts: tuple[str, ...], **flags: Any) -> None:
    """Set or change how a registry is reached."""
    given = {k: flags.pop(k) for k in ("config_file", "dry_run", "verbosity", "logopt")}
    settings = command_settings(ctx, given)
    from regbot.commands.common import dry_run
    from regbot.userconfig import is_default, load_user_config, new_entry, ordered, save_user_config

    config = load_user_config()
    name, fresh = new_entry(host)
    entry = config.hosts.get(name, fresh)
    if scheme is not None:
        _log(logging.WARNING, "Scheme flag is deprecated, for http set tls to disabled", name=name,
                       scheme=scheme)
    for flag, key in _SET_FLAGS.items():
        value = flags.get(flag)
        if flag == "mirror":
            value = list(value) if value else None
        elif flag == "tls" and value is not None:
            value = value.lower()
        elif isinstance(value, float) and value.is_integer():
            value = int(value)  # Go's JSON writes the float 1 as 1
        if value is not None:
            entry[key] = value
    for item in api_opts:
        key, _, value = item.partition("=")
        opts = dict(entry.get("apiOpts") or {})
        if value:
            opts[key] = value
        else:
            opts.pop(key, None)
        entry["apiOpts"] = opts
    if dry_run(settings, "Registry configuration update", name=name):
        return
    if is_default(name, entry):
        config.hosts.pop(name, None)
    else:
        config.hosts[name] = ordered(entry)
    save_user_config(config)
    if not skip_check:
        try:
            _ping(name, config)
        except Exception:
            _log(logging.WARNING, "Failed to ping registry, configuration still updated", name=name)
            raise
    _log(logging.INFO, "Registry configuration updated/set", name=name)


# --- login / logout ------------------------------------------------------------------------


@regctl_command(registry_group, "login")
@click.argument("host", default="docker.io")
@click.option("-u", "--user", default=None, help="Username (<token> for an identity token)")
@click.option("-p", "--pass", "password", default=None,
              help="Password (visible to other users of this machine: prefer --pass-stdin)")
@click.option("--pass-stdin", is_flag=True, help="Read the password from standard input")
@click.option("--skip-check", is_flag=True, help="Store without checking the credentials")
def registry_login(ctx: click.Context, host: str, user: str | None, password: str | None,
                   pass_stdin: bool, skip_check: bool, **given: Any) -> None:
    """Log in to a registry: the credentials are checked, then stored."""
    settings = command_settings(ctx, given)
    from regbot.commands.common import dry_run
    from regbot.logs import add_secrets
    from regbot.userconfig import load_user_config, new_entry, ordered, save_user_config

    config = load_user_config()
    name, fresh = new_entry(host)
    entry = dict(config.hosts.get(name, fresh))
    if user is None:
        if pass_stdin:
            raise click.UsageError("user must be provided to read password from stdin")
        default = entry.get("user", "")
        user = click.prompt("Enter Username", default=default or None, show_default=bool(default))
    if password is None:
        if pass_stdin:
            password = sys.stdin.read().rstrip("\n")
        else:
            password = click.prompt("Enter Password", hide_input=True, default="", show_default=False)
    if not user or not password:
        raise click.UsageError("Username is required" if not user else "Password is required")
    add_secrets([password])
    entry.pop("pass", None)
    entry.pop("token", None)
    entry.pop("user", None)
    if user == "<token>":  # regctl's convention: the password is an identity token
        entry["token"] = password
    else:
        entry.update(user=user, **{"pass": password})
    config.hosts[name] = ordered(entry)
    if not skip_check:
        _ping(name, config)  # before saving: credentials the registry refuses are not kept
    if dry_run(settings, "Store credentials", registry=name):
        return
    save_user_config(config)
    _log(logging.INFO, "Credentials set", registry=name)


@regctl_command(registry_group, "logout")
@click.argument("host", default="docker.io")
def registry_logout(ctx: click.Context, host: str, **given: Any) -> None:
    """Remove the stored credentials of a registry."""
    settings = command_settings(ctx, given)
    from regbot.commands.common import dry_run
    from regbot.userconfig import is_default, load_user_config, registry_name, save_user_config

    config = load_user_config()
    name, _ = registry_name(host)
    entry = config.hosts.get(name)
    if entry is None or not any(entry.get(k) for k in ("user", "pass", "token")):
        _log(logging.WARNING, "No configuration/credentials found", registry=name)
        return
    if dry_run(settings, "Remove credentials", registry=name):
        return
    for key in ("user", "pass", "token"):
        entry.pop(key, None)
    if is_default(name, entry):
        del config.hosts[name]
    save_user_config(config)
    _log(logging.DEBUG, "Credentials unset", registry=name)


# --- config ----------------------------------------------------------------------------------


@regctl_command(registry_group, "config")
@click.argument("host", required=False)
@format_option("{{jsonPretty .}}")
def registry_config(ctx: click.Context, host: str | None, fmt: str, **given: Any) -> None:
    """Show the stored settings (of one registry, or all); passwords, tokens and client
    keys are never shown."""
    command_settings(ctx, given)
    from regbot.commands.output import resolve, show
    from regbot.commands.views import json_struct_view
    from regbot.userconfig import (
        GO_NAMES,
        GO_ZERO,
        load_user_config,
        registry_name,
        without_secrets,
    )

    template = resolve(fmt)
    config = load_user_config()

    def host_view(name: str, entry: dict[str, Any]) -> Any:
        return json_struct_view(without_secrets(entry), GO_NAMES, "*config.Host",
                                extra={"Name": name}, zeros=GO_ZERO)

    if host:
        name, _ = registry_name(host)
        entry = config.hosts.get(name)
        if entry is None:
            _log(logging.WARNING, "No configuration found for registry", registry=name)
            return
        show(template, host_view(name, entry))
        return
    stored = config.document()
    hosts = {name: host_view(name, entry) for name, entry in stored.get("hosts", {}).items()}
    document = {k: v for k, v in stored.items() if k != "hosts"}
    if hosts:
        document["hosts"] = hosts
    show(template, json_struct_view(document, {"Hosts": "hosts", "Version": "version",
                                               "BlobLimit": "blobLimit"}, "*main.Config",
                                    extra={"Filename": str(config.path)}))
