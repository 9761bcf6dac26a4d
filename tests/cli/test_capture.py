"""Tests for ``--pcap`` of ``ws13 connect`` and ``ws13 serve``, read by real tshark."""

from __future__ import annotations

import os
import tempfile

from tests.cli.helpers import CLITestCase
from tests.tshark import tshark, tshark_fields, websocket_frames


class CaptureCLITests(CLITestCase):
    def setUp(self) -> None:
        super().setUp()
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.directory = directory.name

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def test_connect_and_serve_capture_the_same_frames(self) -> None:
        served, connected = self.path("serve.pcapng"), self.path("connect.pcapng")
        server, port = self.start_server("--pcap", served)
        result = self.run_ws13(
            "connect", "--pcap", connected, f"ws://127.0.0.1:{port}/echo", input="hi\nthere\n"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, "hi\nthere\n")
        for path in (connected, served):  # the server's file is read while it runs
            frames = websocket_frames(path, "websocket.opcode == 1")
            # The pipe sends without waiting for the echoes: in order each way.
            for mask in ("1", "0"):
                texts = [f["websocket.payload.text"] for f in frames if f["websocket.mask"] == mask]
                self.assertEqual(texts, ["hi", "there"])
            http = tshark_fields(path, "http", "http.request.uri", "http.response.code")
            self.assertEqual(http, [["/echo", ""], ["", "101"]])
            self.assertEqual(tshark(path, "-Y", "tcp.analysis.flags"), "")
        self.assertEqual(self.stop_server(server), 0)

    def test_serve_rotation_options(self) -> None:
        served = self.path("serve.pcapng")
        _, port = self.start_server("--pcap", served, "--pcap-max-size", "4k", "--pcap-files", "2")
        for _ in range(4):
            result = self.run_ws13(
                "connect", f"ws://127.0.0.1:{port}/echo", input="x" * 1000 + "\n"
            )
            self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(sorted(os.listdir(self.directory)), ["serve.pcapng", "serve.pcapng.1"])
        for name in os.listdir(self.directory):
            self.assertLessEqual(os.path.getsize(self.path(name)), 4096)

    def test_unwritable_path_is_a_usage_error(self) -> None:
        missing = self.path("missing/cap.pcapng")
        for command in (["serve", "--port", "0"], ["connect", "ws://127.0.0.1:1/"]):
            with self.subTest(command=command[0]):
                result = self.run_ws13(*command, "--pcap", missing)
                self.assertEqual(result.returncode, 2)
                self.assert_one_line_error(
                    result.stderr, f"cannot write --pcap {missing}: No such file or directory"
                )

    def test_bad_rotation_options(self) -> None:
        result = self.run_ws13("serve", "--pcap-files", "0", "--pcap", self.path("x"))
        self.assertEqual(result.returncode, 2)
        self.assert_one_line_error(result.stderr, "--pcap-files 0: must be 1 or more")
        result = self.run_ws13("serve", "--pcap-max-size", "lots")
        self.assertEqual(result.returncode, 2)
        self.assertIn("isn't a size such as 100M", result.stderr)
