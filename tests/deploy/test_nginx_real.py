"""The shipped nginx site in a real nginx, in front of the real service, where nginx is installed.

Only the paths (ports, certificate, log and web-root folders) are changed to the test's.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import CALLBACK_TOKEN, new_order
from tests.postgres.processes import free_port
from utopia_handler.server import ServiceHandle

SITE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "utopia-handler.conf"
HOST = "handler.isp.example"


@dataclass(frozen=True)
class Nginx:
    https: str
    http: str
    certificate: Path

    def client(self) -> httpx.Client:
        """A client that trusts the test certificate and checks it names HOST."""
        return httpx.Client(
            verify=ssl.create_default_context(cafile=str(self.certificate)),
            timeout=5,
            headers={"Host": HOST},
        )

    def get(self, client: httpx.Client, path: str) -> httpx.Response:
        return client.get(f"{self.https}{path}", extensions={"sni_hostname": HOST})


def write_config(folder: Path, upstream: int, http_port: int, https_port: int) -> Path:
    certificate, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}"),
            *("-keyout", str(key), "-out", str(certificate)),
        ],
        check=True,
        capture_output=True,
    )
    site = SITE.read_text()
    for production, test in {
        "127.0.0.1:5050": f"127.0.0.1:{upstream}",
        f"/etc/letsencrypt/live/{HOST}/fullchain.pem": str(certificate),
        f"/etc/letsencrypt/live/{HOST}/privkey.pem": str(key),
        "/var/log/nginx/": f"{folder}/",
        "/var/www/html": str(folder),
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
    }.items():
        assert production in site, production
        site = site.replace(production, test)
    # This machine may have no IPv6; the [::] listeners only repeat the lines above.
    site = "\n".join(line for line in site.splitlines() if "listen [::]" not in line)
    (folder / "site.conf").write_text(site)
    main = folder / "nginx.conf"
    main.write_text(
        f"daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n  client_body_temp_path {folder}/body;\n  proxy_temp_path {folder}/proxy;\n"
        f"  include {folder}/site.conf;\n}}\n"
    )
    return main


@pytest.fixture
def nginx(service: ServiceHandle, tmp_path: Path) -> Iterator[Nginx]:
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if binary is None or shutil.which("openssl") is None:
        pytest.skip("nginx or openssl is not installed; test_deploy_files.py checks the routing")
    http_port, https_port = free_port(), free_port()
    upstream = int(service.url.rsplit(":", 1)[1])
    config = write_config(tmp_path, upstream, http_port, https_port)
    checked = subprocess.run([binary, "-t", "-c", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr  # `nginx -t`, as the guide says to run
    process = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.DEVNULL)
    running = Nginx(
        f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", tmp_path / "cert.pem"
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with running.client() as client:
                    running.get(client, "/healthz")
                break
            except httpx.TransportError:
                assert process.poll() is None, (tmp_path / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not answer"
                time.sleep(0.05)
        yield running
    finally:
        process.terminate()
        process.wait(10)


def test_nginx_passes_the_public_paths_and_stops_everything_else(
    nginx: Nginx, tmp_path: Path
) -> None:
    with nginx.client() as client:
        stored = client.post(
            f"{nginx.https}/api-callback",
            params={"token": CALLBACK_TOKEN},
            json=new_order("UIA202611-004217"),
            extensions={"sni_hostname": HOST},
        )
        assert stored.status_code == 200 and stored.json()["status"] == "queued"
        assert nginx.get(client, "/api-callback").status_code == 403  # POST only
        assert nginx.get(client, "/healthz").status_code == 200
        assert nginx.get(client, "/login").status_code == 200  # the console
        for hidden in ("/metrics", "/openapi.json", "/.env", "/.git/config", "/admin"):
            answer = nginx.get(client, hidden)
            assert answer.status_code == 404 and "utopia" not in answer.text.lower(), hidden
        plain = client.get(f"{nginx.http}/login")
        assert plain.status_code == 301 and plain.headers["location"] == f"https://{HOST}/login"
    log = (tmp_path / "utopia-handler.access.log").read_text()
    assert "/api-callback" in log and CALLBACK_TOKEN not in log
