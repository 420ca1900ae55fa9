"""The browser editor (`latentspaces app`): its JSON API in-process, its computations at 1024 px, and the page
itself driven in headless Chromium.

The API tests run the server on a free port in this process and talk to it over HTTP as the page does: an
upload finds the astronaut's face; a text file named .png, a decompression bomb and a photo without a face
get the one line the command line prints, and the server keeps serving; an inversion reports its steps and
can be cancelled; two sessions never see each other's photos; a slider move re-renders without inverting;
the downloaded bundle replays the page's edit with `latentspaces edit`, bit for bit.

The browser test starts the real command (`latentspaces app --port 0`) and drives the page in Debian's
Chromium through its ChromeDriver (installed by .ci/run; skipped with the reason when they are missing):
upload, short inversion, slider, download, a bad upload, a good one after it. With
LATENTSPACES_APP_SCREENSHOT=FILE it also saves the page as FILE (the README's screenshot).
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
import zlib
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skimage_data

import latentspaces as ls
from encoders import SDIC, WPlusEncoder, load_encoder
from experiments.app import Editor, EditorServer, default_sliders
from experiments.app import server as server_module
from experiments.cli import main
from latentspaces.generator import Generator
from latentspaces.images import to_uint8

from conftest import randomize_

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


# ------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def editor() -> Editor:
    G = ls.load_generator("default")
    base = load_encoder("default-wplus")
    return Editor(G, "default", default_sliders(G, components=3, samples=4000), base_encoder=base,
                  heads={"SDIC": load_encoder("default-sdic")})


@pytest.fixture(scope="module")
def server(editor, tmp_path_factory):
    srv = EditorServer(("127.0.0.1", 0), editor, folder=tmp_path_factory.mktemp("sessions"))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


class Client:
    """One tab: its own session id, requests as the page makes them."""

    def __init__(self, srv: EditorServer):
        self.base, self.session = srv.url.rstrip("/"), uuid.uuid4().hex

    def request(self, path: str, body: bytes = None, **params):
        query = "&".join(f"{k}={quote(str(v))}" for k, v in {"s": self.session, **params}.items())
        req = urllib.request.Request(f"{self.base}{path}?{query}", data=body,
                                     method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers

    def json(self, path: str, body: bytes = None, **params) -> dict:
        status, data, _ = self.request(path, body, **params)
        answer = json.loads(data)
        assert status == 200, answer
        return answer

    def error(self, path: str, body: bytes = None, **params) -> str:
        status, data, _ = self.request(path, body, **params)
        assert status >= 400, data[:200]
        return json.loads(data)["error"]

    def upload(self, path: Path, name: str = None) -> dict:
        return self.json("/api/photo", path.read_bytes(), name=name or path.name)

    def invert(self, photo: str, spaces, steps: int, recipe: str = "quick") -> dict:
        job = self.json("/api/invert", json.dumps({"photo": photo, "face": 0, "spaces": spaces, "recipe": recipe,
                                                     "steps": steps}).encode())
        while True:
            state = self.json("/api/job", job=job["job"])
            if state["state"] not in ("queued", "running"):
                return {**state, "recipe": job["recipe"]}
            time.sleep(0.05)


def cli_error(capsys, *argv) -> str:
    """The message `latentspaces <argv>` prints after 'error: '."""
    with pytest.raises(SystemExit):
        main(list(argv))
    line = capsys.readouterr().err.strip().splitlines()[-1]
    return line.split(": error: ", 1)[1]


def bomb_png(path: Path, side: int = 40_000) -> Path:
    """A 1.6-gigapixel PNG of a few hundred bytes: header and a stub of compressed data (never decoded)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) +
                     chunk(b"IEND", b""))
    return path


# ------------------------------------------------------------------------------------------ the API
def test_bad_uploads_get_the_command_lines_message_and_the_server_keeps_serving(server, astronaut, tmp_path, capsys,
                                                                                 monkeypatch):
    tab = Client(server)
    text = tmp_path / "notes.png"
    text.write_text("these are notes, not a photo\n")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 200), (128, 128, 128)).save(blank)
    bomb = bomb_png(tmp_path / "bomb.png")
    for path in (text, blank, bomb):
        shown = tab.error("/api/photo", path.read_bytes(), name=path.name)
        monkeypatch.chdir(tmp_path)   # the command run where the file is: it names the file as the page does
        printed = cli_error(capsys, "align", path.name, "--out", str(tmp_path / "aligned"))
        assert shown == printed, (shown, printed)
        assert len(shown) <= 300 and "\n" not in shown
    assert "not an image file" in tab.error("/api/photo", text.read_bytes(), name="notes.png")
    assert "decompression bomb" in tab.error("/api/photo", bomb.read_bytes(), name="bomb.png")
    assert "no face found" in tab.error("/api/photo", blank.read_bytes(), name="blank.png")
    photo = tab.upload(astronaut)   # still serving: the next upload works
    assert photo["faces"] == 1 and (photo["width"], photo["height"]) == (512, 512)
    assert any("dropped" in line for line in photo["candidates"])   # the name tag, reported


def test_an_upload_over_the_limit_is_refused_before_it_is_read(server, astronaut, monkeypatch):
    monkeypatch.setattr(server_module, "MAX_UPLOAD", 1000)
    tab = Client(server)
    status, data, _ = tab.request("/api/photo", astronaut.read_bytes(), name="astronaut.png")
    assert status == 413 and "MiB" in json.loads(data)["error"]
    monkeypatch.undo()
    assert tab.upload(astronaut)["faces"] == 1


def test_requests_are_checked(server, astronaut):
    tab = Client(server)
    photo = tab.upload(astronaut)["photo"]
    assert "session" in Client(server).error("/api/job", job="x", s="not-hex")
    assert "faces 0 .. 0" in tab.error("/api/face.png", photo=photo, face=3)
    bad = {"photo": photo, "face": 0, "spaces": ["NoSpace"], "recipe": "quick", "steps": 3}
    assert "unknown space" in tab.error("/api/invert", json.dumps(bad).encode())
    assert "steps must be" in tab.error("/api/invert", json.dumps({**bad, "spaces": ["W"], "steps": 10**6}).encode())
    assert "not inverted into W" in tab.error("/api/render.png", photo=photo, face=0, space="W", recipe="quick")
    status, _, _ = tab.request("/api/nothing")
    assert status == 404
    assert tab.json("/api/info")["resolution"] == 64
    heldout = tab.json("/api/heldout", b"", index=2)
    assert (heldout["name"], heldout["faces"], heldout["width"]) == ("heldout_2.png", 1, 64)
    assert "held-out faces 0 .. 15" in tab.error("/api/heldout", b"", index=99)


def test_two_tabs_do_not_share_photos_or_jobs(server, astronaut):
    a, b = Client(server), Client(server)
    photo = a.upload(astronaut)["photo"]
    assert "no photo" in b.error("/api/face.png", photo=photo, face=0)
    job = a.json("/api/invert", json.dumps({"photo": photo, "face": 0, "spaces": ["W"], "recipe": "quick",
                                             "steps": 2}).encode())["job"]
    assert "no job" in b.error("/api/job", job=job)
    b_photo = b.upload(astronaut)["photo"]
    assert b_photo == photo   # each tab numbers its own photos: the same id, two different entries
    assert server.store.get(a.session).photos[photo] is not server.store.get(b.session).photos[b_photo]


def test_inversion_reports_every_step_and_cancels(server, astronaut):
    tab = Client(server)
    photo = tab.upload(astronaut)["photo"]
    done = tab.invert(photo, ["WPlus", "FZPlus"], steps=12)
    assert done["state"] == "done" and done["recipe"] == "quick, steps=12"
    assert [len(done["losses"][s]) for s in ("WPlus", "FZPlus")] == [12, 12]
    assert done["seconds_per_step"] > 0 and all(np.isfinite(done["losses"]["FZPlus"]))
    # a second request for a space already inverted takes it from the cache at once
    again = tab.invert(photo, ["FZPlus"], steps=12)
    assert again["losses"]["FZPlus"] == done["losses"]["FZPlus"]
    job = tab.json("/api/invert", json.dumps({"photo": photo, "face": 0, "spaces": ["W"], "recipe": "quick",
                                               "steps": 5000}).encode())["job"]
    assert "already running" in tab.error("/api/invert", json.dumps({"photo": photo, "face": 0, "spaces": ["W"],
                                                                       "recipe": "quick", "steps": 3}).encode())
    while tab.json("/api/job", job=job)["step"] < 3:
        time.sleep(0.02)
    tab.json("/api/cancel", b"", job=job)
    while (state := tab.json("/api/job", job=job))["state"] == "running":
        time.sleep(0.02)
    assert state["state"] == "cancelled" and 3 <= state["step"] < 5000


def _image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_sliders_rerender_without_inverting_and_the_bundle_replays_the_edit(server, editor, astronaut, tmp_path,
                                                                              monkeypatch, capsys):
    tab = Client(server)
    photo = tab.upload(astronaut)["photo"]
    recipe = tab.invert(photo, ["FZPlus"], steps=10)["recipe"]
    session = server.store.get(tab.session)
    code = session.inversions[(photo, 0, "FZPlus", recipe)].code

    def render(**edit):
        status, data, headers = tab.request("/api/render.png", photo=photo, face=0, space="FZPlus", recipe=recipe,
                                            edit=json.dumps(edit))
        assert status == 200, data[:200]
        assert float(headers["X-Render-Seconds"]) > 0
        return _image(data)

    calls = []
    monkeypatch.setattr(editor, "invert", lambda *a, **k: calls.append(a))   # a slider never inverts
    plain, moved = render(), render(ganspace_0=2.0)
    assert plain.shape == (64, 64, 3) and np.abs(plain.astype(int) - moved).mean() > 2
    with torch.no_grad():   # alpha 0 is the reconstruction itself
        expected = to_uint8(editor.space("FZPlus").synthesize(code)[0]).permute(1, 2, 0).numpy()
    assert np.array_equal(plain, expected)
    assert "unknown slider" in tab.error("/api/render.png", photo=photo, face=0, space="FZPlus", recipe=recipe,
                                         edit=json.dumps({"nope": 1}))
    assert "alpha must be" in tab.error("/api/render.png", photo=photo, face=0, space="FZPlus", recipe=recipe,
                                        edit=json.dumps({"ganspace_0": 50}))
    head = tab.request("/api/render.png", photo=photo, face=0, head="SDIC", edit=json.dumps({"ganspace_0": 2.0}))
    assert head[0] == 200 and _image(head[1]).shape == (64, 64, 3)
    assert calls == []
    monkeypatch.undo()

    edit = {"ganspace_0": 2.0, "sefa_1": -1.5}
    status, pasted, _ = tab.request("/api/paste.png", photo=photo, face=0, space="FZPlus", recipe=recipe,
                                    edit=json.dumps(edit))
    assert status == 200 and Image.open(io.BytesIO(pasted)).size == (512, 512)
    status, bundle, _ = tab.request("/api/bundle.zip", photo=photo, face=0, space="FZPlus", recipe=recipe,
                                    edit=json.dumps(edit))
    assert status == 200
    folder = tmp_path / "bundle"
    zipfile.ZipFile(io.BytesIO(bundle)).extractall(folder)
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["sliders"] == edit and settings["space"] == "FZPlus"
    assert np.array_equal(_image((folder / "edited.png").read_bytes()), _image(pasted))
    monkeypatch.chdir(folder)   # the replay, as the bundle says, from the unpacked folder (the photo path relative)
    main(shlex.split(settings["replay"])[1:])
    replayed = _image((folder / "replay" / "astronaut_app_edit_+1.png").read_bytes())
    assert np.array_equal(replayed, _image(pasted))

    # a held-out face is its own photo: its bundle replays without pasting back
    heldout = tab.json("/api/heldout", b"", index=1)["photo"]
    recipe = tab.invert(heldout, ["WPlus"], steps=3)["recipe"]
    status, bundle, _ = tab.request("/api/bundle.zip", photo=heldout, face=0, space="WPlus", recipe=recipe,
                                    edit=json.dumps({"random_0": 1.0}))
    assert status == 200
    folder = tmp_path / "heldout_bundle"
    zipfile.ZipFile(io.BytesIO(bundle)).extractall(folder)
    replay = json.loads((folder / "settings.json").read_text())["replay"]
    assert "--paste-back" not in replay and "--mask" not in replay
    monkeypatch.chdir(folder)
    main(shlex.split(replay)[1:])
    assert (folder / "replay" / "edit_app_edit.png").is_file()


def _drag(tab: Client, body: dict) -> dict:
    job = tab.json("/api/drag", json.dumps(body).encode())["job"]
    while True:
        state = tab.json("/api/job", job=job)
        if state["state"] not in ("queued", "running"):
            return {**state, "job": job}
        time.sleep(0.05)


@pytest.mark.slow
def test_a_drag_moves_the_inversions_and_its_bundle_replays_with_the_drag_command(server, editor, astronaut, tmp_path,
                                                                                   monkeypatch):
    """Two spaces dragged by one pair with a mask brush: each space's tracked handle moves toward the target, the
    dragged code is what renders, the paste-back and the bundle use it; the bundle's `replay_drags` then
    `replay` redo the drag and the edit from the start code (to one level of 255: the same steps on another
    thread count); undrag restores the inversion; bad pairs and strokes are one line."""
    tab = Client(server)
    photo = tab.upload(astronaut)["photo"]
    recipe = tab.invert(photo, ["WPlus", "FZPlus"], steps=5)["recipe"]
    session = server.store.get(tab.session)
    before = session.inversions[(photo, 0, "WPlus", recipe)].code
    body = {"photo": photo, "face": 0, "spaces": ["WPlus", "FZPlus"], "recipe": recipe,
            "pairs": [[30, 40, 34, 40]], "mask": [[32, 40, 12]], "steps": 6}
    state = _drag(tab, body)
    assert state["state"] == "done" and state["kind"] == "drag" and state["space"] == "FZPlus", state
    assert state["frames"] >= 7 and len(state["points"]) == 1
    status, frame, _ = tab.request("/api/drag.png", job=state["job"])
    assert status == 200 and _image(frame).shape == (64, 64, 3)
    dragged = session.inversions[(photo, 0, "WPlus", recipe)]
    assert not torch.equal(dragged.code.w, before.w) and len(dragged.meta["drags"]) == 1
    status, render, _ = tab.request("/api/render.png", photo=photo, face=0, space="WPlus", recipe=recipe, edit="{}")
    with torch.no_grad():
        expected = to_uint8(editor.space("WPlus").synthesize(dragged.code)[0]).permute(1, 2, 0).numpy()
    assert np.array_equal(_image(render), expected)

    edit = {"ganspace_0": 1.0}
    status, bundle, _ = tab.request("/api/bundle.zip", photo=photo, face=0, space="WPlus", recipe=recipe,
                                    edit=json.dumps(edit))
    folder = tmp_path / "drag_bundle"
    zipfile.ZipFile(io.BytesIO(bundle)).extractall(folder)
    settings = json.loads((folder / "settings.json").read_text())
    assert len(settings["replay_drags"]) == 1 and "--mask drag_0_mask.png" in settings["replay_drags"][0]
    assert (folder / "start_codes.safetensors").is_file() and (folder / "drag_0_mask.png").is_file()
    monkeypatch.chdir(folder)
    for command in settings["replay_drags"]:
        main(shlex.split(command)[1:])
    replayed_code = ls.spaces.read_code_file(folder / "drag_0" / "codes.safetensors").code
    with torch.no_grad():
        again = to_uint8(editor.space("WPlus").synthesize(replayed_code)[0]).permute(1, 2, 0).numpy()
    assert np.abs(again.astype(int) - expected).max() <= 1
    main(shlex.split(settings["replay"])[1:])
    replayed = _image((folder / "replay" / "astronaut_app_edit_+1.png").read_bytes())
    assert np.abs(replayed.astype(int) - _image((folder / "edited.png").read_bytes())).max() <= 1

    assert tab.json("/api/undrag", b"", photo=photo, face=0, space="WPlus", recipe=recipe)["undragged"] is True
    assert torch.equal(session.inversions[(photo, 0, "WPlus", recipe)].code.w, before.w)
    for bad, match in ((dict(pairs=[[80, 1, 2, 3]]), "drag pair 0 must be"), (dict(pairs=[]), "a drag needs 1"),
                       (dict(mask=[[1, 2, -3]]), "mask stroke 0 must be"), (dict(steps=10**6), "drag steps must be"),
                       (dict(spaces=["WPlus", "Z"]), "not inverted into Z")):
        assert match in tab.error("/api/drag", json.dumps({**body, **bad}).encode())


def test_the_mask_brush_draws_each_stroke_in_its_own_square():
    """stroke_mask (each disc drawn in its bounding square) equals the discs drawn over the whole image, strokes
    reaching past the edges included; a bad stroke is one line naming it."""
    from experiments.app.editor import stroke_mask
    yy, xx = torch.meshgrid(torch.arange(64.0, dtype=torch.float64), torch.arange(64.0, dtype=torch.float64),
                            indexing="ij")
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        strokes = (torch.rand(5, 3, generator=gen, dtype=torch.float64) * torch.tensor([80.0, 80.0, 20.0])
                   - torch.tensor([8.0, 8.0, -0.1])).tolist()
        whole = torch.zeros(64, 64, dtype=torch.bool)
        for x, y, r in strokes:
            whole |= (xx - x) ** 2 + (yy - y) ** 2 <= r ** 2
        assert torch.equal(stroke_mask(strokes, 64), whole.float())
    with pytest.raises(ValueError, match=r"mask stroke 1 must be \[x, y, r\] with 0 < r <= 64"):
        stroke_mask([[1, 2, 3], [1, 2, 0]], 64)


def test_a_tabs_direction_files_become_its_own_sliders(server, astronaut, tmp_path):
    from latentspaces.directions import Direction, save_directions
    tab, other = Client(server), Client(server)
    photo = tab.upload(astronaut)["photo"]
    recipe = tab.invert(photo, ["WPlus"], steps=5)["recipe"]
    good = tmp_path / "smile.safetensors"
    save_directions(good, [Direction(torch.randn(512, generator=torch.Generator().manual_seed(3)), "w", name="smile",
                                     method="interfacegan")])
    added = tab.json("/api/directions", good.read_bytes(), name=good.name)["sliders"]
    assert [(s["label"], s["kinds"]) for s in added] == [("smile smile", ["w"])]
    key = added[0]["key"]

    def render(client, **edit):
        return client.request("/api/render.png", photo=photo, face=0, space="WPlus", recipe=recipe,
                              edit=json.dumps(edit))
    assert np.abs(_image(render(tab, **{key: 2.0})[1]).astype(int) - _image(render(tab)[1])).mean() > 1
    status, data, _ = render(other, **{key: 2.0})   # another tab has neither the photo nor the slider
    assert status == 400
    small = tmp_path / "small.safetensors"
    save_directions(small, [Direction(torch.ones(32), "w", name="tiny")])
    assert "has 32 numbers per layer; this generator's w codes have 512" in tab.error(
        "/api/directions", small.read_bytes(), name=small.name)
    assert "small.safetensors" in tab.error("/api/directions", b"junk" * 10, name="small.safetensors")
    assert "kind must be z or w" in tab.error("/api/directions", good.read_bytes(), name=good.name, kind="q")
    rows = tmp_path / "rows.safetensors"   # 100 rows of 512: not one per layer of this generator (10 ws)
    save_directions(rows, [Direction(torch.randn(100, 512), "w", name="rows")])
    assert "rows is [100, 512]; a w direction of this generator is [512] or one row per layer [10, 512]" in \
        tab.error("/api/directions", rows.read_bytes(), name=rows.name)
    huge = '{"%s": 1%s}' % (key, "0" * 400)   # an integer past any float: refused as a number, not a 500
    status, data, _ = tab.request("/api/render.png", photo=photo, face=0, space="WPlus", recipe=recipe, edit=huge)
    assert status == 400 and "finite numbers" in json.loads(data)["error"]


def test_the_servers_own_replies_speak_the_pages_json_and_headers(server):
    """HEAD works where GET does; http.server's own refusals (a request line or a header too long, a method not
    served) are the page's JSON with its security headers; a long refused parameter is not echoed back whole."""
    import http.client
    import socket

    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("HEAD", "/")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b"" and int(r.getheader("Content-Length")) > 100
    assert "default-src 'self'" in r.getheader("Content-Security-Policy")
    conn.close()

    def raw(request: bytes):
        with socket.create_connection((host, port), timeout=30) as sock:
            sock.sendall(request)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        return int(head.split()[1]), head.decode("latin-1"), json.loads(body)

    for request, status in ((b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
                            (b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431),
                            (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 501)):
        got, head, body = raw(request)
        assert got == status and "Content-Security-Policy: default-src 'self'" in head and body["error"], status
    message = Client(server).error("/api/job", job="x" * 20_000)
    assert len(message) < 600 and "characters)" in message


def test_the_command_refuses_an_encoder_or_head_that_does_not_fit(tmp_path, capsys):
    torch.manual_seed(0)
    G = randomize_(ls.Generator(z_dim=32, w_dim=32, resolution=16, mapping_layers=2, channels={4: 32, 8: 16, 16: 8}))
    path = tmp_path / "tiny.safetensors"
    ls.save_generator(G, path)
    message = cli_error(capsys, "app", "--generator", str(path), "--wplus-encoder", "default-wplus", "--port", "0")
    assert message.startswith("default-wplus does not fit the 16 px generator") and "train one" in message
    message = cli_error(capsys, "app", "--generator", str(path), "--sdic", "default-sdic", "--port", "0")
    assert "--sdic corrects a W+ encoder's codes: pass --wplus-encoder FILE too" in message


def test_a_taken_port_is_one_line_before_the_models_load(editor, server, capsys, monkeypatch):
    from experiments.app import serve
    port = server.server_address[1]
    monkeypatch.setattr(ls, "load_generator", lambda *a, **k: pytest.fail("the models loaded before the check"))
    assert cli_error(capsys, "app", "--port", str(port)).startswith(f"cannot listen on 127.0.0.1:{port} (")
    assert "choose another --port" in cli_error(capsys, "app", "--host", "no-such-host.invalid")
    monkeypatch.undo()
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port} .*choose another --port"):
        serve(editor, "127.0.0.1", port)   # taken between the check and the start: the same line


# ------------------------------------------------------------------------------------------ at 1024 px
@pytest.mark.slow
def test_the_editor_at_1024_px(astronaut):
    """A random config-f generator (1024 px, batch 1, CPU): the face aligned at 1024, one inversion step in W+
    and F/Z+, a slider render, SDIC's edit at its paper layer, the edit pasted back into the 512 px photo."""
    torch.manual_seed(0)
    G = randomize_(Generator(resolution=1024), seed=1024).eval()
    base = WPlusEncoder.for_generator(G).eval()
    head = SDIC.for_generator(G, width=0.25).eval()
    assert head.layers == ("b64.conv0",)
    editor = Editor(G, "stylegan2-config-f-1024.pt", default_sliders(G, components=2, samples=2000),
                    base_encoder=base, heads={"SDIC": head})
    photo = editor.find_faces(astronaut)
    assert photo.faces[0].shape == (3, 1024, 1024)
    for space in ("WPlus", "FZPlus"):
        result = editor.invert(photo.faces[0], space, editor.recipe("quick", 1))
        assert torch.isfinite(result.images).all() and result.images.shape == (1, 3, 1024, 1024)
        image = editor.render(space, result.code, {"ganspace_0": 2.0})
        assert image.shape == (3, 1024, 1024) and torch.isfinite(image).all()
        assert (image - result.images[0]).abs().mean() > 1e-4
    comp = editor.compensate("SDIC", photo.faces[0])
    edited = editor.render_head("SDIC", comp, {"ganspace_0": 2.0})
    assert edited.shape == (3, 1024, 1024) and torch.isfinite(edited).all()
    pasted = editor.pasted(photo, 0, edited)
    assert pasted.size == (512, 512)


# ------------------------------------------------------------------------------------------ in the browser
def _browser(downloads: Path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test drives Chromium with selenium "
                                                                 "(pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.skip(f"needs Debian's chromium and chromium-driver ({', '.join(missing)} missing; .ci/run installs "
                    "them: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,1750"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _start_app(samples: int, **env) -> tuple:
    """`latentspaces app --port 0` in its own process: (the process, the page's address)."""
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "app", "--port", "0", "--direction-samples",
                             str(samples), "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, cwd=Path(__file__).resolve().parents[1])
    lines = []
    for line in proc.stdout:
        lines.append(line)
        found = re.search(r"the editor is at (http://\S+/)", line)
        if found:
            break
    else:
        pytest.fail("latentspaces app did not start: " + "".join(lines[-5:]))
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()   # keep its pipe drained
    return proc, found.group(1)


@pytest.fixture
def app_command(tmp_path):
    """`latentspaces app --port 0` in its own process; yields the page's address."""
    proc, url = _start_app(5000)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_sigterm_stops_the_editor_and_removes_its_temporary_folder(tmp_path):
    proc, _ = _start_app(2000, TMPDIR=str(tmp_path))
    assert list(tmp_path.glob("latentspaces-app-*"))   # the sessions' folder exists
    proc.terminate()
    assert proc.wait(timeout=60) == 0 and not list(tmp_path.glob("latentspaces-app-*"))


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_in_headless_chromium(app_command, astronaut, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = _browser(downloads)
    try:
        wait = WebDriverWait(browser, 120)
        find = browser.find_element
        browser.get(app_command)
        wait.until(lambda b: find(By.ID, "model").text.startswith("generator default"))
        find(By.ID, "upload").send_keys(str(astronaut))
        wait.until(lambda b: find(By.ID, "face-step").is_displayed())
        assert "1 face" in find(By.ID, "photo-status").text
        find(By.ID, "steps").clear()
        find(By.ID, "steps").send_keys("25")
        find(By.ID, "invert").click()
        wait.until(lambda b: "done" in find(By.ID, "job-status").text)
        find(By.ID, "head").send_keys("SDIC")   # the same edit through SDIC, beside the spaces
        assert "25/25" in find(By.ID, "job-status").text
        tile = '#tiles img[data-tile="1"]'   # F/Z+ (W+ is tile 0)
        wait.until(lambda b: int(find(By.CSS_SELECTOR, tile).get_attribute("data-renders") or 0) >= 1)
        pixels = "const i = document.querySelector(arguments[0]); const c = document.createElement('canvas'); " \
                 "c.width = i.naturalWidth; c.height = i.naturalHeight; c.getContext('2d').drawImage(i, 0, 0); " \
                 "return c.toDataURL();"
        before = browser.execute_script(pixels, tile)
        renders = int(find(By.CSS_SELECTOR, tile).get_attribute("data-renders"))
        slider = find(By.CSS_SELECTOR, 'input[data-key="ganspace_0"]')
        slider.click()   # the middle: 0
        for _ in range(15):
            slider.send_keys(Keys.ARROW_RIGHT)
        wait.until(lambda b: find(By.CSS_SELECTOR, 'input[data-key="ganspace_0"]').get_attribute("value") == "1.5")
        wait.until(lambda b: int(find(By.CSS_SELECTOR, tile).get_attribute("data-renders")) > renders and
                   browser.execute_script("return document.querySelectorAll('.tile img[data-tile]').length") == 3)
        time.sleep(1.0)   # the last queued render lands
        assert browser.execute_script(pixels, tile) != before, "the edited face did not change"
        assert float(find(By.ID, "render-status").get_attribute("data-seconds")) > 0
        wait.until(lambda b: browser.execute_script("return document.getElementById('pasted').complete && "
                                                    "document.getElementById('pasted').naturalWidth") == 512)
        screenshot = os.environ.get("LATENTSPACES_APP_SCREENSHOT")
        if screenshot:
            browser.save_screenshot(screenshot)
        # drag: a handle and its target clicked on W+'s face, Drag; the faces follow, then the edited tile
        from selenium.webdriver.common.action_chains import ActionChains
        wait.until(lambda b: find(By.ID, "drag-step").is_displayed())
        find(By.ID, "drag-steps").clear()
        find(By.ID, "drag-steps").send_keys("12")
        canvas = find(By.CSS_SELECTOR, 'canvas.drag-canvas[data-space="WPlus"]')
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
        ActionChains(browser).move_to_element_with_offset(canvas, -8, 30).click().perform()   # from the centre
        ActionChains(browser).move_to_element_with_offset(canvas, 16, 30).click().perform()
        before_drag, renders = browser.execute_script(pixels, tile), int(find(By.CSS_SELECTOR, tile).get_attribute(
            "data-renders"))
        find(By.ID, "drag-start").click()
        wait.until(lambda b: find(By.ID, "drag-status").get_attribute("data-state") == "done")
        assert re.search(r"step \d+/12", find(By.ID, "drag-status").text)
        wait.until(lambda b: int(find(By.CSS_SELECTOR, tile).get_attribute("data-renders")) > renders)
        time.sleep(1.0)
        assert browser.execute_script(pixels, tile) != before_drag, "the dragged face did not change"
        assert not find(By.ID, "error").is_displayed()
        wait.until(lambda b: browser.execute_script("return document.getElementById('pasted').complete && "
                                                    "document.getElementById('pasted').naturalWidth") == 512)
        find(By.ID, "download-png").click()
        wait.until(lambda b: [p for p in downloads.iterdir() if p.suffix == ".png"])
        png = next(p for p in downloads.iterdir() if p.suffix == ".png")
        with Image.open(png) as downloaded:
            assert downloaded.format == "PNG" and downloaded.size == (512, 512)

        # a direction file added on the page becomes a slider of this tab
        from latentspaces.directions import Direction, save_directions
        smile = tmp_path / "smile.safetensors"
        save_directions(smile, [Direction(torch.randn(512, generator=torch.Generator().manual_seed(3)), "w",
                                          name="smile", method="interfacegan")])
        find(By.ID, "direction-file").send_keys(str(smile))
        wait.until(lambda b: "1 slider added" in find(By.ID, "direction-status").text)
        assert find(By.CSS_SELECTOR, 'input[aria-label="smile smile"]')

        # a second tab is a second editor: its photo and its cancelled inversion leave the first tab as it was
        first = browser.current_window_handle
        browser.switch_to.new_window("tab")
        browser.get(app_command)
        wait.until(lambda b: find(By.ID, "model").text.startswith("generator default"))
        assert not browser.find_elements(By.CSS_SELECTOR, 'input[aria-label="smile smile"]')
        find(By.ID, "use-heldout").click()
        wait.until(lambda b: "heldout_0.png: 64x64, 1 face" in find(By.ID, "photo-status").text)
        find(By.ID, "steps").clear()
        find(By.ID, "steps").send_keys("4000")
        find(By.ID, "invert").click()
        wait.until(lambda b: re.search(r"step [1-9]\d*/4000", find(By.ID, "job-status").text))
        assert not find(By.ID, "upload").is_enabled()   # the job's photo and face stay while it runs
        find(By.ID, "cancel").click()
        wait.until(lambda b: "cancelled" in find(By.ID, "job-status").text)
        assert find(By.ID, "upload").is_enabled() and find(By.ID, "invert").is_enabled()
        browser.switch_to.window(first)
        assert "astronaut.png" in find(By.ID, "photo-status").text
        renders = int(find(By.CSS_SELECTOR, tile).get_attribute("data-renders"))
        find(By.CSS_SELECTOR, 'input[data-key="ganspace_0"]').send_keys(Keys.ARROW_LEFT)
        wait.until(lambda b: int(find(By.CSS_SELECTOR, tile).get_attribute("data-renders")) > renders)
        assert not find(By.ID, "error").is_displayed()

        notes = tmp_path / "notes.png"
        notes.write_text("not a photo\n")
        find(By.ID, "upload").send_keys(str(notes))
        wait.until(lambda b: find(By.ID, "error").is_displayed())
        assert find(By.ID, "error").text == "notes.png: not an image file of the formats read here (PNG, JPEG, WEBP, BMP, GIF, TIFF)"
        find(By.ID, "upload").send_keys(str(astronaut))
        wait.until(lambda b: not find(By.ID, "error").is_displayed())
        wait.until(lambda b: "1 face" in find(By.ID, "photo-status").text)
    finally:
        browser.quit()
        shutil.rmtree(downloads, ignore_errors=True)
