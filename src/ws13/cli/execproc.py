"""``ws13 serve --exec CMD``: any program becomes a WebSocket service.

Each connection starts ``CMD`` with ``/bin/sh -c``, in a session of its own.
Every message received goes to its stdin followed by a newline (text as
UTF-8, binary as is); every line it writes on stdout comes back as a message
(text when the line is UTF-8, else binary), without the newline.

Buffers are bounded both ways: the next message isn't read until the previous
one is written to the pipe (the connection's ``max_queue`` then pauses reading
from the peer), the next line isn't read until the previous message is in the
connection's write buffer, and a line longer than ``MAX_LINE`` bytes is sent
in pieces of that size.

When the program closes its stdout (it exited), the connection is closed with
1000 if it exited with status 0, else 1011 and the status as the reason. When
the connection closes first, the program's process group gets SIGTERM, then
SIGKILL ``KILL_GRACE`` seconds later.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess

from ..asyncio.server import ServerConnection
from ..exceptions import ConnectionClosed
from ..frames import CloseCode

__all__ = ["KILL_GRACE", "MAX_LINE", "run_command"]

#: Longest stdout line sent as one message; longer ones go in pieces.
MAX_LINE = 2**16
#: Seconds between SIGTERM and SIGKILL when the connection closes first.
KILL_GRACE = 2.0

logger = logging.getLogger("ws13.serve")


async def run_command(connection: ServerConnection, command: str) -> None:
    """Run ``command`` for ``connection`` until one of them ends; see the module docstring."""
    try:
        process = await asyncio.create_subprocess_shell(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
            limit=MAX_LINE,
        )
    except OSError as exc:
        logger.error("--exec %r: cannot start: %s", command, exc.strerror or exc)
        await connection.close(CloseCode.INTERNAL_ERROR, "cannot start the command")
        return
    to_stdin = asyncio.ensure_future(_messages_to_stdin(connection, process))
    from_stdout = asyncio.ensure_future(_stdout_to_messages(connection, process))
    try:
        await asyncio.wait([to_stdin, from_stdout], return_when=asyncio.FIRST_COMPLETED)
        if from_stdout.done():
            # The program closed its stdout, so it exited or is about to.
            try:
                status = await asyncio.wait_for(process.wait(), KILL_GRACE)
            except TimeoutError:
                status = await _kill(process)
            if status == 0:
                await connection.close()
            else:
                await connection.close(CloseCode.INTERNAL_ERROR, f"command exited with {status}")
        else:
            await _kill(process)
    finally:
        for task in (to_stdin, from_stdout):
            task.cancel()
        await asyncio.gather(to_stdin, from_stdout, return_exceptions=True)
        if process.returncode is None:
            await _kill(process)
        logger.info("--exec pid %d ended with status %s", process.pid, process.returncode)


async def _messages_to_stdin(
    connection: ServerConnection, process: asyncio.subprocess.Process
) -> None:
    stdin = process.stdin
    assert stdin is not None
    try:
        async for message in connection:
            data = message.encode("utf-8") if isinstance(message, str) else message
            stdin.write(data + b"\n")
            await stdin.drain()
    except ConnectionClosed:
        pass
    except (BrokenPipeError, ConnectionResetError):
        # The program exited or closed its stdin: its stdout tells the rest.
        await asyncio.Future()  # wait to be cancelled
    finally:
        if not stdin.is_closing():
            stdin.close()


async def _stdout_to_messages(
    connection: ServerConnection, process: asyncio.subprocess.Process
) -> None:
    stdout = process.stdout
    assert stdout is not None
    while True:
        try:
            line = await stdout.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            line = exc.partial  # the last line, without a newline; b"" at EOF
            if not line:
                return
        except asyncio.LimitOverrunError:
            line = await stdout.read(MAX_LINE)
        data = line.removesuffix(b"\n").removesuffix(b"\r") if line.endswith(b"\n") else line
        message: str | bytes
        try:
            message = data.decode("utf-8")
        except UnicodeDecodeError:
            message = data
        try:
            await connection.send(message)
        except ConnectionClosed:
            return


async def _kill(process: asyncio.subprocess.Process) -> int:
    """SIGTERM the program's process group, SIGKILL it after KILL_GRACE; return the status."""
    if process.returncode is not None:
        return process.returncode
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass
        try:
            return await asyncio.wait_for(process.wait(), KILL_GRACE)
        except TimeoutError:
            continue
    return await process.wait()
