"""The editor's computations, apart from the web page: one generator, its spaces, its sliders and heads.

`Editor` does what the page asks, each step the library's own call: faces found and aligned
(`latentspaces.align.FaceAligner.search_file`), a face inverted into a space (`HybridInverter.from_recipe`,
with a per-step callback for the live progress and the cancel), an edit rendered (`LatentSpace.edit`
then `synthesize`), the same edit through a compensation head (`head.compensate` once, `head.edit` per
move: "High-Fidelity GAN Inversion for Image Attribute Editing", Sec. 3.2, edits the W+ codes and keeps
the head's correction), the edited face pasted back (`latentspaces.align.paste_back_`) and a replay
bundle written (the codes, the edit as one direction file, the alignment; `latentspaces edit` replays it).

The sliders. Each slider is one direction family (GANSpace component k, SeFa k, random k, a direction of
a loaded file), holding a vector per kind it exists in ('z' edits Z, Z+, F/Z, F/Z+; 'w' edits W, W+, P_N,
F/W+ and the heads; 's' edits S). A page's slider values make one edit: the direction
sum_i alpha_i d_i, applied with alpha 1 (`edit_direction`). With one slider moved this is exactly
`edit(code, d, alpha)` (alpha * d is the same product either way); with several, it is the move along
their sum (on the Z sphere: one retraction along the sum, not one per slider). The bundle stores that
sum, so `latentspaces edit --alphas=1` renders the page's image bit for bit.

Thread safety: the generator, encoders and heads are only read (eval mode, no gradients to their
weights), so renders of several tabs run at once; inversions take turns (`Editor.inversion_turn`), each
with its own code and optimizer.
"""

from __future__ import annotations

import io
import json
import math
import shlex
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from PIL import Image

import latentspaces as ls
from latentspaces import assets
from latentspaces.align import FaceAligner, FaceSearch, FaceTransform, paste_back_, save_alignment
from latentspaces.drag import DragResult, DragSettings, DragStep, drag
from latentspaces.directions import Direction, ganspace, load_directions, random_directions, save_directions, sefa
from latentspaces.fingerprints import generator_fingerprint
from latentspaces.images import is_gray_batch, read_photo, to_gray, to_uint8
from latentspaces.interfaces import CodeInitializer, PerceptualDistance
from latentspaces.metrics.perceptual import make_perceptual
from latentspaces.spaces import SPACE_LABELS, SPACE_ORDER, build_space
from encoders.heads import compensate, edit_compensated
from optimizers import QUICK, RECIPES, HybridInverter, InversionRecipe, InversionResult

SLIDER_LIMIT = 5.0          # |alpha| of one slider (GANSpace directions are scaled to one std of their axis)
JOB_MAX_STEPS = 5000        # inversion steps one page request may ask for (a tab's job budget, below the
                            # library's optimizers.MAX_STEPS: a stranger's request must not hold the CPU for hours)
APP_RECIPES = ("quick", "paper")   # the recipes the page offers (steps adjustable)
EDIT_NAME = "app_edit"      # the direction name of a bundle's edit (and of the replayed file's name)
MAX_FILE_SLIDERS = 20       # sliders one direction file adds (a GANSpace dict may hold 80 components)
SLIDER_COMPONENTS = 5       # GANSpace components the page shows as sliders, per kind
SLIDER_SAMPLES = 20_000     # W samples of the sliders' GANSpace PCA (seconds on a CPU: the page starts fast)
MAX_DRAG_PAIRS = 68         # handle/target pairs of one drag (DragGAN's study drags all 68 landmarks)
MAX_STROKES = 4000          # mask brush strokes of one drag
DRAG_STEPS = 100            # the page's default drag steps (a job may ask for up to JOB_MAX_STEPS)
HELDOUT_SHOWN = 16          # held-out faces the page offers (the default model's; the first of its 64)


class Cancelled(Exception):
    """Raised inside an inversion's step callback when the user cancels it."""


@dataclass
class Slider:
    """One direction family the page shows as a slider: its vector in each kind it exists in."""

    key: str                          # stable id on the page ('ganspace_0', 'file0_3')
    label: str                        # what the page shows ('GANSpace 0')
    by_kind: Dict[str, Direction]     # 'z' / 'w' / 's' -> the direction of that kind

    def describe(self) -> dict:
        """The slider as the page's JSON: key, label, the kinds it edits."""
        return {"key": self.key, "label": self.label, "kinds": sorted(self.by_kind)}


@dataclass
class Photo:
    """An uploaded photo (or a held-out face) and the faces found in it."""

    name: str                                  # the file name as uploaded ('astronaut.png')
    path: Optional[Path]                       # the stored upload (None for a held-out face)
    faces: List[torch.Tensor]                  # aligned faces [3, R, R] in [-1, 1], rank order
    transforms: List[Optional[FaceTransform]]  # each face's way back into the photo (None: the face is the photo)
    candidates: List[str] = field(default_factory=list)   # one line per detection, with its verdict
    gray: bool = False
    size: Tuple[int, int] = (0, 0)             # width, height of the photo, px

    def describe(self) -> dict:
        """The photo as the page's JSON (no pixels)."""
        return {"name": self.name, "faces": len(self.faces), "candidates": self.candidates, "gray": self.gray,
                "width": self.size[0], "height": self.size[1]}


def _sum_directions(parts: Sequence[Tuple[Direction, float]], kind: str) -> Direction:
    """sum_i alpha_i d_i as one direction of `kind`; the parts must edit the same layers with vectors of one shape."""
    first = parts[0][0]
    for d, _ in parts[1:]:
        if d.layers != first.layers or d.vector.shape != first.vector.shape:
            raise ValueError(f"sliders {first.name} and {d.name} edit different layers ({first.layers or 'all'} vs "
                             f"{d.layers or 'all'}); move one of them back to 0")
    vector = sum(alpha * d.vector.float() for d, alpha in parts)
    return Direction(vector, kind, layers=first.layers, name=EDIT_NAME, method="sum of sliders",
                     meta={"sliders": {d.name: alpha for d, alpha in parts}})


class Editor:
    """One generator's editing session state that all tabs share: spaces, sliders, encoders, heads.

        editor = Editor.for_generator(G, "default")
        photo = editor.find_faces(Path("photo.jpg"))
        res = editor.invert(photo.faces[0], "FZPlus", QUICK)
        image = editor.render("FZPlus", res.code, {"ganspace_0": 2.0})    # [3, R, R] in [-1, 1]
    """

    def __init__(
        self,
        G: ls.Generator,                                  # the generator, eval mode
        generator_name: str,                              # as `--generator` takes it ('default' or a file)
        sliders: Sequence[Slider],                        # the directions the page offers
        encoders: Optional[Mapping[str, CodeInitializer]] = None,  # space name -> the paper recipe's start
        base_encoder: Optional[torch.nn.Module] = None,   # the W+ encoder the heads correct
        heads: Optional[Mapping[str, torch.nn.Module]] = None,    # 'SDIC', 'HFGI', ... -> a head for G
        pn_samples: int = 100_000,                        # W samples of the P_N statistics (P_N spaces)
        device: str = "cpu",
    ):
        self.G = G.eval().requires_grad_(False)
        self.generator_name, self.device = generator_name, device
        self.sliders = {s.key: s for s in sliders}
        self.encoders = dict(encoders or {})
        self.base_encoder = base_encoder
        self.heads = dict(heads or {})
        if self.heads and base_encoder is None:
            raise ValueError("compensation heads correct a W+ encoder's reconstruction: pass base_encoder")
        self.pn_samples = pn_samples
        self.aligner = FaceAligner(size=G.resolution)
        self.fingerprint = generator_fingerprint(G)
        self._spaces: Dict[tuple, ls.LatentSpace] = {}          # (name, options) -> space
        self._stats: Dict[str, Optional[ls.PNStats]] = {}        # name -> its P_N statistics (None: uses none)
        self._perceptual: Dict[str, Optional[PerceptualDistance]] = {}
        self._lock = threading.Lock()                 # guards the lazily built spaces and distances
        self.inversion_turn = threading.Lock()        # one inversion at a time (they share the CPU)
        self.render_seconds: Optional[float] = None   # the last render's time (shown on the page)

    # ---------------------------------------------------------------------------------------- set-up
    @classmethod
    def for_generator(cls, G: ls.Generator, generator_name: str, direction_files: Sequence[Path] = (),
                      components: int = SLIDER_COMPONENTS, samples: int = SLIDER_SAMPLES, device: str = "cpu",
                      encoders: Optional[Mapping[str, CodeInitializer]] = None,
                      base_encoder: Optional[torch.nn.Module] = None,
                      heads: Optional[Mapping[str, torch.nn.Module]] = None, pn_samples: int = 100_000) -> "Editor":
        """An editor with the usual sliders: `components` GANSpace components (both kinds, from `samples` W
        samples, scaled by their axes' std), 3 SeFa directions (W), 2 random directions of each kind, and every
        direction of `direction_files` (e.g. InterfaceGAN's, written by `latentspaces.directions.save_directions`)."""
        return cls(G, generator_name, default_sliders(G, components, samples, direction_files), encoders=encoders,
                   base_encoder=base_encoder, heads=heads, pn_samples=pn_samples, device=device)

    def warm_up(self) -> float:
        """Render W+'s mean code once (the first call of a process is slower) and return the time of a second
        render, s: the page states it, so a user knows what a slider move costs on this machine."""
        space = self.space("WPlus")
        code = space.mean(1)
        for _ in range(2):
            t = time.perf_counter()
            with torch.no_grad():
                space.synthesize(code)
            self.render_seconds = time.perf_counter() - t
        return self.render_seconds

    def space(self, name: str, options: Optional[Mapping[str, object]] = None) -> ls.LatentSpace:
        """The space `name` of this generator with `options` (a recipe's truncation, `LatentSpace.options`; None:
        none), built once per options; P_N spaces fit or read their statistics once."""
        if name not in SPACE_ORDER:
            raise ValueError(f"unknown space {name!r}; the spaces are {', '.join(SPACE_ORDER)}")
        key = (name, tuple(sorted((options or {}).items())))
        built = self._spaces.get(key)
        if built is not None:   # no lock once built: a render never waits for another space's P_N fit
            return built
        with self._lock:
            if key not in self._spaces:
                if name not in self._stats:
                    uses = ls.SPACES[name].uses_pn_stats
                    self._stats[name] = ls.PNStats.fit(self.G, n_samples=self.pn_samples) if uses else None
                self._spaces[key] = build_space(name, self.G, self._stats[name], **(options or {}))
            return self._spaces[key]

    def perceptual(self, recipe: InversionRecipe) -> Optional[PerceptualDistance]:
        """The distance the recipe weighs (None when it weighs none), made once per name."""
        if recipe.lambda_per == 0:
            return None
        with self._lock:
            if recipe.perceptual not in self._perceptual:
                self._perceptual[recipe.perceptual] = make_perceptual(recipe.perceptual, self.G.resolution, self.device)
            return self._perceptual[recipe.perceptual]

    def describe(self) -> dict:
        """What the page needs to draw itself: generator, spaces (with their edit kinds), recipes, sliders, heads."""
        return {
            "generator": self.generator_name, "resolution": self.G.resolution,
            "spaces": [{"key": n, "label": SPACE_LABELS[n], "kind": ls.SPACES[n].kind,
                        "encoder": n in self.encoders} for n in SPACE_ORDER],
            "recipes": {n: {"steps": RECIPES[n].steps, "describe": RECIPES[n].describe()} for n in APP_RECIPES},
            "sliders": [s.describe() for s in self.sliders.values()], "slider_limit": SLIDER_LIMIT,
            "heads": sorted(self.heads), "heldout": self.heldout_offered,
            "max_steps": JOB_MAX_STEPS, "render_seconds": self.render_seconds, "drag_steps": DRAG_STEPS,
            "max_drag_pairs": MAX_DRAG_PAIRS,
        }

    # ---------------------------------------------------------------------------------------- photos
    def find_faces(self, path: Path, name: Optional[str] = None) -> Photo:
        """Every face of the image file at `path`, aligned at the generator's resolution (FaceNotFoundError,
        CheckpointError for a file that is not a readable image, one line each, naming the file)."""
        found: FaceSearch = self.aligner.search_file(path)
        photo_size = found.faces[0].transform.photo_size
        return Photo(name=name or path.name, path=path, faces=[f.image for f in found.faces],
                     transforms=[f.transform for f in found.faces], candidates=[c.describe() for c in found.candidates],
                     gray=found.gray, size=(int(photo_size[0]), int(photo_size[1])))

    @property
    def heldout_offered(self) -> int:
        """Held-out faces the page offers: the first HELDOUT_SHOWN of the shipped 64 px set, none at other sizes."""
        return HELDOUT_SHOWN if self.G.resolution == 64 else 0

    def heldout_face(self, index: int) -> Photo:
        """Held-out face `index` of the default model's set as a photo of one face (it is its own photo)."""
        count = self.heldout_offered
        if not 0 <= index < count:
            raise ValueError(f"held-out face {index}: the editor offers the shipped held-out faces 0 .. {count - 1}"
                             if count else "the shipped held-out faces are 64 px; this generator makes "
                                           f"{self.G.resolution} px images: upload a photo")
        face = assets.heldout_targets(index + 1)[index]
        return Photo(name=f"heldout_{index}.png", path=None, faces=[face], transforms=[None],
                     candidates=[f"held-out face {index} (already aligned)"], gray=bool(is_gray_batch(face[None])[0]),
                     size=(self.G.resolution, self.G.resolution))

    # ---------------------------------------------------------------------------------------- inversion
    def recipe(self, name: str, steps: int) -> InversionRecipe:
        """Recipe `name` (one of APP_RECIPES) with `steps` steps."""
        if name not in APP_RECIPES:
            raise ValueError(f"unknown recipe {name!r}; the editor offers {', '.join(APP_RECIPES)}")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= JOB_MAX_STEPS:
            raise ValueError(f"steps must be a whole number in 0 .. {JOB_MAX_STEPS}, got {steps!r}")
        return RECIPES[name].replace(steps=steps)

    def invert(self, face: torch.Tensor, space_name: str, recipe: InversionRecipe = QUICK,
               on_step: Optional[Callable[[int, Dict[str, torch.Tensor]], None]] = None) -> InversionResult:
        """Invert one aligned face [3, R, R] in [-1, 1] into `space_name` under `recipe` (the space's encoder
        starts it where the recipe says so and one was given). on_step as in `HybridInverter.invert`."""
        space = self.space(space_name, recipe.space_options(space_name))
        inverter = HybridInverter.from_recipe(space, recipe, self.perceptual(recipe), self.encoders.get(space_name),
                                              progress=False)
        return inverter.invert(face[None].to(self.device), on_step=on_step)

    # ---------------------------------------------------------------------------------------- edits
    def edit_direction(self, kind: str, alphas: Mapping[str, float],
                       extra: Optional[Mapping[str, Slider]] = None) -> Optional[Direction]:
        """The page's edit in a space of `kind`: sum_i alpha_i d_i over the moved sliders that exist in that
        kind (None when none is moved); `extra`: a tab's own sliders (its uploaded direction files). ValueError
        for an unknown slider or an alpha out of range."""
        sliders = {**self.sliders, **(extra or {})}
        parts = []
        for key, alpha in alphas.items():
            if key not in sliders:
                raise ValueError(f"unknown slider {key!r}")
            if not (finite_number(alpha) and abs(alpha) <= SLIDER_LIMIT):
                raise ValueError(f"slider {key}: alpha must be a number in [-{SLIDER_LIMIT:g}, {SLIDER_LIMIT:g}], "
                                 f"got {shown(alpha)}")
            d = sliders[key].by_kind.get(kind)
            if alpha != 0 and d is not None:
                parts.append((d, float(alpha)))
        return _sum_directions(parts, kind) if parts else None

    def render(self, space_name: str, code: ls.Code, alphas: Mapping[str, float],
               extra: Optional[Mapping[str, Slider]] = None,
               options: Optional[Mapping[str, object]] = None) -> torch.Tensor:
        """The code's image [3, R, R] in [-1, 1] after the sliders' edit (`edit_direction`); options: the space's
        as the code was inverted (`InversionResult.space_options`)."""
        space = self.space(space_name, options)
        t = time.perf_counter()
        d = self.edit_direction(space.kind, alphas, extra)
        with torch.no_grad():
            image = space.synthesize(code if d is None else space.edit(code, d, 1.0))[0]
        self.render_seconds = time.perf_counter() - t
        return image

    # ---------------------------------------------------------------------------------------- drags
    def drag(self, space_name: str, result: InversionResult, pairs: Sequence[Sequence[float]],
             strokes: Sequence[Sequence[float]], steps: int,
             on_step: Optional[Callable[[DragStep], Optional[bool]]] = None) -> DragResult:
        """Drag an inversion's code (`latentspaces.drag.drag` with the library's defaults for this generator):
        pairs [[hx, hy, tx, ty], ...] in pixels of the R x R face; strokes: the mask brush's discs [[x, y, r], ...]
        (none: the whole face may change; `stroke_mask`); on_step as in `drag` (return True to stop there)."""
        size = self.G.resolution
        pairs = check_pairs(pairs, size)
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= JOB_MAX_STEPS:
            raise ValueError(f"drag steps must be a whole number in 0 .. {JOB_MAX_STEPS}, got {shown(steps)}")
        mask = stroke_mask(strokes, size) if strokes else None
        space = self.space(space_name, result.space_options)
        return drag(space, result.code, [p[:2] for p in pairs], [p[2:] for p in pairs], mask=mask,
                    settings=DragSettings(max_steps=steps), on_step=on_step)

    def compensate(self, head: str, face: torch.Tensor):
        """The head's compensation of one aligned face (the W+ encoder's codes, corrected): kept per face."""
        if head not in self.heads:
            raise ValueError(f"no {head} head loaded (loaded: {', '.join(sorted(self.heads)) or 'none'})")
        return compensate(self.G, self.base_encoder, self.heads[head], face[None].to(self.device))

    def render_head(self, head: str, comp, alphas: Mapping[str, float],
                    extra: Optional[Mapping[str, Slider]] = None) -> torch.Tensor:
        """The head's image [3, R, R] after the sliders' W edit: its W+ codes moved, its correction kept."""
        t = time.perf_counter()
        d = self.edit_direction("w", alphas, extra)
        with torch.no_grad():
            if d is None:
                image = comp.image[0]
            else:
                image = edit_compensated(self.G, self.heads[head], comp, d, 1.0)[0]
        self.render_seconds = time.perf_counter() - t
        return image

    # ---------------------------------------------------------------------------------------- outputs
    @staticmethod
    def pasted(photo: Photo, face_index: int, image: torch.Tensor, mask: str = "face") -> Image.Image:
        """The photo with face `face_index` replaced by `image` [3, R, R] (gray photos stay gray); a held-out
        face is its own photo: the image itself."""
        transform = photo.transforms[face_index]
        if transform is None or photo.path is None:
            out = Image.fromarray(to_uint8(image).permute(1, 2, 0).numpy(), "RGB")
            return out.convert("L") if photo.gray else out
        picture, _ = read_photo(photo.path)
        paste_back_(picture, image, transform, mask=mask)
        return picture.convert("L") if photo.gray else picture

    def bundle(self, photo: Photo, face_index: int, space_name: str, result: InversionResult,
               alphas: Mapping[str, float], recipe: InversionRecipe, mask: str = "face",
               extra: Optional[Mapping[str, Slider]] = None) -> bytes:
        """A zip that replays the page's edit of one face with `latentspaces edit` (`replay_command`): the code, the
        edit as one direction, the aligned face, the photo and its alignment (the photo's path relative), the
        edited photo, and settings.json with the sliders and the command. A dragged face also carries the code it
        started from (start_codes.safetensors) and each drag's points and mask; settings.json's `replay_drags`
        are the `latentspaces drag` commands that redo them, run before `replay`."""
        space = self.space(space_name, result.space_options)
        stem = Path(photo.name).stem
        face_name = f"{stem}_{face_index}.png"
        d = self.edit_direction(space.kind, alphas, extra)
        if d is None:   # nothing moved: a zero direction, so the replay renders the reconstruction itself
            d = Direction(torch.zeros(result.code[space.edit_field].shape[-1]), space.kind, name=EDIT_NAME,
                          method="sum of sliders", meta={"sliders": {}})
        image = self.render(space_name, result.code, alphas, extra, result.space_options)
        edited = self.pasted(photo, face_index, image, mask)
        tmp = io.BytesIO()
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z, \
                tempfile.TemporaryDirectory(prefix="latentspaces-app-") as scratch:
            folder = Path(scratch)
            result.code.save(folder / "codes.safetensors", space=space_name, generator_fingerprint=self.fingerprint,
                             generator=self.generator_name, steps=recipe.steps, recipe=recipe.name,
                             targets=[face_name], gray_targets=[photo.gray], alignment="alignment.json",
                             **({"space_options": result.space_options} if result.space_options else {}))
            save_directions(folder / "edit_direction.safetensors", [d])
            for name in ("codes.safetensors", "edit_direction.safetensors"):
                z.write(folder / name, name)
            z.writestr(face_name, png_bytes(to_uint8(photo.faces[face_index]).permute(1, 2, 0).numpy()))
            transform = photo.transforms[face_index]
            drags, replay_drags, codes = result.meta.get("drags", []), [], "codes.safetensors"
            if drags:
                start = result.meta["undragged"]
                start.code.save(folder / "start_codes.safetensors", space=space_name,
                                generator_fingerprint=self.fingerprint, generator=self.generator_name,
                                steps=recipe.steps, recipe=recipe.name, targets=[face_name], gray_targets=[photo.gray],
                                **({"space_options": start.space_options} if start.space_options else {}))
                z.write(folder / "start_codes.safetensors", "start_codes.safetensors")
                codes = "start_codes.safetensors"
                for i, record in enumerate(drags):
                    z.writestr(f"drag_{i}.json", json.dumps([[p[:2], p[2:]] for p in record["pairs"]]) + "\n")
                    words = ["latentspaces", "drag", "--generator", self.generator_name, "--codes", codes, "--points",
                             f"drag_{i}.json", "--steps", str(record["steps"]), "--out", f"drag_{i}"]
                    if record["strokes"]:
                        mask_png = (stroke_mask(record["strokes"], self.G.resolution) * 255).to(torch.uint8).numpy()
                        z.writestr(f"drag_{i}_mask.png", png_bytes(Image.fromarray(mask_png, "L")))
                        words[-2:-2] = ["--mask", f"drag_{i}_mask.png"]
                    replay_drags.append(" ".join(shlex.quote(w) for w in words))
                    codes = f"drag_{i}/codes.safetensors"
            replay = replay_command(self.generator_name, mask if transform is not None else None, codes,
                                    "alignment.json" if drags else None)
            if transform is not None and photo.path is not None:
                z.write(photo.path, photo.name)
                # the photo named relative to the bundle's folder: the unpacked folder replays wherever it is
                save_alignment(folder / "alignment.json", [(face_name, replace(transform, photo=photo.name))])
                z.write(folder / "alignment.json", "alignment.json")
            z.writestr("edited.png", png_bytes(edited))
            writes = (f"replay/{stem}_{EDIT_NAME}_+1.png, equal to edited.png" if transform is not None else
                      f"replay/edit_{EDIT_NAME}.png, a labelled grid holding edited.png")
            settings = {"generator": self.generator_name, "generator_fingerprint": self.fingerprint,
                        "photo": photo.name, "face": face_index, "space": space_name, "recipe": recipe.record(),
                        "sliders": {k: float(v) for k, v in alphas.items() if v != 0}, "mask": mask,
                        "replay": replay, "replay_writes": writes,
                        **({"replay_drags": replay_drags, "drags": drags} if drags else {})}
            z.writestr("settings.json", json.dumps(settings, indent=1) + "\n")
        return tmp.getvalue()


def check_pairs(pairs: object, size: int) -> List[List[float]]:
    """Drag pairs from a request: [[hx, hy, tx, ty], ...], 1 .. MAX_DRAG_PAIRS of them, numbers inside the face's
    R x R pixels; ValueError naming the first bad one."""
    if not isinstance(pairs, list) or not 1 <= len(pairs) <= MAX_DRAG_PAIRS:
        raise ValueError(f"a drag needs 1 .. {MAX_DRAG_PAIRS} handle/target pairs [hx, hy, tx, ty]: click a handle, "
                         f"then its target (got {shown(pairs)})")
    for i, p in enumerate(pairs):
        if not (isinstance(p, list) and len(p) == 4 and all(finite_number(v) and 0 <= v <= size - 1 for v in p)):
            raise ValueError(f"drag pair {i} must be [hx, hy, tx, ty] in pixels 0 .. {size - 1} of the face, got "
                             f"{shown(p)}")
    return [[float(v) for v in p] for p in pairs]


def check_strokes(strokes: object, size: int) -> List[List[float]]:
    """The page's mask brush strokes [[x, y, r], ...] (at most MAX_STROKES, three finite numbers each, 0 < r <= R),
    or ValueError naming the first bad one."""
    if not isinstance(strokes, list) or len(strokes) > MAX_STROKES:
        raise ValueError(f"the mask must be a list of at most {MAX_STROKES} brush strokes [x, y, r]")
    for i, s in enumerate(strokes):
        if not (isinstance(s, list) and len(s) == 3 and all(finite_number(v) for v in s) and 0 < s[2] <= size):
            raise ValueError(f"mask stroke {i} must be [x, y, r] with 0 < r <= {size}, got {shown(s)}")
    return [[float(v) for v in s] for s in strokes]


def stroke_mask(strokes: object, size: int) -> torch.Tensor:
    """The editable region [R, R] of 0/1 painted by the page's brush: the union of the discs of `check_strokes`
    (pixel centres within r of (x, y)), each drawn in its own bounding square only."""
    mask = torch.zeros(size, size, dtype=torch.bool)
    for x, y, r in check_strokes(strokes, size):
        top, bottom = max(0, math.floor(y - r)), min(size, math.ceil(y + r) + 1)
        left, right = max(0, math.floor(x - r)), min(size, math.ceil(x + r) + 1)
        if top >= bottom or left >= right:
            continue
        yy = torch.arange(top, bottom, dtype=torch.float64)[:, None]
        xx = torch.arange(left, right, dtype=torch.float64)[None, :]
        mask[top:bottom, left:right] |= (xx - x) ** 2 + (yy - y) ** 2 <= r ** 2
    return mask.float()


def replay_command(generator: str, mask: Optional[str], codes: str = "codes.safetensors",
                   alignment: Optional[str] = None) -> str:
    """The command that replays a bundle's edit in the unpacked bundle's folder: `latentspaces edit` of its code
    along its one direction at alpha 1, pasted back with `mask` (None: a held-out face, nothing to paste into)."""
    words = ["latentspaces", "edit", "--generator", generator, "--codes", codes, "--direction",
             "edit_direction.safetensors", "--alphas=1", *(["--paste-back", "--mask", mask] if mask else []),
             *(["--alignment", alignment] if alignment and mask else []), "--out", "replay"]
    return " ".join(shlex.quote(w) for w in words)


def png_bytes(image, compress_level: int = 6) -> bytes:
    """A PNG of a Pillow image or an [H, W, 3] uint8 array (compress_level 0-9: zlib's effort, Pillow's 6 by
    default; the slider's renders use 1, which encodes a 1024 px face in a fraction of the time)."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image, "RGB")
    out = io.BytesIO()
    picture.save(out, format="png", compress_level=compress_level)
    return out.getvalue()


def face_png(image: torch.Tensor, gray: bool = False) -> bytes:
    """A PNG of one face [3, R, R] in [-1, 1] (gray: its ITU-R 601 luma, for a grayscale photo's edit), quickly
    compressed: it is shown once, on this machine."""
    return png_bytes(to_uint8(to_gray(image[None])[0] if gray else image).permute(1, 2, 0).numpy(), compress_level=1)


def default_sliders(G: ls.Generator, components: int, samples: int, files: Sequence[Path] = ()) -> List[Slider]:
    """GANSpace components (z and w, scaled by their axes' std), SeFa (w), random (z and w), then every direction
    of each file (its kind as the file says; sliders named <file stem> <index>)."""
    # the files first: a bad one is said before the PCA runs
    from_files = [slider for i, path in enumerate(files) for slider in file_sliders(G, path, f"file{i}")]
    sliders = []
    by_kind = {kind: ganspace(G, n_samples=samples, n_components=components, kind=kind, scale_by_std=True)
               for kind in ("z", "w")}
    sliders += [Slider(f"ganspace_{k}", f"GANSpace {k}", {kind: by_kind[kind][k] for kind in by_kind})
                for k in range(components)]
    sliders += [Slider(f"sefa_{k}", f"SeFa {k}", {"w": d}) for k, d in enumerate(sefa(G, n_components=3))]
    random = {"z": random_directions(2, G.z_dim, "z", seed=0), "w": random_directions(2, G.w_dim, "w", seed=0)}
    sliders += [Slider(f"random_{k}", f"random {k}", {kind: random[kind][k] for kind in random}) for k in range(2)]
    return sliders + from_files


def finite_number(value: object) -> bool:
    """Whether `value` is a finite int or float (not a bool); an int too large for a float (10**400) is not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def shown(value: object, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters: what an error message echoes of a value it refuses."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def file_sliders(G: ls.Generator, path: Path, key: str, kind: Optional[str] = None,
                 limit: int = MAX_FILE_SLIDERS) -> List[Slider]:
    """One slider per direction of a direction file (`latentspaces.directions.load_directions`: the project's
    .safetensors, or a foreign .pt tensor or GANSpace dict of `kind`), the first `limit` of them, each checked to
    be of G's size (z: z_dim numbers, w: w_dim, s: the S space's); keys '<key>_<index>', labels '<stem> <name>'."""
    directions = load_directions(path, kind=kind)[:limit]
    sizes = {"z": G.z_dim, "w": G.w_dim}
    for d in directions:
        if d.kind == "s" and "s" not in sizes:
            sizes["s"] = ls.S(G).mean(1)["s"].shape[-1]
        if d.vector.shape[-1] != sizes[d.kind]:
            raise ValueError(f"{Path(path).name}: {d.name or 'a direction'} has {d.vector.shape[-1]} numbers per "
                             f"layer; this generator's {d.kind} codes have {sizes[d.kind]}")
        if d.kind in ("z", "w") and not (d.vector.ndim == 1 or (d.vector.ndim == 2 and len(d.vector) == G.num_ws)):
            raise ValueError(f"{Path(path).name}: {d.name or 'a direction'} is {list(d.vector.shape)}; a {d.kind} "
                             f"direction of this generator is [{sizes[d.kind]}] or one row per layer [{G.num_ws}, "
                             f"{sizes[d.kind]}]")
    return [Slider(f"{key}_{k}", f"{Path(path).stem} {d.name or k}", {d.kind: d}) for k, d in enumerate(directions)]


__all__ = ["APP_RECIPES", "Cancelled", "DRAG_STEPS", "Editor", "JOB_MAX_STEPS", "MAX_DRAG_PAIRS", "MAX_STROKES",
           "check_pairs", "check_strokes", "stroke_mask", "SLIDER_COMPONENTS", "SLIDER_SAMPLES", "Photo", "SLIDER_LIMIT", "Slider", "replay_command",
           "default_sliders", "face_png", "file_sliders", "finite_number", "png_bytes", "shown"]
