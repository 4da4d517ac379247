"""A private loopback for the browser: the editor build's fixed port 3233, forwarded to the server.

The seed-era build talks to ``<page host>:3233`` (compiled in). So that the tests never depend on
(or disturb) whatever else listens on this machine's 3233, the browser runs in its own network
namespace (``unshare --net``, then ``nsenter`` as Chromium's launcher), where a TCP forwarder
listens on ``localhost:3233`` and relays every byte to ``comfytavern serve`` on a random host port.
Nothing is rewritten: the page, the API, multipart uploads and the WebSocket all reach the real
server exactly as in production with the page served on port 3233.

Hand-written because no library offers a namespace-crossing forwarder: the listening sockets are
created by a thread that has entered the namespace (``setns``), the outgoing ones on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import socket
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["EDITOR_PORT", "Namespace", "namespace_unavailable", "private_editor_port"]

EDITOR_PORT = 3233
_CLONE_NEWNET = 0x40000000


def namespace_unavailable() -> str | None:
    """Why a private network namespace cannot be made here (``None`` when it can)."""
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"the {tool} command is missing (util-linux / iproute2)"
    try:
        done = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare --net failed: {exc}"
    if done.returncode != 0:
        return f"unshare --net is not permitted here ({done.stderr.decode(errors='replace').strip()}); run as root"
    return None


class Namespace:
    """A network namespace held open by a ``sleep`` process, with loopback up."""

    def __init__(self, workdir: Path) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && echo up && exec sleep 3600"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != b"up":
            self.close()
            raise RuntimeError("could not bring up loopback in the network namespace")
        self.path = f"/proc/{self.holder.pid}/ns/net"
        self.launcher = workdir / "chromium-in-namespace"
        self.launcher.write_text(f'#!/bin/sh\nexec nsenter --net={self.path} -- /usr/bin/chromium "$@"\n')
        self.launcher.chmod(self.launcher.stat().st_mode | stat.S_IXUSR)
        self._stop: Callable[[], object] | None = None
        self._thread: threading.Thread | None = None

    def _listen(self, family: int, address: str, port: int) -> socket.socket:
        """A listening socket created inside the namespace (by a thread that entered it)."""
        result: list[socket.socket | BaseException] = []

        def enter_and_bind() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    if libc.setns(fd, _CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                sock.listen(128)
                sock.setblocking(False)
                result.append(sock)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                result.append(exc)

        thread = threading.Thread(target=enter_and_bind)
        thread.start()
        thread.join()
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def forward(self, port: int, target_port: int) -> None:
        """``localhost:port`` inside the namespace -> ``127.0.0.1:target_port`` on the host."""
        sockets = [self._listen(socket.AF_INET, "127.0.0.1", port)]
        with contextlib.suppress(OSError):
            sockets.append(self._listen(socket.AF_INET6, "::1", port))

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        started = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()

            async def main() -> None:
                stop = asyncio.Event()
                servers = [await asyncio.start_server(relay, sock=s) for s in sockets]
                self._stop = lambda: loop.call_soon_threadsafe(stop.set)
                started.set()
                await stop.wait()
                for server in servers:
                    server.close()

            try:
                loop.run_until_complete(main())
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, name="editor-port-forwarder", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the port forwarder did not start")

    def close(self) -> None:
        if self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._stop()
        if self._thread is not None:
            self._thread.join(5)
        if self.holder.poll() is None:
            self.holder.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.holder.wait(5)
        if self.holder.stdout is not None:
            self.holder.stdout.close()


@contextlib.contextmanager
def private_editor_port(workdir: Path, target_port: int) -> Iterator[Namespace]:
    ns = Namespace(workdir)
    try:
        ns.forward(EDITOR_PORT, target_port)
        yield ns
    finally:
        ns.close()
