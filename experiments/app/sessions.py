"""Per-tab state of the editor: the photos a tab uploaded, its inversions and head corrections, its jobs.

Each browser tab names its own session (a random id the page makes and keeps for the tab's life), so two
tabs never see each other's photos, codes or jobs. A session holds everything computed for it, keyed so a
slider move only re-renders: inversions by (photo, face, space, recipe), head corrections by (photo,
face, head). Limits keep a long-running server's memory bounded: the oldest sessions and photos are
forgotten first (their files removed), and what they held is recomputed if asked for again.

A job is one inversion request (one face into one or more spaces) or one drag request (the face's
inversions in one or more spaces dragged by the same handle/target pairs), run on its own thread. It reports
its step, the loss of every step so far and its speed (a drag also its tracked points and its latest image);
`cancel` stops it at the next step (the spaces it finished stay cached; a stopped drag keeps where it got to).
A dragged inversion replaces the cached one, remembering the code it started from and every drag, so edits,
paste-back and the replay bundle use the dragged face and `undrag` restores the inversion.
"""

from __future__ import annotations

import itertools
import math
import re
import shutil
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from optimizers import InversionRecipe, InversionResult

from ..reporting import describe_error
from .editor import Cancelled, Editor, Photo, Slider, check_pairs, check_strokes, face_png

MAX_SESSIONS = 16        # tabs remembered at once (the least recently used is forgotten)
MAX_PHOTOS = 8           # photos one tab keeps (the oldest is forgotten)
MAX_TAB_SLIDERS = 60     # sliders a tab may add from its direction files
MAX_JOBS = 20            # finished jobs one tab keeps (their state; the inversions stay cached)
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")   # what the page sends: a uuid4 without dashes


@dataclass
class Job:
    """One inversion request: a face into `spaces`, one after another, on its own thread."""

    id: str
    photo: str
    face: int
    spaces: Tuple[str, ...]
    recipe: InversionRecipe
    state: str = "queued"              # queued -> running -> done / cancelled / error
    space: str = ""                    # the space being inverted
    step: int = 0                      # steps done in `space`
    losses: Dict[str, List[float]] = field(default_factory=dict)   # space -> the loss of each step
    seconds_per_step: float = math.nan
    error: str = ""
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    kind: str = "invert"               # 'invert' or 'drag'
    steps: int = 0                     # a drag's step limit (an inversion's is its recipe's)
    points: List[List[float]] = field(default_factory=list)     # a drag: the tracked handles (x, y) now
    distances: List[float] = field(default_factory=list)        # ... and their distances to the targets, px
    frame: Optional[bytes] = None      # a drag: the PNG of its latest render (GET /api/drag.png)
    frames: int = 0                    # renders so far (the page asks for a frame when this grows)

    def describe(self, since: Dict[str, int]) -> dict:
        """The job as the page's JSON; `since` (space -> points the page has) keeps the loss curves incremental."""
        return {"id": self.id, "kind": self.kind, "state": self.state, "space": self.space, "step": self.step,
                "steps": self.steps if self.kind == "drag" else self.recipe.steps, "spaces": list(self.spaces),
                "error": self.error, "points": self.points, "distances": self.distances, "frames": self.frames,
                "seconds_per_step": None if math.isnan(self.seconds_per_step) else self.seconds_per_step,
                "losses": {s: v[since.get(s, 0):] for s, v in list(self.losses.items())}}   # copied: the job adds


class Session:
    """One tab's photos, results and jobs (see the module docstring)."""

    def __init__(self, sid: str, folder: Path):
        self.id, self.folder = sid, folder
        self.photos: "OrderedDict[str, Photo]" = OrderedDict()
        self.inversions: Dict[Tuple[str, int, str, str], InversionResult] = {}
        self.compensations: Dict[Tuple[str, int, str], object] = {}
        self.recipes: Dict[str, InversionRecipe] = {}     # the recipes of the inversions, by name
        self.sliders: Dict[str, Slider] = {}              # the tab's own sliders (its uploaded direction files)
        self.jobs: Dict[str, Job] = {}
        self.lock = threading.Lock()
        self._ids = itertools.count()

    # ------------------------------------------------------------------------------------------ photos
    def upload_folder(self, prefix: str = "p") -> Tuple[str, Path]:
        """A new id ('p3' for a photo, 'd4' for a direction file) and an empty folder for its file."""
        pid = f"{prefix}{next(self._ids)}"
        folder = self.folder / pid
        folder.mkdir(parents=True)
        return pid, folder

    def add_photo(self, pid: str, photo: Photo) -> None:
        """Keep `photo` under `pid`, forgetting the oldest photo beyond MAX_PHOTOS (and all computed for it)."""
        with self.lock:
            self.photos[pid] = photo
            while len(self.photos) > MAX_PHOTOS:
                old, _ = self.photos.popitem(last=False)
                self.inversions = {k: v for k, v in self.inversions.items() if k[0] != old}
                self.compensations = {k: v for k, v in self.compensations.items() if k[0] != old}
                shutil.rmtree(self.folder / old, ignore_errors=True)

    def add_sliders(self, sliders: Sequence[Slider]) -> None:
        """Keep a direction file's sliders for this tab (a tab keeps MAX_TAB_SLIDERS; more are refused)."""
        with self.lock:
            if len(self.sliders) + len(sliders) > MAX_TAB_SLIDERS:
                raise ValueError(f"this tab has {len(self.sliders)} sliders of its own; {len(sliders)} more would pass "
                                 f"the limit of {MAX_TAB_SLIDERS} (open a new tab)")
            self.sliders.update({s.key: s for s in sliders})

    def photo(self, pid: str, face: int) -> Photo:
        """The photo `pid`, checked to have face `face` (ValueError naming what exists otherwise)."""
        photo = self.photos.get(pid)
        if photo is None:
            raise ValueError(f"no photo {pid!r} in this tab (upload it again: a tab keeps its last {MAX_PHOTOS})")
        if not 0 <= face < len(photo.faces):
            raise ValueError(f"{photo.name} has faces 0 .. {len(photo.faces) - 1}, not {face}")
        return photo

    # ------------------------------------------------------------------------------------------ results
    def inversion(self, pid: str, face: int, space: str, recipe: str) -> InversionResult:
        """The finished inversion of (photo, face, space, recipe), or ValueError saying to invert first."""
        result = self.inversions.get((pid, face, space, recipe))
        if result is None:
            raise ValueError(f"face {face} of photo {pid} is not inverted into {space} with recipe {recipe!r} "
                             "yet: press Invert")
        return result

    def compensation(self, editor: Editor, pid: str, face: int, head: str):
        """The head's correction of (photo, face), computed on first use and kept."""
        key = (pid, face, head)
        if key not in self.compensations:
            comp = editor.compensate(head, self.photo(pid, face).faces[face])
            with self.lock:
                self.compensations[key] = comp
        return self.compensations[key]

    # ------------------------------------------------------------------------------------------ jobs
    def start_job(self, editor: Editor, pid: str, face: int, spaces: Sequence[str],
                  recipe: InversionRecipe) -> Job:
        """Invert face `face` of photo `pid` into each of `spaces` on a new thread (a space already inverted
        with this recipe is taken from the cache). One job per tab at a time."""
        photo = self.photo(pid, face)
        with self.lock:
            running = [j for j in self.jobs.values() if j.state in ("queued", "running")]
            if running:
                raise ValueError("an inversion is already running in this tab: wait for it or cancel it")
            job = Job(id=uuid.uuid4().hex[:12], photo=pid, face=face, spaces=tuple(spaces), recipe=recipe)
            self.recipes[recipe.name] = recipe
            for old in list(self.jobs)[:-MAX_JOBS]:   # finished jobs beyond the last few are forgotten
                del self.jobs[old]
            self.jobs[job.id] = job
        thread = threading.Thread(target=self._run, args=(editor, job, photo), daemon=True, name=f"invert-{job.id}")
        thread.start()
        return job

    def start_drag(self, editor: Editor, pid: str, face: int, spaces: Sequence[str], recipe: str,
                   pairs: list, strokes: list, steps: int) -> Job:
        """Drag the inversions of face `face` of photo `pid` (recipe `recipe`) in each of `spaces`, one after another,
        on a new thread; checked before it starts (every space inverted, the pairs and strokes well formed)."""
        self.photo(pid, face)
        for name in spaces:
            self.inversion(pid, face, name, recipe)
        check_pairs(pairs, editor.G.resolution)        # refused before a job starts; the mask is drawn once, by the drag
        check_strokes(strokes, editor.G.resolution)
        with self.lock:
            if any(j.state in ("queued", "running") for j in self.jobs.values()):
                raise ValueError("a job is already running in this tab: wait for it or stop it")
            job = Job(id=uuid.uuid4().hex[:12], photo=pid, face=face, spaces=tuple(spaces), recipe=self.recipes[recipe],
                      kind="drag", steps=steps)
            for old in list(self.jobs)[:-MAX_JOBS]:
                del self.jobs[old]
            self.jobs[job.id] = job
        thread = threading.Thread(target=self._drag, args=(editor, job, recipe, pairs, strokes), daemon=True,
                                  name=f"drag-{job.id}")
        thread.start()
        return job

    def _drag(self, editor: Editor, job: Job, recipe: str, pairs: list, strokes: list) -> None:
        try:
            with editor.inversion_turn:
                job.state = "running"
                for name in job.spaces:
                    if job.cancel_requested.is_set():
                        break
                    key = (job.photo, job.face, name, recipe)
                    job.space, job.step, job.losses[name] = name, 0, []
                    before = self.inversions[key]
                    start = time.perf_counter()

                    def on_step(s, job=job) -> bool:
                        job.step, job.points = s.step, s.points.tolist()
                        job.distances = s.distances.tolist()
                        job.frame, job.frames = face_png(s.image[0]), job.frames + 1
                        if s.loss is not None:
                            job.losses[job.space].append(s.loss)
                        if s.step:
                            job.seconds_per_step = (time.perf_counter() - start) / s.step
                        return job.cancel_requested.is_set()
                    res = editor.drag(name, before, pairs, strokes, job.steps, on_step)
                    record = {"pairs": pairs, "strokes": strokes, "steps": res.steps, "reached": res.reached}
                    meta = {**before.meta, "undragged": before.meta.get("undragged", before),
                            "drags": [*before.meta.get("drags", []), record]}
                    dragged = InversionResult(code=res.code, images=res.image, history=before.history,
                                              seconds=before.seconds + res.seconds, space=before.space,
                                              steps=before.steps, meta=meta, space_options=before.space_options)
                    with self.lock:
                        self.inversions[key] = dragged
            job.state = "cancelled" if job.cancel_requested.is_set() else "done"
        except Exception as e:
            job.error, job.state = describe_error(e, "see the terminal running `latentspaces app`"), "error"
            if not isinstance(e, (ValueError, OSError)):
                traceback.print_exc()

    def undrag(self, pid: str, face: int, space: str, recipe: str) -> bool:
        """Restore the inversion of (photo, face, space, recipe) as it was before its drags; whether it had any."""
        result = self.inversion(pid, face, space, recipe)
        if "undragged" not in result.meta:
            return False
        with self.lock:
            self.inversions[(pid, face, space, recipe)] = result.meta["undragged"]
        return True

    def _run(self, editor: Editor, job: Job, photo: Photo) -> None:
        try:
            with editor.inversion_turn:          # queued until the CPU is free of other tabs' inversions
                job.state = "running"
                for name in job.spaces:
                    if job.cancel_requested.is_set():   # cancelled while queued, or between two spaces
                        raise Cancelled()
                    key = (job.photo, job.face, name, job.recipe.name)
                    job.space, job.step = name, 0
                    if key in self.inversions:   # cached: shown whole at once
                        job.losses[name] = self.inversions[key].history["loss"][:, 0].tolist()
                        job.step = job.recipe.steps
                        continue
                    job.losses[name] = []
                    result = editor.invert(photo.faces[job.face], name, job.recipe, self._reporter(job))
                    with self.lock:
                        self.inversions[key] = result
            job.state = "done"
        except Cancelled:
            job.state = "cancelled"
        except Exception as e:   # shown on the page, one line, as the command line would say it
            job.error, job.state = describe_error(e, "see the terminal running `latentspaces app`"), "error"
            if not isinstance(e, (ValueError, OSError)):   # unexpected: the traceback for the terminal
                traceback.print_exc()

    @staticmethod
    def _reporter(job: Job) -> Callable:
        start = time.perf_counter()

        def on_step(done: int, terms: dict) -> None:
            job.losses[job.space].append(float(terms["loss"][0]))
            job.step = done
            job.seconds_per_step = (time.perf_counter() - start) / done
            if job.cancel_requested.is_set():
                raise Cancelled()
        return on_step

    def job(self, jid: str) -> Job:
        """The job `jid` of this tab."""
        if jid not in self.jobs:
            raise ValueError(f"no job {jid!r} in this tab")
        return self.jobs[jid]


class SessionStore:
    """The sessions of all tabs, by id, least recently used forgotten beyond MAX_SESSIONS."""

    def __init__(self, folder: Path, limit: int = MAX_SESSIONS):
        self.folder, self.limit = folder, limit
        self._sessions: "OrderedDict[str, Session]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sid: Optional[str]) -> Session:
        """The session `sid` (made on first use); ValueError for an id that is not the page's kind."""
        if not sid or not SESSION_ID.match(sid):
            raise ValueError("every request names its tab's session: s=<32 hex digits> (reload the page)")
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                session = self._sessions[sid] = Session(sid, self.folder / sid)
            self._sessions.move_to_end(sid)
            while len(self._sessions) > self.limit:
                old_id, old = self._sessions.popitem(last=False)
                for job in old.jobs.values():
                    job.cancel_requested.set()
                shutil.rmtree(old.folder, ignore_errors=True)
            return session


__all__ = ["Job", "MAX_PHOTOS", "MAX_SESSIONS", "Session", "SessionStore"]
