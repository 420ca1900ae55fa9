"""`latentspaces app`: an editor in the browser, on this machine, offline.

Upload a photo (or pick a held-out face), choose the face, invert it into one or more latent spaces with
a live loss curve, move direction sliders and watch every space's edit (and the same edit through a
compensation head) re-render, then download the photo with the edited face pasted back, or a bundle
that replays the edit with `latentspaces edit`. The computations are `Editor`'s (the library's own
calls); the page and its JSON API are `EditorServer`'s (Python's standard HTTP server, no extra
packages). Open it with `latentspaces app` and go to http://127.0.0.1:7860/.
"""

from .editor import APP_RECIPES, Editor, Photo, Slider, default_sliders
from .server import EditorServer, serve
from .sessions import Session, SessionStore

__all__ = ["APP_RECIPES", "Editor", "EditorServer", "Photo", "Session", "SessionStore", "Slider", "default_sliders",
           "serve"]
