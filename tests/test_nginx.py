"""Pair images and static files sent by nginx in front of gunicorn, as in production (`manage.py nginx_config`).

The app still decides which rater may see which image; with ``VTT_IMAGE_ACCEL_REDIRECT`` set it answers with
an empty body and ``X-Accel-Redirect``, and nginx sends the file from an ``internal`` location with the same
headers for every image, its length aside: nothing made of the file's mtime (the real image is rendered before
the colorized ones). These tests need Debian's nginx (/usr/sbin/nginx; .ci/run installs it) and fail without it.
"""
from __future__ import annotations

import io
import re
import subprocess
import urllib.error
import urllib.request
from email.utils import formatdate
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from PIL import Image

from tests.conftest import colour_image
from tests.conftest import suite_backend as backend
from tests.test_rater_flow import make_experiment, page_state, start
from vtt.loadtest import ACCEL_PREFIX, SimulatedRater, deployment, require_nginx

IMAGE_CACHE_CONTROL = "private, max-age=3600, immutable"
HASHED_CACHE_CONTROL = "public, max-age=315360000, immutable"


def fetch(opener: urllib.request.OpenerDirector, url: str, **headers: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, every header line (lower-case names, repeats kept) and body of a GET."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, [(k.lower(), v) for k, v in response.headers.items()], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, [(k.lower(), v) for k, v in exc.headers.items()], exc.read()


def without(headers: list[tuple[str, str]], *names: str) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in headers if k not in names)


def make_photos(folder: Path, tinted: Path, n: int) -> None:
    """``n`` photos, and the rated method's results: each with a warm cast, imported as results made elsewhere."""
    folder.mkdir()
    tinted.mkdir()
    for i in range(n):
        image = colour_image(300 + i)
        image.save(folder / f"p{i:02d}.png")
        rgb = np.asarray(image, dtype=np.int16)
        Image.fromarray(np.clip(rgb + np.array([40, 0, -40]), 0, 255).astype(np.uint8)).save(tinted / f"p{i:02d}.png")


@pytest.mark.slow
@pytest.mark.database
def test_pair_images_and_static_files_come_from_nginx_with_identical_headers(tmp_path):
    photos, tinted = tmp_path / "photos", tmp_path / "tinted"
    make_photos(photos, tinted, 6)
    with deployment(backend(), workers=2, nginx=True) as site:
        site.manage("generate_pairs", "--experiment", "n", "--split", f"folder:{photos}", "--methods", "grayscale",
                    "--size", "64", "--verbosity", "0")
        site.manage("generate_pairs", "--experiment", "n", "--split", f"folder:{photos}", "--import-dir",
                    str(tinted), "--method-name", "tinted", "--verbosity", "0")
        site.manage("experiment", "configure", "n", "--raters-per-pair", "3", "--trials-per-rater", "3",
                    "--practice-trials", "0", "--catch-trial-rate", "0")
        site.manage("experiment", "open", "n")
        pairs = site.workdir / "media" / "pairs"

        alice, bob = SimulatedRater(site.base_url, "n", seed=1), SimulatedRater(site.base_url, "n", seed=2)
        current, other = alice.start(), bob.start()
        assert current is not None and other is not None, (alice.log.errors, bob.log.errors)

        sides = []
        for url in (current["left"], current["right"]):
            # The app itself names the file and sends no bytes ...
            status, app_headers, body = fetch(alice.opener, site.app_url + url)
            assert status == 200 and body == b""
            accel = dict(app_headers)["x-accel-redirect"]
            assert accel.startswith(ACCEL_PREFIX)
            file = accel.removeprefix(ACCEL_PREFIX)
            # ... nginx sends the stored file.
            status, headers, body = fetch(alice.opener, site.base_url + url)
            assert status == 200
            assert body == (pairs / file).read_bytes()
            sides.append((file, headers))
        (left_file, left), (right_file, right) = sides
        assert left_file != right_file
        for headers in (left, right):
            names = [k for k, _ in headers]
            assert not {"last-modified", "etag", "x-accel-redirect", "accept-ranges", "content-disposition"} & set(names)
            assert dict(headers)["content-type"] == "image/jpeg"
            assert [v for k, v in headers if k == "cache-control"] == [IMAGE_CACHE_CONTROL]  # exactly one
        assert without(left, "date", "content-length") == without(right, "date", "content-length")

        # Nothing answers differently with the file's mtime or a range: no 304, no 206.
        mtime = formatdate((pairs / left_file).stat().st_mtime, usegmt=True)
        status, headers, body = fetch(alice.opener, site.base_url + current["left"], **{"If-Modified-Since": mtime})
        assert status == 200 and body == (pairs / left_file).read_bytes()
        status, _, body = fetch(alice.opener, site.base_url + current["left"], Range="bytes=0-9")
        assert status == 200 and body == (pairs / left_file).read_bytes()

        # The internal location is not reachable from outside; another rater's image is a 404 through nginx.
        assert fetch(alice.opener, site.base_url + ACCEL_PREFIX + left_file)[0] == 404
        assert fetch(bob.opener, site.base_url + current["left"])[0] == 404
        assert fetch(alice.opener, site.base_url + other["right"])[0] == 404

        # Static files, under their hashed names, from nginx (the app's WhiteNoise words Cache-Control otherwise).
        _, _, page = fetch(alice.opener, site.base_url + "/e/n/trial/")
        script = re.search(r'src="(/static/vtt/trial\.[0-9a-f]{12}\.js)"', page.decode()).group(1)
        status, headers, body = fetch(alice.opener, site.base_url + script)
        assert status == 200 and body == (site.workdir / "static" / script.removeprefix("/static/")).read_bytes()
        assert [v for k, v in headers if k == "cache-control"] == [HASHED_CACHE_CONTROL]
        assert fetch(alice.opener, site.app_url + script)[1] != headers


@pytest.mark.django_db
def test_with_accel_redirect_the_image_view_names_the_file_and_sends_no_bytes(
        settings, media_root, photo_dir, mean_chroma_checkpoint):
    settings.VTT_IMAGE_ACCEL_REDIRECT = "/_pairs/"
    experiment = make_experiment(photo_dir, mean_chroma_checkpoint, images=5, practice_trials=0, trials_per_rater=2,
                                 catch_trial_rate=0.0)
    client = Client()
    start(client, experiment)
    current = page_state(client, experiment)["current"]
    left, right = client.get(current["left"]), client.get(current["right"])
    for response in (left, right):
        assert response.status_code == 200 and response.content == b""
        assert response["Content-Type"] == "image/jpeg"
        assert response["Cache-Control"] == IMAGE_CACHE_CONTROL
        assert "ETag" not in response and "Last-Modified" not in response
        file = response["X-Accel-Redirect"].removeprefix("/_pairs/")
        assert re.fullmatch(r"[0-9a-f]{32}\.jpg", file) and (media_root / "pairs" / file).is_file()
    assert left["X-Accel-Redirect"] != right["X-Accel-Redirect"]
    assert {k: v for k, v in left.items() if k != "X-Accel-Redirect"} == \
        {k: v for k, v in right.items() if k != "X-Accel-Redirect"}
    (media_root / "pairs" / left["X-Accel-Redirect"].removeprefix("/_pairs/")).unlink()
    assert client.get(current["left"]).status_code == 404  # the file is gone: a 404, as without nginx


def test_the_generated_configurations_pass_nginx_t(settings, tmp_path):
    """The server block (inside a minimal nginx.conf, as Debian's includes it) and the standalone file both
    pass ``nginx -t``, with this deployment's paths in them."""
    nginx = require_nginx()
    settings.VTT_IMAGE_ACCEL_REDIRECT = "/_pairs/"
    block, whole = io.StringIO(), io.StringIO()
    call_command("nginx_config", "--listen", "127.0.0.1:8080", "--upstream", "127.0.0.1:8001",
                 "--upstream", "127.0.0.1:8002", stdout=block)
    call_command("nginx_config", "--standalone", "--prefix", str(tmp_path), "--listen", "127.0.0.1:8080",
                 stdout=whole)
    assert f'alias "{Path(settings.MEDIA_ROOT).resolve()}/pairs/";' in block.getvalue()
    assert "server 127.0.0.1:8001;" in block.getvalue() and "server 127.0.0.1:8002;" in block.getvalue()
    assert "user " not in whole.getvalue()  # only when asked for
    (tmp_path / "site.conf").write_text(block.getvalue())
    (tmp_path / "debian.conf").write_text(
        f"pid {tmp_path}/t.pid;\nevents {{}}\nhttp {{\n    include /etc/nginx/mime.types;\n"
        f"    include {tmp_path}/site.conf;\n}}\n")
    (tmp_path / "nginx.conf").write_text(whole.getvalue())
    for config in ("debian.conf", "nginx.conf"):
        result = subprocess.run([str(nginx), "-t", "-p", str(tmp_path), "-c", str(tmp_path / config)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    with pytest.raises(CommandError, match="--standalone"):
        call_command("nginx_config", "--user", "root", stdout=io.StringIO())
    with pytest.raises(CommandError, match="--prefix"):
        call_command("nginx_config", "--standalone", stdout=io.StringIO())


def test_a_missing_nginx_is_named(monkeypatch):
    monkeypatch.setattr("vtt.loadtest.NGINX", Path("/nonexistent/nginx"))
    with pytest.raises(RuntimeError, match=r"/nonexistent/nginx is missing: install Debian's nginx"):
        with deployment("sqlite", nginx=True):
            pass
