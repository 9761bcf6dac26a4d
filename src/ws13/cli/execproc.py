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

Most programs buffer their output when it goes to a pipe rather than a
terminal (C's stdio, Python, ``tr``, ``sed``, ``grep``): their lines only come
back when a buffer of several KiB fills or the program exits, so ``tr a-z A-Z``
seems to answer nothing. With ``pty=True`` (``ws13 serve --exec-pty``) the
program's stdout is a pseudo-terminal instead (POSIX only): stdio then flushes
each line. The terminal is raw (no echo, no CR added before LF); stdin stays a
pipe, so the end of the input is still an end of file.

When the program closes its stdout (it exited), the connection is closed with
1000 if it exited with status 0, else 1011 and the status as the reason. When
the connection closes first, the program's process group gets SIGTERM, then
SIGKILL ``KILL_GRACE`` seconds later.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable

from ..asyncio.server import ServerConnection
from ..exceptions import ConnectionClosed
from ..frames import CloseCode

__all__ = ["KILL_GRACE", "MAX_LINE", "PTY_AVAILABLE", "run_command"]

#: Longest stdout line sent as one message; longer ones go in pieces.
MAX_LINE = 2**16
#: Seconds between SIGTERM and SIGKILL when the connection closes first.
KILL_GRACE = 2.0

logger = logging.getLogger("ws13.serve")

#: Whether ``run_command(..., pty=True)`` can work here (POSIX: ``os.openpty``).
PTY_AVAILABLE = hasattr(os, "openpty")

Reader = Callable[[], Awaitable[bytes]]


async def run_command(connection: ServerConnection, command: str, *, pty: bool = False) -> None:
    """Run ``command`` for ``connection`` until one of them ends; see the module docstring.

    ``pty``: the program's stdout is a pseudo-terminal, so that it flushes
    each line (needs ``PTY_AVAILABLE``).
    """
    master: int | None = None
    try:
        stdout: int = subprocess.PIPE
        if pty:
            master, stdout = _open_pty()
        try:
            process = await asyncio.create_subprocess_shell(
                command,
                stdin=subprocess.PIPE,
                stdout=stdout,
                start_new_session=True,
                limit=MAX_LINE,
            )
        finally:
            if master is not None:
                os.close(stdout)  # the program has its copy; EOF once it closes it
    except OSError as exc:
        if master is not None:
            os.close(master)
        logger.error("--exec %r: cannot start: %s", command, exc.strerror or exc)
        await connection.close(CloseCode.INTERNAL_ERROR, "cannot start the command")
        return
    try:
        await _serve(
            connection, process, _pipe_reader(process) if master is None else _pty_reader(master)
        )
    finally:
        if master is not None:
            os.close(master)


def _open_pty() -> tuple[int, int]:
    """A raw pseudo-terminal: (master, slave), the master non-blocking."""
    import tty  # POSIX only

    master, slave = os.openpty()
    try:
        tty.setraw(slave)  # no echo, no CR before LF: the bytes as written
        os.set_blocking(master, False)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    return master, slave


def _pipe_reader(process: asyncio.subprocess.Process) -> Reader:
    stdout = process.stdout
    assert stdout is not None

    async def read() -> bytes:
        return await stdout.read(MAX_LINE)

    return read


def _pty_reader(master: int) -> Reader:
    """Read the master side of a pseudo-terminal; b"" once every slave copy is closed."""
    loop = asyncio.get_running_loop()

    async def read() -> bytes:
        while True:
            try:
                return os.read(master, MAX_LINE)
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno == errno.EIO:  # Linux: the program closed the terminal
                    return b""
                raise
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(master, _set_once, readable)
            try:
                await readable
            finally:
                loop.remove_reader(master)

    return read


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _serve(
    connection: ServerConnection, process: asyncio.subprocess.Process, read: Reader
) -> None:
    to_stdin = asyncio.ensure_future(_messages_to_stdin(connection, process))
    from_stdout = asyncio.ensure_future(_stdout_to_messages(connection, read))
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


async def _stdout_to_messages(connection: ServerConnection, read: Reader) -> None:
    """Each line ``read()`` gives (without its newline) as a message; pieces of
    ``MAX_LINE`` bytes of a longer one; the last line even without a newline."""
    buffer = bytearray()
    eof = False
    while True:
        newline = buffer.find(b"\n", 0, MAX_LINE)
        if newline >= 0:
            data = bytes(buffer[:newline]).removesuffix(b"\r")
            del buffer[: newline + 1]
        elif len(buffer) >= MAX_LINE or (eof and buffer):
            data = bytes(buffer[:MAX_LINE])
            del buffer[:MAX_LINE]
        elif eof:
            return
        else:
            chunk = await read()
            eof = not chunk
            buffer += chunk
            continue
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
