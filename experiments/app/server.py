"""The editor's web server: Python's own threaded HTTP server, the page's files and a small JSON API.

Offline by construction: the page is three files of this package (no CDN, fonts or analytics; the
Content-Security-Policy lets it load nothing from elsewhere), and the server binds to 127.0.0.1 unless
told otherwise. Every request names its tab's session (`s=`), so tabs never share state.

The API (all answers JSON, except images and the bundle; a refused request answers 400 with
{"error": one line}, the message the command line prints for the same input):

    GET  /api/info                              the generator, spaces, recipes, sliders, heads
    POST /api/photo?s&name       body: file     faces found and aligned -> {photo, faces, candidates, ...}
    POST /api/directions?s&name&kind body: file  a direction file's sliders, for this tab -> {sliders}
    POST /api/heldout?s&index                   a held-out face of the default model as a photo
    GET  /api/face.png?s&photo&face             an aligned face
    POST /api/invert?s          body: JSON      {photo, face, spaces: [...], recipe, steps} -> {job}
    GET  /api/job?s&job&since                   state, step, speed, the loss points since `since`
    POST /api/cancel?s&job                      stop the job at its next step (a drag keeps where it got to)
    POST /api/drag?s            body: JSON      {photo, face, spaces, recipe, pairs: [[hx, hy, tx, ty], ...],
                                                 mask: [[x, y, r], ...], steps} -> {job}: drag the inversions
    GET  /api/drag.png?s&job                    a drag job's latest render (its points are in /api/job)
    POST /api/undrag?s&photo&face&space&recipe  the inversion as it was before its drags
    GET  /api/render.png?s&photo&face&space&recipe&edit   the edited face (head=H: through head H)
    GET  /api/paste.png?s&...                   the whole photo with the edited face pasted back
    GET  /api/bundle.zip?s&...                  codes, edit, alignment, photo, settings: replay with `edit`

`edit` is the sliders' values as JSON ({"ganspace_0": 1.5, ...}).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Dict, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from latentspaces.storage import atomic_path

from ..reporting import describe_error
from .editor import DRAG_STEPS, JOB_MAX_STEPS, Editor, face_png, file_sliders, finite_number, png_bytes
from .sessions import SessionStore

MAX_UPLOAD = 64 * 2**20          # bytes of one uploaded photo (larger: refused before it is read)
MAX_DIRECTIONS = 16 * 2**20      # bytes of one uploaded direction file
MAX_ERROR = 500                  # characters of an error message sent back (a refused parameter is cut, not echoed)
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/app.css": ("app.css", "text/css; charset=utf-8")}
CSP = ("default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; script-src 'self'; style-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class RequestError(ValueError):
    """A request the page should not have sent (a missing or malformed parameter, a body too large): answered
    with `status` (400 unless said) and the message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def upload_name(name: str) -> str:
    """An uploaded file's name made safe to store (no folders, no odd characters; the suffix kept)."""
    base = SAFE_NAME.sub("_", Path(name.replace("\\", "/")).name).strip("._") or "photo"
    return base[-100:]


class EditorServer(ThreadingHTTPServer):
    """The HTTP server of one `Editor`; each request on its own thread, sessions in `store`."""

    daemon_threads = True

    def __init__(self, address: Tuple[str, int], editor: Editor, folder: Optional[Path] = None, quiet: bool = True):
        self._tmp = None if folder is not None else tempfile.TemporaryDirectory(prefix="latentspaces-app-")
        self.folder = Path(folder if folder is not None else self._tmp.name)
        self.editor, self.quiet = editor, quiet
        self.store = SessionStore(self.folder)
        self.page = {path: (_static(name), kind) for path, (name, kind) in STATIC.items()}
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        """http://host:port/ of the page."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def server_close(self) -> None:
        """Close the socket and remove the sessions' files (when the server made their folder)."""
        super().server_close()
        if self._tmp is not None:
            self._tmp.cleanup()


class Handler(BaseHTTPRequestHandler):
    """Routes one request of the page (see the module docstring)."""

    server: EditorServer
    protocol_version = "HTTP/1.1"

    # -------------------------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args) -> None:   # noqa: A002 (the base class's name)
        if not self.server.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, kind: str, headers: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: object, status: int = 200) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _error(self, message: str, status: int = 400) -> None:
        if len(message) > MAX_ERROR:   # a request's own long parameter is not echoed back whole
            message = f"{message[:MAX_ERROR]}... ({len(message)} characters)"
        self._json({"error": message}, status)

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """http.server's own refusals (a request line or header too long, a method not served, a malformed
        request) in the page's one JSON shape, with the same security headers; the connection closes."""
        self.close_connection = True
        try:
            self._send(code, json.dumps({"error": message or HTTPStatus(code).phrase}).encode(), "application/json",
                       {"Connection": "close"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _query(self) -> Dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}

    def _body(self, limit: int) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise RequestError("the request has no Content-Length")
        n = int(length)
        if n > limit:
            self.close_connection = True   # the body is not read: the connection cannot be reused
            raise RequestError(f"the file is {n / 2**20:.1f} MiB; the editor takes files up to {limit / 2**20:g} MiB",
                               413)
        return self.rfile.read(n)

    def _dispatch(self, routes: dict) -> None:
        if self.headers.get("Content-Length", "0") != "0":   # a request with a body closes its connection: a body a
            self.close_connection = True                      # route leaves unread is never taken for the next request
        route = routes.get(urlsplit(self.path).path)
        if route is None:
            self._error(f"no such page: {urlsplit(self.path).path}", 404)
            return
        try:
            route(self, self._query())
        except (BrokenPipeError, ConnectionResetError):
            pass   # the page went away (a newer slider request replaced this one)
        except RequestError as e:
            self._error(str(e), e.status)
        except Exception as e:   # the same one line the command line prints; the server keeps serving
            self._error(describe_error(e, "see the terminal running `latentspaces app`"),
                        400 if isinstance(e, (ValueError, OSError)) else 500)
            if not isinstance(e, (ValueError, OSError)):   # unexpected: the traceback for the terminal
                traceback.print_exc()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in self.server.page:
            body, kind = self.server.page[path]
            self._send(200, body, kind)
            return
        self._dispatch(GET_ROUTES)

    def do_HEAD(self) -> None:
        """As GET, without the body (`_send` leaves it out)."""
        self.do_GET()

    def do_POST(self) -> None:
        self._dispatch(POST_ROUTES)

    # -------------------------------------------------------------------------------- parameters
    def _session(self, q: Dict[str, str]):
        return self.server.store.get(q.get("s"))

    @staticmethod
    def _int(q: Dict[str, str], key: str) -> int:
        value = q.get(key, "")
        if not re.fullmatch(r"-?\d{1,9}", value):
            raise RequestError(f"{key} must be a whole number, got {value!r}")
        return int(value)

    def _edit(self, q: Dict[str, str]) -> Dict[str, float]:
        try:
            edit = json.loads(q.get("edit") or "{}")
        except ValueError:
            raise RequestError("edit must be JSON: {\"slider\": alpha, ...}") from None
        if not isinstance(edit, dict) or not all(finite_number(v) for v in edit.values()):
            raise RequestError("edit must map slider keys to finite numbers")
        return {str(k): float(v) for k, v in edit.items()}

    def _target(self, q: Dict[str, str]):
        """(session, photo id, photo, face) of a request."""
        session = self._session(q)
        pid, face = q.get("photo", ""), self._int(q, "face")
        return session, pid, session.photo(pid, face), face

    def _edited(self, q: Dict[str, str]):
        """(photo, face, the edited face [3, R, R], server seconds) of a render request."""
        session, pid, photo, face = self._target(q)
        editor, alphas = self.server.editor, self._edit(q)
        t = time.perf_counter()
        head = q.get("head", "")
        if head:
            image = editor.render_head(head, session.compensation(editor, pid, face, head), alphas, session.sliders)
        else:
            space, recipe = q.get("space", ""), q.get("recipe", "")
            result = session.inversion(pid, face, space, recipe)
            image = editor.render(space, result.code, alphas, session.sliders, result.space_options)
        return session, photo, face, image, time.perf_counter() - t

    # -------------------------------------------------------------------------------- routes
    def info(self, q: Dict[str, str]) -> None:
        self._json(self.server.editor.describe())

    def _stored(self, session, prefix: str, name: str, limit: int, read):
        """(new id, read(path)) of the request's body stored as `name` in a new folder of the session; when `read`
        fails, the folder goes and the error names the file as the user knows it, not the server's folder."""
        data = self._body(limit)
        fid, folder = session.upload_folder(prefix)
        path = folder / name
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
        try:
            return fid, read(path)
        except Exception as e:
            shutil.rmtree(folder, ignore_errors=True)
            e.args = (str(e).replace(str(folder.resolve()) + "/", "").replace(str(folder) + "/", ""), *e.args[1:])
            raise

    def upload(self, q: Dict[str, str]) -> None:
        session = self._session(q)
        name = upload_name(q.get("name", "photo"))
        pid, photo = self._stored(session, "p", name, MAX_UPLOAD,
                                  lambda path: self.server.editor.find_faces(path, name))
        session.add_photo(pid, photo)
        self._json({"photo": pid, **photo.describe()})

    def directions(self, q: Dict[str, str]) -> None:
        session = self._session(q)
        kind = q.get("kind") or None
        if kind not in (None, "z", "w"):
            raise RequestError(f"kind must be z or w (the kind of a foreign .pt file), got {kind!r}")

        def read(path: Path):
            sliders = file_sliders(self.server.editor.G, path, path.parent.name, kind)
            session.add_sliders(sliders)
            return sliders
        _, sliders = self._stored(session, "d", upload_name(q.get("name", "directions.safetensors")), MAX_DIRECTIONS,
                                  read)
        self._json({"sliders": [s.describe() for s in sliders]})

    def heldout(self, q: Dict[str, str]) -> None:
        session = self._session(q)
        photo = self.server.editor.heldout_face(self._int(q, "index"))
        pid, _ = session.upload_folder()
        session.add_photo(pid, photo)
        self._json({"photo": pid, **photo.describe()})

    def face(self, q: Dict[str, str]) -> None:
        _, _, photo, face = self._target(q)
        self._send(200, face_png(photo.faces[face]), "image/png")

    def _request_json(self, what: str, limit: int = 2**16) -> dict:
        try:
            request = json.loads(self._body(limit) or b"{}")
        except ValueError:
            raise RequestError(f"the {what} request must be JSON") from None
        if not isinstance(request, dict):
            raise RequestError(f"the {what} request must be a JSON object")
        return request

    def invert(self, q: Dict[str, str]) -> None:
        session = self._session(q)
        request = self._request_json("invert")
        spaces = request.get("spaces")
        editor = self.server.editor
        if not isinstance(spaces, list) or not spaces or not all(isinstance(s, str) for s in spaces):
            raise RequestError("choose at least one space to invert into")
        for name in spaces:
            editor.space(name)   # an unknown name: ValueError listing the spaces
        face = request.get("face")
        if isinstance(face, bool) or not isinstance(face, int):
            raise RequestError(f"face must be a whole number, got {face!r}")
        recipe = editor.recipe(str(request.get("recipe", "")), request.get("steps"))
        job = session.start_job(editor, str(request.get("photo", "")), face, spaces, recipe)
        self._json({"job": job.id, "recipe": recipe.name})

    def drag(self, q: Dict[str, str]) -> None:
        session = self._session(q)
        request = self._request_json("drag", 2**20)   # a mask of many brush strokes
        spaces, face, steps = request.get("spaces"), request.get("face"), request.get("steps", DRAG_STEPS)
        if not isinstance(spaces, list) or not spaces or not all(isinstance(s, str) for s in spaces):
            raise RequestError("choose at least one inverted space to drag")
        if isinstance(face, bool) or not isinstance(face, int):
            raise RequestError(f"face must be a whole number, got {face!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= JOB_MAX_STEPS:
            raise RequestError(f"drag steps must be a whole number in 0 .. {JOB_MAX_STEPS}")
        job = session.start_drag(self.server.editor, str(request.get("photo", "")), face, spaces,
                                 str(request.get("recipe", "")), request.get("pairs"), request.get("mask") or [], steps)
        self._json({"job": job.id})

    def drag_frame(self, q: Dict[str, str]) -> None:
        job = self._session(q).job(q.get("job", ""))
        if job.frame is None:
            raise RequestError("the drag has not rendered yet")
        self._send(200, job.frame, "image/png")

    def undrag(self, q: Dict[str, str]) -> None:
        session, pid, _, face = self._target(q)
        self._json({"undragged": session.undrag(pid, face, q.get("space", ""), q.get("recipe", ""))})

    def job(self, q: Dict[str, str]) -> None:
        job = self._session(q).job(q.get("job", ""))
        try:
            since = json.loads(q.get("since") or "{}")
        except ValueError:
            raise RequestError("since must be JSON: {\"space\": points}") from None
        if not isinstance(since, dict):
            raise RequestError("since must be a JSON object")
        self._json(job.describe({str(k): int(v) for k, v in since.items() if isinstance(v, int)}))

    def cancel(self, q: Dict[str, str]) -> None:
        job = self._session(q).job(q.get("job", ""))
        job.cancel_requested.set()
        self._json({"job": job.id, "state": job.state})

    def render(self, q: Dict[str, str]) -> None:
        _, photo, _, image, seconds = self._edited(q)
        self._send(200, face_png(image, photo.gray), "image/png", {"X-Render-Seconds": f"{seconds:.4f}"})

    def paste(self, q: Dict[str, str]) -> None:
        _, photo, face, image, _ = self._edited(q)
        pasted = self.server.editor.pasted(photo, face, image)
        stem = Path(photo.name).stem
        self._send(200, png_bytes(pasted), "image/png",
                   {"Content-Disposition": f'attachment; filename="{stem}_edited.png"'})

    def bundle(self, q: Dict[str, str]) -> None:
        session, pid, photo, face = self._target(q)
        space, recipe = q.get("space", ""), q.get("recipe", "")
        result = session.inversion(pid, face, space, recipe)
        body = self.server.editor.bundle(photo, face, space, result, self._edit(q), session.recipes[recipe],
                                         extra=session.sliders)
        stem = Path(photo.name).stem
        self._send(200, body, "application/zip", {"Content-Disposition": f'attachment; filename="{stem}_edit.zip"'})


GET_ROUTES = {"/api/info": Handler.info, "/api/face.png": Handler.face, "/api/job": Handler.job,
              "/api/render.png": Handler.render, "/api/paste.png": Handler.paste, "/api/bundle.zip": Handler.bundle,
              "/api/drag.png": Handler.drag_frame}
POST_ROUTES = {"/api/photo": Handler.upload, "/api/directions": Handler.directions, "/api/heldout": Handler.heldout,
               "/api/invert": Handler.invert, "/api/cancel": Handler.cancel, "/api/drag": Handler.drag,
               "/api/undrag": Handler.undrag}


def _unusable(host: str, port: int, e: OSError) -> OSError:
    return OSError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port (0: any free port) "
                   "or --host")


def check_address(host: str, port: int) -> None:
    """Refuse, in one line, an address the server could not listen on (a port taken, a host this machine does not
    have), before the models load: bound once and released (`serve` says the same if it is taken meanwhile)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the server binds
            probe.bind((host, port))
    except OSError as e:   # socket.gaierror is one
        raise _unusable(host, port, e) from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(editor: Editor, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = False) -> None:
    """Serve the editor until Ctrl-C or SIGTERM (port 0: any free port); either removes its temporary folder."""
    try:
        server = EditorServer((host, port), editor)
    except OSError as e:   # the port taken, or an address this machine does not have
        raise _unusable(host, port, e) from None
    print(f"latentspaces app: the editor is at {server.url} ({editor.generator_name}, {editor.G.resolution} px); "
          "Ctrl-C stops it", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"latentspaces app: warning: bound to {host}: anyone who can reach this machine can use the editor",
              file=sys.stderr, flush=True)
    if open_browser:
        webbrowser.open(server.url)
    if threading.current_thread() is threading.main_thread():   # SIGTERM stops it as Ctrl-C does: temp folder removed
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


__all__ = ["EditorServer", "Handler", "MAX_UPLOAD", "RequestError", "check_address", "serve", "upload_name"]
