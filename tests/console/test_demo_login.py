"""`utopia-handler demo` prints the console's address and a login that works."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx

from tests.conftest import REPO

_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_the_demo_prints_a_console_login_that_works() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "utopia_handler", "demo", "--port", "0"],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 60
        found = None
        while found is None and time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, "the demo ended without printing the console login"
            found = re.match(
                r"console:\s+(http://\S+)/\s+log in as (\S+) with password (\S+)", line
            )
        assert found is not None
        url, user, password = found.groups()
        with httpx.Client(base_url=url, timeout=10) as browser:
            login = browser.get("/login")
            token = _CSRF_RE.search(login.text)
            assert token is not None
            answer = browser.post(
                "/login",
                data={"username": user, "password": password, "csrf_token": token.group(1)},
            )
            assert answer.status_code == 303
            home = browser.get("/")
            assert home.status_code == 200 and "At a glance" in home.text
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait(10)
        if demo.stdout is not None:
            demo.stdout.close()
