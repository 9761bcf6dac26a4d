"""``ws13 connect URL`` on a terminal: type messages and commands.

With prompt_toolkit installed (``pip install 'ws13[cli]'``) the input line has
editing and history, and incoming messages are printed above it through
``patch_stdout``, so they never garble what is being typed. Without it, a plain
mode reads lines from stdin and says so once.

Lines that don't start with ``/`` are sent as text messages; ``//text`` sends
``/text``. Commands: see ``HELP``. Incoming messages are printed after ``<``,
notes after ``=``, with terminal control characters escaped (``\\x1b``...).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from typing import Any

from ..asyncio.client import ClientConnection
from ..exceptions import ConnectionClosed
from .connect import Session, close_status, reconnecting
from .trace import escape

__all__ = ["HELP", "run_interactive"]

HELP = """\
commands:
  /ping [data]           send a Ping (data: text, at most 125 bytes); print the round-trip time
  /close [code] [reason] start the closing handshake (default 1000)
  /binary HEX            send a binary message, e.g. /binary 00 ff 10
  /quit                  close normally and exit (also Ctrl-D)
  /help                  this list
  //text                 send "/text" as a text message"""

PLAIN_NOTE = (
    "ws13: prompt_toolkit is not installed: plain mode, without line editing or "
    "history (pip install 'ws13[cli]')"
)


def note(text: str) -> None:
    print(f"= {text}", flush=True)


def show(message: str | bytes, args: argparse.Namespace) -> None:
    """Print a received message after ``<``, control characters escaped."""
    if isinstance(message, bytes):
        shown = message.hex(" ") if not args.base64 else base64.b64encode(message).decode()
        print(f"< (binary, {len(message)} bytes) {shown}", flush=True)
        return
    if args.json:
        try:
            lines = json.dumps(json.loads(message), indent=2, ensure_ascii=False).split("\n")
        except ValueError:
            pass
        else:
            print("\n".join("< " + escape(line) for line in lines), flush=True)
            return
    print(f"< {escape(message)}", flush=True)


class Commands:
    """Runs what the user typed on one connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        #: The user asked to end (/quit, /close, Ctrl-D): don't reconnect.
        self.quit = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, line: str) -> None:
        ws = self.ws
        if not line.startswith("/") or line.startswith("//"):
            await ws.send(line[1:] if line.startswith("//") else line)
            return
        command, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        if command == "ping":
            try:
                waiter = ws.ping(rest or None)
            except ValueError as exc:
                note(f"error: {exc}")
                return
            task = asyncio.ensure_future(self._pong(waiter))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif command == "close":
            code_text, _, reason = rest.partition(" ")
            try:
                code = int(code_text) if code_text else 1000
                self.quit = True
                await ws.close(code, reason.strip())
            except ValueError as exc:
                self.quit = False
                note(f"error: {exc}; usage: /close [code] [reason]")
        elif command == "binary":
            try:
                data = bytes.fromhex(rest.replace(":", " "))
            except ValueError:
                note("error: not hex; usage: /binary 00 ff 10")
                return
            await ws.send(data)
        elif command in ("quit", "exit"):
            self.quit = True
            await ws.close()
        elif command == "help":
            print(HELP, flush=True)
        else:
            note(f"unknown command /{command}; /help lists them, //text sends /text")

    async def _pong(self, waiter: asyncio.Future[float]) -> None:
        try:
            rtt = await waiter
        except ConnectionClosed:
            return
        note(f"pong after {rtt * 1000:.2f} ms")


async def _receive(ws: ClientConnection, args: argparse.Namespace, count: list[int]) -> None:
    try:
        async for message in ws:
            show(message, args)
            count[0] += 1
            if args.count is not None and count[0] >= args.count:
                await ws.close()
                return
    except ConnectionClosed:
        pass


def _ended(ws: ClientConnection, commands: Commands, args: argparse.Namespace) -> int | None:
    """Say how the connection ended; the exit status, or None to reconnect."""
    reason = f" {ws.close_reason}" if ws.close_reason else ""
    note(f"connection closed: {ws.close_code}{reason}")
    if args.reconnect and not commands.quit:
        return None
    if commands.quit and ws.protocol.close_rcvd is not None:
        return 0  # the user closed, with any code, and the server answered
    return close_status(ws)


async def _rich(ws: ClientConnection, args: argparse.Namespace, prompt: Any) -> int | None:
    from prompt_toolkit.patch_stdout import patch_stdout

    commands = Commands(ws)
    count = [0]
    note(f"connected to {args.url}; /help lists commands, Ctrl-D quits")
    with patch_stdout(raw=True):
        receiver = asyncio.ensure_future(_receive(ws, args, count))

        def stop_prompt(_: Any) -> None:
            if prompt.app.is_running:
                prompt.app.exit(result=None)

        receiver.add_done_callback(stop_prompt)
        try:
            while not receiver.done():
                try:
                    line = await prompt.prompt_async("> ")
                except EOFError:
                    commands.quit = True
                    await ws.close()
                    break
                except KeyboardInterrupt:
                    commands.quit = True
                    await ws.close()
                    break
                if line is None or receiver.done():
                    break
                try:
                    await commands.run(line)
                except ConnectionClosed:
                    break
        finally:
            receiver.remove_done_callback(stop_prompt)
            await ws.wait_closed()
            await asyncio.gather(receiver, return_exceptions=True)
        return _ended(ws, commands, args)


async def _plain(ws: ClientConnection, args: argparse.Namespace, session: Session) -> int | None:
    commands = Commands(ws)
    count = [0]
    note(f"connected to {args.url}; /help lists commands, Ctrl-D quits")
    receiver = asyncio.ensure_future(_receive(ws, args, count))
    reading = asyncio.ensure_future(session.lines.get())
    try:
        while True:
            await asyncio.wait([receiver, reading], return_when=asyncio.FIRST_COMPLETED)
            if receiver.done():
                break
            line = reading.result()
            if line is None:
                commands.quit = True
                await ws.close()
                break
            try:
                await commands.run(line)
            except ConnectionClosed:
                break
            reading = asyncio.ensure_future(session.lines.get())
    finally:
        if not reading.done():
            reading.cancel()
        await ws.wait_closed()
        await asyncio.gather(receiver, return_exceptions=True)
    return _ended(ws, commands, args)


async def run_interactive(args: argparse.Namespace) -> int:
    """Interactive mode; falls back to the plain mode without prompt_toolkit."""
    try:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import InMemoryHistory
    except ImportError:
        print(PLAIN_NOTE, file=sys.stderr, flush=True)
        session = Session(args)
        session.start_reading()
        return await reconnecting(args, lambda ws: _plain(ws, args, session))
    prompt: Any = PromptSession(history=InMemoryHistory())
    return await reconnecting(args, lambda ws: _rich(ws, args, prompt))
