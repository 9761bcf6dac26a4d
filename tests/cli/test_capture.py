"""Tests for ``--pcap`` of ``ws13 connect`` and ``ws13 serve``, read by real tshark."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import trustme

from tests.cli.helpers import ENV, TIMEOUT, CLITestCase
from tests.tshark import tshark, tshark_fields, websocket_frames

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIELDS = (
    "websocket.fin",
    "websocket.opcode",
    "websocket.mask",
    "websocket.payload_length",
    "websocket.payload_length_ext_16",
    "websocket.payload_length_ext_64",
    "websocket.rsv",
)
#: The frames docs/lab.md shows, but the masking keys (random each run).
LAB_FRAMES = [
    ["1", "1", "1", "12", "", "", "0x00"],
    ["1", "1", "0", "12", "", "", "0x00"],
    ["1", "2", "1", "126", "200", "", "0x00"],
    ["1", "2", "0", "?", "?", "?", "0x04"],
    ["1", "2", "1", "127", "", "70000", "0x00"],
    ["1", "2", "0", "?", "?", "?", "0x04"],
    ["0", "1", "1", "4", "", "", "0x00"],
    ["1", "9", "1", "17", "", "", "0x00"],
    ["1", "10", "0", "17", "", "", "0x00"],
    ["0", "0", "1", "4", "", "", "0x00"],
    ["1", "0", "1", "5", "", "", "0x00"],
    ["1", "1", "0", "13", "", "", "0x00"],
    ["1", "1", "1", "?", "?", "?", "0x04"],
    ["1", "1", "0", "?", "?", "?", "0x04"],
    ["1", "8", "1", "10", "", "", "0x00"],
    ["1", "8", "0", "2", "", "", "0x00"],
]


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

    def test_the_lab_guides_example(self) -> None:
        # examples/lab_capture.py, the exercise docs/lab.md walks through.
        served, client = self.path("lab.pcapng"), self.path("client.pcapng")
        server, port = self.start_server("--pcap", served)
        example = os.path.join(ROOT, "examples", "lab_capture.py")
        subprocess.run(
            [sys.executable, example, f"ws://127.0.0.1:{port}/echo", client],
            check=True,
            timeout=TIMEOUT,
            env=ENV,
        )
        self.assertEqual(self.stop_server(server), 0)
        rows = [[f.get(field, "") for field in FIELDS] for f in websocket_frames(client)]
        for row in rows:
            if row[-1] == "0x04":
                # Compressed sizes depend on the zlib: not checked.
                row[3:6] = ["?", "?", "?"]
        self.assertEqual(rows, LAB_FRAMES)
        self.assertEqual(tshark(client, "-Y", "tcp.analysis.flags"), "")
        self.assertEqual(tshark(served, "-Y", "tcp.analysis.flags"), "")

    def test_pcap_tls_is_decrypted_by_tshark_from_the_file_alone(self) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca_path, cert_path, key_path = self.path("ca.pem"), self.path("c.pem"), self.path("k.pem")
        ca.cert_pem.write_to_path(ca_path)
        cert.cert_chain_pems[0].write_to_path(cert_path)
        cert.private_key_pem.write_to_path(key_path)
        for loop in ("asyncio", "uvloop"):
            with self.subTest(loop=loop):
                self.check_pcap_tls(loop, ca_path, cert_path, key_path)

    def check_pcap_tls(self, loop: str, ca_path: str, cert_path: str, key_path: str) -> None:
        served, connected = self.path(f"s-{loop}.pcapng"), self.path(f"c-{loop}.pcapng")
        server, port = self.start_server(
            *("--loop", loop, "--tls-cert", cert_path, "--tls-key", key_path),
            *("--pcap", served, "--pcap-tls"),
        )
        result = self.run_ws13(
            "connect",
            "--cafile",
            ca_path,
            "--pcap",
            connected,
            "--pcap-tls",
            f"wss://localhost:{port}/echo",
            input="hi\nthere\n",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, "hi\nthere\n")
        self.assertEqual(self.stop_server(server), 0)
        for path in (connected, served):
            self.assertIn("TLSv1.3", tshark(path, "-Y", "tls"))
            # No -o tls.keylog_file: the keys are in the file.
            frames = websocket_frames(path, "websocket.opcode == 1")
            for mask in ("1", "0"):
                texts = [f["websocket.payload.text"] for f in frames if f["websocket.mask"] == mask]
                self.assertEqual(texts, ["hi", "there"])
            http = tshark_fields(path, "http", "http.request.uri", "http.response.code")
            self.assertEqual(http, [["/echo", ""], ["", "101"]])

    def test_pcap_tls_usage_errors(self) -> None:
        for command, message in (
            (["serve", "--port", "0", "--pcap-tls"], "--pcap-tls needs --pcap FILE"),
            (
                ["serve", "--port", "0", "--pcap", self.path("s"), "--pcap-tls"],
                "--pcap-tls needs --tls-cert: without TLS there are no records",
            ),
            (
                ["connect", "ws://127.0.0.1:1/", "--pcap", self.path("c"), "--pcap-tls"],
                "--pcap-tls needs a wss:// URL: ws:// has no TLS records",
            ),
        ):
            with self.subTest(command=command):
                result = self.run_ws13(*command)
                self.assertEqual(result.returncode, 2)
                self.assert_one_line_error(result.stderr, message)

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
