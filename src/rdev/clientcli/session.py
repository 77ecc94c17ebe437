"""The CLI client's plumbing: the connection options every command takes, one client per
invocation, refusals printed as one line (code, message, request id) instead of a traceback,
and following a command's stream to its exit code through Ctrl-C."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from rdev.client import Client, CommandHandle, RdevError
from rdev.clientcli import profiles
from rdev.clientcli.render import OWN_FAILURE, QueueDisplay, Renderer, exit_code_of

Url = Annotated[
    str | None, typer.Option("--url", help="Server URL (else RDEV_URL or the profile's).")
]
Key = Annotated[
    str | None, typer.Option("--key", help="API key (else RDEV_API_KEY or the profile's).")
]
Profile = Annotated[
    str | None, typer.Option("--profile", help="A profile of the config file (else RDEV_PROFILE).")
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
err = Console(stderr=True, soft_wrap=True, highlight=False)
POLL_SECONDS = 1.0


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"rdev: {message}", markup=False)
    raise typer.Exit(code)


def describe(e: RdevError) -> str:
    text = f"{e.code}: {e.message}" if e.message else e.code
    if e.retry_after:
        text += f" (retry after {e.retry_after:g}s)"
    if e.request_id:
        text += f" [request {e.request_id}]"
    return text


@contextmanager
def client(url: str | None, key: str | None, profile: str | None,
           *, own_failure: int = 1) -> Iterator[Client]:  # fmt: skip
    """A client for this invocation; any refusal is one line on stderr and exit
    `own_failure`."""
    try:
        target = profiles.resolve(url, key, profile)
    except profiles.ProfileError as e:
        fail(str(e), 2)
    try:
        with Client(target.url, target.key) as c:
            yield c
    except RdevError as e:
        fail(describe(e), own_failure)


class _Poller:
    """Asks for a queued command's position once a second, for the queue display (the stream
    only says when the status changes). Nothing shows for a command queued for less than
    that, which is most of them: a new command is `queued` until the dispatcher claims it."""

    def __init__(self, c: Client, command_id: str, show: Callable[[int | None], None]) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(c, command_id, show), daemon=True)
        self._thread.start()

    def _run(self, c: Client, command_id: str, show: Callable[[int | None], None]) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                cmd = c.command(command_id)
            except RdevError:
                continue
            if cmd.status != "queued" or self._stop.is_set():
                return
            show(cmd.queue_position)

    def stop(self) -> None:
        self._stop.set()


def follow(c: Client, handle: CommandHandle, renderer: Renderer,
           *, cancel_on_interrupt: bool = False) -> int:  # fmt: skip
    """Show a command's events until it ends; its exit code. Ctrl-C detaches (or cancels)."""
    queue = QueueDisplay(handle.id, err)
    lock = threading.Lock()

    started = False

    def show(position: int | None) -> None:
        with lock:
            if not started:  # a poll answered after the stream said it runs is stale
                queue.queued(position)

    poller = _Poller(c, handle.id, show) if handle.command.status == "queued" else None
    final: dict[str, object] = {}
    try:
        for event in handle:
            if event.event in ("connected", "status") and event.data.get("status") == "queued":
                if renderer.raw_json:
                    renderer.event(event)
                continue
            with lock:
                started = True
                queue.done()
            if event.event == "complete":
                final = event.data
            if renderer.raw_json or event.event not in ("connected", "status", "complete"):
                renderer.event(event)
    except KeyboardInterrupt:
        return _interrupted(c, handle, cancel_on_interrupt)
    finally:
        if poller is not None:
            poller.stop()
        with lock:
            queue.done()
    status = str(final.get("status", ""))
    code = final.get("exit_code")
    return exit_code_of(status, code if isinstance(code, int) else None)


def _interrupted(c: Client, handle: CommandHandle, cancel: bool) -> int:
    if cancel:
        c.cancel(handle.id)
        err.print(f"rdev: cancelled {handle.id}", markup=False)
    else:
        err.print(
            f"rdev: detached from {handle.id}; it keeps running. "
            f"Reattach with: rdev logs {handle.id} -f",
            markup=False,
        )
    return 130


def exit_with(code: int) -> NoReturn:
    sys.stdout.flush()
    raise typer.Exit(code)


__all__ = ["OWN_FAILURE", "Json", "Key", "Profile", "Url", "client", "fail", "follow"]
